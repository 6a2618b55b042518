"""$/progress for long work, cancellable by the client where the work allows it."""

from __future__ import annotations

import asyncio

from lsprotocol import types

from tracefix.lsp.handlers import sync
from tracefix.lsp.session import Session


class Progress:
    """$/progress for one piece of work, or nothing when the client does not support it."""

    def __init__(self, session: Session, token: str | None):
        self.session, self.token = session, token

    @classmethod
    async def start(cls, session: Session, title: str, task: asyncio.Task | None = None) -> Progress:
        """With `task`, the client may cancel: window/workDoneProgress/cancel cancels the task."""
        ls = session.ls
        ls.log(title)
        window = ls.client_capabilities.window
        if not (window and window.work_done_progress):
            return cls(session, None)
        token = f"tracefix-{next(session.progress_ids)}"
        try:
            await asyncio.wait_for(ls.work_done_progress.create_async(token), 5)
        except Exception:
            return cls(session, None)
        if task is not None:
            session.progress[token] = task
        ls.work_done_progress.begin(
            token, types.WorkDoneProgressBegin(title=title, cancellable=task is not None, percentage=0)
        )
        return cls(session, token)

    def report(self, message: str, percentage: int | None = None) -> None:
        if self.token:
            self.session.ls.work_done_progress.report(
                self.token, types.WorkDoneProgressReport(message=message, percentage=percentage)
            )

    def end(self, message: str) -> None:
        self.session.ls.log(message)
        if self.token:
            self.session.ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))
            self.session.progress.pop(self.token, None)
            self.token = None


@sync(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
def cancel(session: Session, params: types.WorkDoneProgressCancelParams) -> None:
    task = session.progress.pop(str(params.token), None)
    if task is not None:
        session.ls.log(f"cancelled by the editor: {task.get_name()}")
        task.cancel()
