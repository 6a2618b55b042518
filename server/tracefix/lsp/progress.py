"""$/progress for long work, cancellable by the client where the work allows it."""

from __future__ import annotations

import asyncio
import itertools

from lsprotocol import types

from tracefix.lsp.server import TracefixServer, server

_ids = itertools.count(1)
_cancellable: dict[str, asyncio.Task] = {}


class Progress:
    """$/progress for one run, or nothing when the client does not support it."""

    def __init__(self, ls: TracefixServer, token: str | None):
        self.ls, self.token = ls, token

    @classmethod
    async def start(cls, ls: TracefixServer, title: str, task: asyncio.Task | None = None) -> "Progress":
        """With `task`, the client may cancel: window/workDoneProgress/cancel cancels the task."""
        ls.log(title)
        window = ls.client_capabilities.window
        if not (window and window.work_done_progress):
            return cls(ls, None)
        token = f"tracefix-{next(_ids)}"
        try:
            await asyncio.wait_for(ls.work_done_progress.create_async(token), 5)
        except Exception:
            return cls(ls, None)
        if task is not None:
            _cancellable[token] = task
        ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(
            title=title, cancellable=task is not None, percentage=0))
        return cls(ls, token)

    def report(self, message: str, percentage: int | None = None) -> None:
        if self.token:
            self.ls.work_done_progress.report(self.token, types.WorkDoneProgressReport(message=message, percentage=percentage))

    def end(self, message: str) -> None:
        self.ls.log(message)
        if self.token:
            self.ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))
            _cancellable.pop(self.token, None)
            self.token = None


@server.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
def cancel(ls: TracefixServer, params: types.WorkDoneProgressCancelParams) -> None:
    task = _cancellable.pop(str(params.token), None)
    if task is not None:
        ls.log(f"cancelled by the editor: {task.get_name()}")
        task.cancel()
