"""The language server: the connection to the client. What the server knows lives in the
Session (lsp/session.py); each feature module declares its handlers (lsp/handlers.py), and
create_server() binds them to one Session."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.io_ import StdinAsyncReader, StdoutWriter, run_async
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from tracefix import __version__
from tracefix.lsp.handlers import register
from tracefix.lsp.session import Session

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
    def __init__(self, session: Session) -> None:
        super().__init__(
            "tracefix",
            __version__,
            protocol_cls=Protocol,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
        )
        self.session = session
        self._reporting = False

    # logging to the client; never a popup for our own errors
    def log(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        log.log(logging.WARNING if kind <= types.MessageType.Warning else logging.INFO, message)
        try:
            self.window_log_message(types.LogMessageParams(type=kind, message=message))
        except Exception:  # no client yet, or it went away: the file log has it
            pass

    def warn(self, message: str) -> None:
        self.log(message, types.MessageType.Warning)

    def tell(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        """A message the user sees (a toast), for what they asked for."""
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

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

    def notify(self, method: str, params) -> None:
        self.protocol.notify(method, params)

    def start_io(self, stdin=None, stdout=None) -> None:
        """pygls's stdio loop, reading through Resync."""
        self._stop_event = threading.Event()
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
        reader = Resync(StdinAsyncReader(stdin or sys.stdin.buffer, self.thread_pool))
        try:
            asyncio.run(
                run_async(
                    stop_event=self._stop_event,
                    reader=reader,
                    protocol=self.protocol,
                    logger=log,
                    error_handler=self.report_server_error,
                )
            )
        except BrokenPipeError:
            log.error("the client closed the connection")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.shutdown()


def create_server() -> TracefixServer:
    """A server with a new Session and every feature module's handlers."""
    from tracefix.lsp import (
        code_actions,
        commands,
        documents,
        fixes,
        hover,
        lifecycle,
        progress,
        reviews,
        runs,
        traces,
        watching,
    )

    session = Session()
    ls = TracefixServer(session)
    session.client = ls
    register(
        ls,
        session,
        [code_actions, commands, documents, fixes, hover, lifecycle, progress, reviews, runs, traces, watching],
    )
    return ls


def serve(tcp: tuple[str, int] | None = None) -> None:
    ls = create_server()
    if tcp:
        ls.start_tcp(*tcp)
    else:
        ls.start_io()
