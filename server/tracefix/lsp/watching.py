"""Changes made outside the editor (branch switches, generated files, other editors).

The client's workspace/didChangeWatchedFiles is used when it can register watchers dynamically;
otherwise watchdog observes the workspace. Never both. Buffers open in the editor win over disk.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from lsprotocol import types
from pygls.uris import to_fs_path
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from tracefix.index.files import digest_bytes
from tracefix.lsp import reviews
from tracefix.lsp.server import TracefixServer, server
from tracefix.paths import is_relevant_file

SETTLE = 0.2  # seconds: a checkout writes many files; handle them as one batch
_observer: Observer | None = None
_batch: dict[str, bool] = {}  # absolute path → exists
_timer: asyncio.TimerHandle | None = None


def _client_watches(ls: TracefixServer) -> bool:
    ws = ls.client_capabilities.workspace
    watched = ws.did_change_watched_files if ws else None
    return bool(watched and watched.dynamic_registration)


async def start(ls: TracefixServer) -> None:
    global _observer
    if _client_watches(ls):
        watchers = [types.FileSystemWatcher(glob_pattern=g) for g in ("**/*.py", "**/*.{toml,ini,cfg,json,yaml,yml,txt,csv}")]
        try:
            await ls.client_register_capability_async(types.RegistrationParams(registrations=[
                types.Registration(id="tracefix-watch", method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                                   register_options=types.DidChangeWatchedFilesRegistrationOptions(watchers=watchers))
            ]))
            ls.log("watching files through the editor")
            return
        except Exception as exc:
            ls.warn(f"the editor refused to watch files ({exc!r}); using watchdog")
    loop = asyncio.get_running_loop()
    handler = _Handler(ls, loop)
    _observer = Observer()
    for root in ls.projects:
        _observer.schedule(handler, str(root), recursive=True)
    _observer.daemon = True
    _observer.start()
    ls.log("watching files with watchdog")


def stop() -> None:
    if _observer is not None:
        _observer.stop()


class _Handler(FileSystemEventHandler):
    def __init__(self, ls: TracefixServer, loop: asyncio.AbstractEventLoop):
        self.ls, self.loop = ls, loop

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        paths = [(event.src_path, event.event_type != "deleted")]
        if event.event_type == "moved":
            paths = [(event.src_path, False), (event.dest_path, True)]
        for path, exists in paths:
            self.loop.call_soon_threadsafe(_queue, self.ls, str(path), exists)


def _queue(ls: TracefixServer, path: str, exists: bool) -> None:
    global _timer
    _batch[path] = exists
    if _timer is not None:
        _timer.cancel()
    _timer = asyncio.get_running_loop().call_later(SETTLE, _flush, ls)


def _flush(ls: TracefixServer) -> None:
    global _timer
    _timer = None
    batch = dict(_batch)
    _batch.clear()
    for path, exists in batch.items():
        file_event(ls, Path(path), exists and Path(path).exists())


def file_event(ls: TracefixServer, path: Path, exists: bool) -> None:
    project = ls.project_for(path.resolve() if exists else path)
    if project is None:
        return
    rel = project.rel(path)
    if rel is not None and rel.startswith(".tracefix/reviews/"):
        reviews.refresh(ls, project)
        return
    if rel is None or not is_relevant_file(rel):
        return
    if ls.uri(project, rel) in ls.docs:
        return  # the editor's buffer is the truth; its save will tell us
    text = None
    if exists:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
    entry = project.index.files.get(rel)
    if exists and rel.endswith(".py") and entry is not None and entry.digest == digest_bytes(text.encode("utf-8", "surrogatepass")):
        return  # our own or a no-op write
    ls.runs.file_changed(project, rel, text)


@server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
def watched_files_changed(ls: TracefixServer, params: types.DidChangeWatchedFilesParams) -> None:
    for change in params.changes:
        path = Path(to_fs_path(change.uri))
        file_event(ls, path, change.type != types.FileChangeType.Deleted)
