"""Changes made outside the editor (branch switches, generated files, other editors).

The client's workspace/didChangeWatchedFiles is used when it can register watchers dynamically;
otherwise watchdog observes the workspace folders. Never both. Buffers open in the editor win
over disk.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from lsprotocol import types
from pygls.uris import to_fs_path
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch

from tracefix.index.files import digest_bytes
from tracefix.lsp import reviews, runs
from tracefix.lsp.handlers import sync
from tracefix.lsp.session import Pending, ProjectState, Session
from tracefix.paths import is_relevant_file, read_text

SETTLE = 0.2  # seconds: a checkout writes many files; handle them as one batch
RETURN_POLL = 1.0  # seconds between looks for a deleted workspace folder's return
GLOBS = ("**/*.py", "**/*.{toml,ini,cfg,json,yaml,yml,txt,csv}")


class Watcher:
    """watchdog's observer over the folders, and the batch of events waiting to settle."""

    def __init__(self, session: Session, loop: asyncio.AbstractEventLoop):
        self.session, self.loop = session, loop
        self.observer = Observer()
        self.observer.daemon = True
        self.watches: dict[Path, ObservedWatch] = {}
        self.batch: dict[str, bool] = {}  # absolute path → exists
        self.timer: asyncio.TimerHandle | None = None
        self.handler = _Handler(self)

    def queue(self, path: str, exists: bool) -> None:
        self.batch[path] = exists
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(SETTLE, self.flush)

    def folder_deleted(self, root: Path) -> None:
        self.session.spawn(folder_returned(self.session, root), f"return of {root}")

    def flush(self) -> None:
        self.timer = None
        batch, self.batch = self.batch, {}
        for path, exists in batch.items():
            self.session.spawn(file_event(self.session, Path(path), exists and Path(path).exists()), "file event")


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher):
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:  # on watchdog's thread
        gone = Path(os.fsdecode(event.src_path))
        if event.event_type == "deleted" and gone in self.watcher.watches:  # the folder itself: its watch ends
            self.watcher.loop.call_soon_threadsafe(self.watcher.folder_deleted, gone)
            return
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        paths = [(event.src_path, event.event_type != "deleted")]
        if event.event_type == "moved":
            paths = [(event.src_path, False), (event.dest_path, True)]
        for path, exists in paths:
            self.watcher.loop.call_soon_threadsafe(self.watcher.queue, str(path), exists)


def _client_watches(session: Session) -> bool:
    ws = session.ls.client_capabilities.workspace
    watched = ws.did_change_watched_files if ws else None
    return bool(watched and watched.dynamic_registration)


async def start(session: Session) -> None:
    if _client_watches(session):
        watchers = [types.FileSystemWatcher(glob_pattern=g) for g in GLOBS]
        try:
            await session.ls.client_register_capability_async(
                types.RegistrationParams(
                    registrations=[
                        types.Registration(
                            id="tracefix-watch",
                            method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                            register_options=types.DidChangeWatchedFilesRegistrationOptions(watchers=watchers),
                        )
                    ]
                )
            )
            session.ls.log("watching files through the editor")
            return
        except Exception as exc:
            session.ls.warn(f"the editor refused to watch files ({exc!r}); using watchdog")
    session.watcher = Watcher(session, asyncio.get_running_loop())
    for state in session.projects.values():
        watch(session, state)
    session.watcher.observer.start()
    session.ls.log("watching files with watchdog")


def watch(session: Session, state: ProjectState) -> None:
    watcher = session.watcher
    if watcher is not None and state.root not in watcher.watches:
        watcher.watches[state.root] = watcher.observer.schedule(watcher.handler, str(state.root), recursive=True)


def unwatch(session: Session, state: ProjectState) -> None:
    watcher = session.watcher
    if watcher is not None and state.root in watcher.watches:
        watcher.observer.unschedule(watcher.watches.pop(state.root))


def stop(session: Session) -> None:
    if session.watcher is not None:
        session.watcher.observer.stop()
        session.watcher = None


async def folder_returned(session: Session, root: Path) -> None:
    """A workspace folder was deleted, and its watch with it. When it is back (restored, cloned
    again), watch it again, read its files again and run the tests of what changed."""
    while not root.is_dir():
        await asyncio.sleep(RETURN_POLL)
    state = session.projects.get(root)
    if state is None or session.shut_down:
        return
    unwatch(session, state)
    watch(session, state)  # before reading: what is written from now on arrives as events
    changes = await state.call(state.project.rescan)
    await state.refresh_tests()
    session.ls.log(f"workspace folder {root} is back: read its files again")
    if changes:
        runs.request(session, state, Pending({(c.path, c.qualname): c for c in changes}, {c.path for c in changes}))


async def file_event(session: Session, path: Path, exists: bool) -> None:
    state = session.project_for(path.resolve() if exists else path)
    if state is None:
        return
    rel = state.project.rel(path)
    if rel is not None and rel.startswith(".tracefix/reviews/"):
        await reviews.refresh(session, state)
        return
    if rel is None or not is_relevant_file(rel):
        return
    if state.uri(rel) in session.documents:
        return  # the editor's buffer is the truth; its save will tell us
    text = await state.call(_changed_text, state, rel, path) if exists else None
    if exists and text is None:
        return  # not a regular file, too large to be code, or unchanged
    await runs.file_changed(session, state, rel, text)


def _changed_text(state: ProjectState, rel: str, path: Path) -> str | None:
    """The file's text, or None when it is not a regular file or its content is what the index has
    (our own write, or a no-op one). On the folder's worker thread."""
    text = read_text(path)
    if text is not None and rel.endswith(".py"):
        entry = state.project.index.files.get(rel)
        if entry is not None and entry.digest == digest_bytes(text.encode("utf-8", "surrogatepass")):
            return None
    return text


@sync(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
def watched_files_changed(session: Session, params: types.DidChangeWatchedFilesParams) -> None:
    for change in params.changes:
        fs = to_fs_path(change.uri)
        if fs is None:  # not a file on disk
            continue
        path = Path(fs)
        session.spawn(file_event(session, path, change.type != types.FileChangeType.Deleted), "file event")
