"""The language server: state lives here and changes only on the event loop; features are
registered by one module each."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.io_ import StdinAsyncReader, StdoutWriter, run_async
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.uris import from_fs_path, to_fs_path

from tracefix import __version__
from tracefix.parsing.document import Document
from tracefix.project import Project

if TYPE_CHECKING:
    from tracefix.lsp.publishing import Publisher
    from tracefix.lsp.runs import Runs

log = logging.getLogger(__name__)

HEADER = re.compile(rb"Content-Length: *(\d+)\r\n$", re.IGNORECASE)
MAX_MESSAGE = 256 << 20  # bytes; a larger Content-Length is a broken header, not a message


class Resync:
    """Reads frames for pygls, finding a header even after junk on its line.

    pygls takes a header only as a whole line, so one bad frame (a wrong Content-Length, a body
    without one) glues the next header to junk, and every later message would be lost.
    """

    def __init__(self, reader: StdinAsyncReader) -> None:
        self.reader = reader

    async def readline(self) -> bytes:
        line = await self.reader.readline()
        match = HEADER.search(line)
        if match is None:
            return line
        length = int(match.group(1))
        return b"Content-Length: %d\r\n" % length if length <= MAX_MESSAGE else b"\r\n"

    async def readexactly(self, n: int) -> bytes:
        return await self.reader.readexactly(n)


class Protocol(LanguageServerProtocol):
    def structure_message(self, data: dict):
        """pygls drops a request whose params do not fit its method; answer it with the error."""
        try:
            return super().structure_message(data)
        except JsonRpcException as error:
            if "method" in data and "id" in data:
                self._send_response(data["id"], error=error.to_response_error())
            raise


class TracefixServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("tracefix", __version__, protocol_cls=Protocol,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.projects: dict[Path, Project] = {}
        self.docs: dict[str, Document] = {}  # open buffers by uri
        self.versions: dict[str, int] = {}
        self.editor_settings: dict = {}
        self.trusted = True
        self.ready = asyncio.Event()
        self.background: set[asyncio.Task] = set()
        self._reporting = False
        self.publisher: Publisher  # set by _register: feature modules import this one
        self.runs: Runs

    # logging to the client; never a popup for our own errors
    def log(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        log.log(logging.WARNING if kind <= types.MessageType.Warning else logging.INFO, message)
        try:
            self.window_log_message(types.LogMessageParams(type=kind, message=message))
        except Exception:  # no client yet, or it went away: the file log has it
            pass

    def warn(self, message: str) -> None:
        self.log(message, types.MessageType.Warning)

    def report_server_error(self, error: Exception, source) -> None:
        if self._reporting:  # sending the report failed (a closed stream): the file log has it
            return
        self._reporting = True
        try:
            if source is JsonRpcException:  # pygls's reader: a message that is not JSON-RPC or does not fit
                self.warn(f"ignored a malformed message from the client: {error!r}")
                return
            log.error("handler failed: %r", error, exc_info=error)
            self.log(f"tracefix internal error (the server keeps running): {error!r}", types.MessageType.Error)
        finally:
            self._reporting = False

    def spawn(self, coro, name: str) -> asyncio.Task:
        """Background work whose failure is logged, never lost and never fatal."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.background.add(task)

        def done(t: asyncio.Task) -> None:
            self.background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                self.report_server_error(t.exception(), None)

        task.add_done_callback(done)
        return task

    def notify(self, method: str, params) -> None:
        self.protocol.notify(method, params)

    # paths
    def project_for(self, path: Path) -> Project | None:
        best = None
        for root, project in self.projects.items():
            if path == root or root in path.parents:
                if best is None or len(root.parts) > len(best.root.parts):
                    best = project
        return best

    def project_named(self, root: str | None) -> Project:
        """The workspace folder whose root is `root`, or the first one when root is None."""
        for project in self.projects.values():
            if root is None or str(project.root) == root:
                return project
        raise ValueError(f"no workspace folder {root!r}")

    def locate(self, uri: str) -> tuple[Project, str] | None:
        """(project, path relative to its root) for a file uri inside a workspace folder."""
        fs = to_fs_path(uri) if uri.startswith("file:") else None
        if fs is None:
            return None
        path = Path(fs).resolve()
        project = self.project_for(path)
        if project is None:
            return None
        return project, path.relative_to(project.root).as_posix()

    def start_io(self, stdin=None, stdout=None) -> None:
        """pygls's stdio loop, reading through Resync."""
        self._stop_event = threading.Event()
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
        reader = Resync(StdinAsyncReader(stdin or sys.stdin.buffer, self.thread_pool))
        try:
            asyncio.run(run_async(stop_event=self._stop_event, reader=reader, protocol=self.protocol,
                                  logger=log, error_handler=self.report_server_error))
        except BrokenPipeError:
            log.error("the client closed the connection")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.shutdown()

    @staticmethod
    def uri(project: Project, rel: str) -> str:
        return from_fs_path(str(project.root / rel))

    def text_of(self, project: Project, rel: str) -> str | None:
        """The open buffer's text if there is one (buffers win over disk), else the file's."""
        doc = self.docs.get(self.uri(project, rel))
        return doc.text if doc is not None else project.text(rel)


server = TracefixServer()


def _register() -> None:
    from tracefix.lsp import (  # noqa: F401
        code_actions,
        commands,
        documents,
        fixes,
        hover,
        lifecycle,
        progress,
        reviews,
        traces,
        watching,
    )
    from tracefix.lsp.publishing import Publisher
    from tracefix.lsp.runs import Runs

    server.publisher = Publisher(server)
    server.runs = Runs(server)


def serve(tcp: tuple[str, int] | None = None) -> None:
    _register()
    if tcp:
        server.start_tcp(*tcp)
    else:
        server.start_io()
