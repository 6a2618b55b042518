"""Everything the server knows, in one place: the Session and, per workspace folder, its
ProjectState. Both are mutated on the event loop only. A folder's Project (the index and the
store) is used on that folder's worker thread only, so blocking core work never runs on the loop
and never runs twice at once; see docs/architecture.md."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from lsprotocol import types
from pygls.uris import from_fs_path, to_fs_path

from tracefix.index.discovery import TestItem
from tracefix.parsing.document import Document
from tracefix.paths import read_text
from tracefix.project import Project
from tracefix.reporting.diagnostics import Diagnostic
from tracefix.running.results import TestResult
from tracefix.selection.select import Changed
from tracefix.settings import Settings

if TYPE_CHECKING:
    from tracefix.fixing.jobs import Fix
    from tracefix.lsp.server import TracefixServer
    from tracefix.lsp.watching import Watcher
    from tracefix.reviews import Comment
    from tracefix.tracing import Trace

T = TypeVar("T")


@dataclass
class OpenDocument:
    doc: Document
    version: int


@dataclass
class Pending:
    """What the next run of a folder must cover."""

    changes: dict[tuple[str, str], Changed] = field(default_factory=dict)
    paths: set[str] = field(default_factory=set)
    run_all: bool = False
    nodeids: set[str] = field(default_factory=set)  # explicit reruns
    superseded: set[str] = field(default_factory=set)  # what a cancelled run selected: it ran stale content

    def merge(self, other: Pending) -> None:
        self.changes.update(other.changes)
        self.paths |= other.paths
        self.run_all |= other.run_all
        self.nodeids |= other.nodeids
        self.superseded |= other.superseded


@dataclass
class Runs:
    """A folder's run queue: what waits, what runs, trace capture and the idle audit. Its states,
    events and invariant are in lsp/runs.py."""

    pending: Pending | None = None
    timer: asyncio.TimerHandle | None = None  # coalesces a burst of saves into one run
    active: asyncio.Task | None = None
    covering: Pending | None = None  # what the active run covers; with the tests it selected, once it has
    started: dict[str, str] | None = None  # each file's digest when the run or audit in flight was planned
    running: int = 0  # tests in the active run
    tracing: asyncio.Task | None = None  # traces of the last run's failures being captured
    unaudited: dict[tuple[str, str], Changed] = field(default_factory=dict)
    audit: asyncio.TimerHandle | asyncio.Task | None = None  # waiting, or running


WORKER = "tracefix worker"  # the thread name prefix of every folder's worker thread
# Used on the loop by design: the folder's root and settings (replaced, never changed in place; a
# request after didChangeConfiguration must see the new ones), `rel` (path arithmetic), and the
# asyncio parts, `execute` (a run's process) and `pool` (the warm worker), which touch no index or store.
ON_ANY_THREAD = frozenset({"root", "settings", "reconfigure", "rel", "execute", "pool"})


class _OnWorker:
    """A Project (or a part of it) that raises when used off its folder's worker thread: the check
    of invariant 4 (docs/architecture.md), on when TRACEFIX_ASSERT_THREADS is set."""

    def __init__(self, target: Any):
        object.__setattr__(self, "_target", target)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name in ON_ANY_THREAD or isinstance(value, (str, int, float, bool, Path, type(None), tuple)):
            return value
        if callable(value):

            def checked(*args: Any, **kwargs: Any) -> Any:
                _assert_worker(name)
                return value(*args, **kwargs)

            return checked
        return _OnWorker(value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in ON_ANY_THREAD:
            _assert_worker(name)
        setattr(self._target, name, value)

    def __iter__(self):
        _assert_worker("iteration")
        return iter(self._target)

    def __getitem__(self, key):
        _assert_worker("item access")
        return self._target[key]

    def __len__(self) -> int:
        _assert_worker("len")
        return len(self._target)


def _assert_worker(what: str) -> None:
    thread = threading.current_thread().name
    if not thread.startswith(WORKER):
        raise AssertionError(f"a Project used off its worker thread ({what} on {thread})")


class ProjectState:
    """One workspace folder: its core Project and what the editor has been told about it."""

    def __init__(self, project: Project):
        checked = os.environ.get("TRACEFIX_ASSERT_THREADS")
        self.project: Project = _OnWorker(project) if checked else project  # type: ignore[assignment]
        self.root = project.root
        self.results: dict[str, TestResult] = {}  # nodeid → latest result
        self.diagnostics: dict[str, list[Diagnostic]] = {}  # nodeid → where its failure shows
        self.reasons: dict[str, str] = {}  # nodeid → why it last ran
        self.tests: dict[str, list[TestItem]] = {}  # test file → its tests, as the index last found them
        self.traces: dict[str, Trace] = {}  # nodeid → its failing trace
        self.tracing: dict[str, asyncio.Lock] = {}
        self.fixes: dict[str, Fix] = {}  # subject (nodeid or "review <id>") → the latest fix
        self.fixing: set[str] = set()  # subjects with a fix job under way
        self.comments: list[Comment] = []
        self.review_diagnostics: dict[str, list[types.Diagnostic]] = {}  # uri → review comments
        self.runs = Runs()
        self.incomplete = ""  # why the last run did not complete ("" when it did)
        self.found_by_audit: set[str] = set()  # failing in the idle audit, in no run the user started since
        self.python_problem: dict[str, str | None] = {}  # interpreter → why it cannot run tests
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{WORKER} {self.root.name}")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) on this folder's worker thread: the one thread that uses its Project."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    @property
    def settings(self) -> Settings:
        return self.project.settings

    def failing(self) -> list[TestResult]:
        return [r for r in self.results.values() if r.failing]

    async def refresh_tests(self, rel: str | None = None) -> None:
        """Take the index's tests of one file (all files when rel is None) into the session."""
        items = await self.call(self.project.index.tests, rel)
        if rel is None:
            self.tests = {}
        else:
            self.tests[rel] = []
        for item in items:
            self.tests.setdefault(item.path, []).append(item)

    def uri(self, rel: str) -> str:
        return from_fs_path(str(self.root / rel)) or ""

    async def close(self) -> None:
        for job in (self.runs.timer, self.runs.active, self.runs.tracing, self.runs.audit):
            if job is not None:
                job.cancel()
        if self.project.pool is not None:
            self.project.pool.close()  # asyncio: on the loop
        try:
            await self.call(self.project.store.close)
        finally:
            self._worker.shutdown(wait=False)


@dataclass(frozen=True)
class Snapshot:
    """What a background handler may read: immutable copies taken on the loop, and the folder,
    whose Project it may use on the folder's worker thread only (where it runs)."""

    state: ProjectState
    rel: str | None  # the document the request is about, relative to the folder
    texts: Mapping[str, str]  # unsaved buffers of the folder, by relative path
    settings: Settings
    trusted: bool


class Session:
    def __init__(self) -> None:
        self.client: TracefixServer | None = None  # set by the server factory: what handlers talk to
        self.documents: dict[str, OpenDocument] = {}  # open buffers by uri
        self.projects: dict[Path, ProjectState] = {}
        self.editor_settings: dict = {}
        self.trusted = True
        self.ready = asyncio.Event()  # the first folders are indexed: saves wait for it
        self.shut_down = False
        self.syntax: dict[str, list[types.Diagnostic]] = {}  # uri → syntax errors of the buffer
        self.syntax_timers: dict[str, asyncio.TimerHandle] = {}
        self.published: set[str] = set()  # uris that were sent diagnostics
        self.progress: dict[str, asyncio.Task] = {}  # progress token → the task the client may cancel
        self.tasks: set[asyncio.Task] = set()  # background tasks, cancelled at shutdown
        self.watcher: Watcher | None = None  # watchdog, when the client does not watch files
        self.run_ids = itertools.count(1)
        self.progress_ids = itertools.count(1)

    @property
    def ls(self) -> TracefixServer:
        assert self.client is not None, "the server factory sets the client"
        return self.client

    # places
    def project_for(self, path: Path) -> ProjectState | None:
        """The innermost workspace folder holding path."""
        best = None
        for root, state in self.projects.items():
            if (path == root or root in path.parents) and (best is None or len(root.parts) > len(best.root.parts)):
                best = state
        return best

    def project_named(self, root: str | None) -> ProjectState:
        """The workspace folder whose root is `root`, or the first one when root is None."""
        for state in self.projects.values():
            if root is None or str(state.root) == root:
                return state
        raise ValueError(f"no workspace folder {root!r}")

    def locate(self, uri: str) -> tuple[ProjectState, str] | None:
        """(folder, path relative to its root) for a file uri inside a workspace folder."""
        fs = to_fs_path(uri) if uri.startswith("file:") else None
        if fs is None:
            return None
        path = Path(fs).resolve()
        state = self.project_for(path)
        if state is None:
            return None
        return state, path.relative_to(state.root).as_posix()

    # texts
    def text_of(self, state: ProjectState, rel: str) -> str | None:
        """The open buffer's text if there is one (buffers win over disk), else the file's: a
        bounded read of a regular file, cheap enough for the loop."""
        opened = self.documents.get(state.uri(rel))
        return opened.doc.text if opened is not None else read_text(state.root / rel)

    def overlay(self, state: ProjectState) -> dict[str, str]:
        """The folder's open buffers by relative path: what fixes and reviews read instead of disk."""
        texts = {}
        for uri, opened in self.documents.items():
            located = self.locate(uri)
            if located is not None and located[0] is state:
                texts[located[1]] = opened.doc.text
        return texts

    def snapshot(self, state: ProjectState, rel: str | None = None) -> Snapshot:
        return Snapshot(state, rel, MappingProxyType(self.overlay(state)), state.settings, self.trusted)

    # background work
    def spawn(self, coro, name: str) -> asyncio.Task:
        """A task whose failure is logged, never lost and never fatal; cancelled at shutdown."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self.tasks.discard(t)
            if not t.cancelled() and (exc := t.exception()) is not None:
                self.ls.report_server_error(exc, None)  # type: ignore[arg-type]  # pygls shows any exception's text

        task.add_done_callback(done)
        return task
