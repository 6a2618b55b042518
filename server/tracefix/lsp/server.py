"""The language server: the connection to the client. What the server knows lives in the
Session (lsp/session.py); each feature module declares its handlers (lsp/handlers.py), and
create_server() binds them to one Session."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidRequest
from pygls.io_ import StdinAsyncReader, StdoutWriter, run_async
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from tracefix import __version__
from tracefix.lsp.handlers import register
from tracefix.lsp.session import Session
from tracefix.sanitize import Printable, printable_data

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


# Code goes to the editor only as TextEdit.newText, which must stay exact; every other text the
# server sends (diagnostics, messages, hover, results, errors) is shown, so made printable.
EXACT = "newText"


def _printable_message(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: v if k == EXACT else _printable_message(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable_message(v) for v in value]
    return printable_data(value)


class Protocol(LanguageServerProtocol):
    def structure_message(self, data: dict):
        """pygls drops a request whose params do not fit its method; answer it with the error."""
        try:
            return super().structure_message(data)
        except JsonRpcException as error:
            if "method" in data and "id" in data:
                self._send_response(data["id"], error=error.to_response_error())
            raise

    def handle_message(self, message) -> None:
        """After `shutdown`, a request gets InvalidRequest (pygls would leave it unanswered)."""
        method = getattr(message, "method", None)
        if self._shutdown and method not in (None, types.EXIT) and getattr(message, "id", None) is not None:
            error = JsonRpcInvalidRequest(f"the server is shutting down: {method} is not handled")
            self._send_response(message.id, error=error.to_response_error())
            return
        super().handle_message(message)
        if method == types.SHUTDOWN:
            # shut down from the request on, not when its handler is done: editors that quit send
            # `exit` right behind it, and that exit is a clean one
            self._shutdown = True

    def _execute_handler(self, msg_id, handler, callback, args=None, kwargs=None) -> None:
        """Ties a command's task to its request: pygls runs workspace/executeCommand as a generator
        whose request future is not the command's task, so $/cancelRequest would answer the
        request and leave the work running, and a cancelled task (window/workDoneProgress/cancel)
        would leave the request unanswered."""
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        request = getattr(callback, "keywords", {}).get("result_future")  # partial(_run_generator, …)
        task: object = self._request_futures.get(msg_id)  # typed as concurrent futures; a coroutine's is a Task
        if request is None or not isinstance(task, asyncio.Task):
            return
        request.add_done_callback(lambda f: task.cancel() if f.cancelled() else None)
        task.add_done_callback(lambda t: request.cancel() if t.cancelled() else None)

    def _send_data(self, data) -> None:
        if data:
            data = _printable_message(json.loads(json.dumps(data, default=self._serialize_message)))
        super()._send_data(data)


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
        self.client_log = ClientLog(self)  # serve() routes the process's logging through it

    # logging: one record, shown once (ClientLog sends it to the client); never a popup
    def log(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        log.log(LEVELS.get(kind, logging.INFO), message)

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

    def shutdown(self) -> None:
        """pygls's, without waiting for its threads: one may be blocked reading stdin, which an editor
        that sent a stop signal, or `exit`, need not ever close."""
        pool, self._thread_pool = self._thread_pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        super().shutdown()

    def notify(self, method: str, params) -> None:
        self.protocol.notify(method, params)

    def start_io(self, stdin=None, stdout=None) -> int:
        """pygls's stdio loop, reading through Resync; the exit status: 0 after shutdown and exit,
        1 for an exit without shutdown (LSP), 128 + the signal's number when stopped by one."""
        self._stop_event = stop_event = threading.Event()
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
        reader = Resync(StdinAsyncReader(stdin or sys.stdin.buffer, self.thread_pool))
        status = 0
        try:
            status = asyncio.run(self._serve(reader, stop_event))
        except BrokenPipeError:
            log.error("the client closed the connection")
        except SystemExit as exc:  # pygls's `exit` handler
            status = exc.code if isinstance(exc.code, int) else 0
        finally:
            self.shutdown()
        return status

    async def _serve(self, reader: Resync, stop_event: threading.Event) -> int:
        """Reads and handles messages until the client goes; a stop signal (SIGINT, SIGTERM, SIGHUP)
        first ends what the session runs, so no test process or temporary file outlives it."""
        loop = asyncio.get_running_loop()
        self.client_log.loop = loop  # before any worker thread logs
        main = asyncio.current_task()
        assert main is not None
        caught: list[int] = []

        def stop(signum: int) -> None:
            log.warning("stopping on %s", signal.Signals(signum).name)
            caught.append(signum)
            main.cancel()

        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, stop, signum)
        try:
            await run_async(
                stop_event=stop_event,
                reader=reader,
                protocol=self.protocol,
                logger=log,
                error_handler=self.report_server_error,
            )
        except asyncio.CancelledError:
            if not caught:
                raise
            from tracefix.lsp.lifecycle import shutdown

            await shutdown(self.session, None)  # as at `shutdown`: runs cancelled, projects closed
            return 128 + caught[0]
        return 0


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


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


LEVELS = {
    types.MessageType.Error: logging.ERROR,
    types.MessageType.Warning: logging.WARNING,
    types.MessageType.Info: logging.INFO,
    types.MessageType.Log: logging.DEBUG,
    types.MessageType.Debug: logging.DEBUG,
}
LIBRARIES = ("pygls", "httpx", "httpcore", "openai")  # their info and debug records are for --verbose


class Noise(logging.Filter):
    """pygls's warnings about what clients do every day: cancelling a request that just
    finished, answering a request the server gave up on, sending an optional $/ notification."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("pygls"):
            return True
        text = str(record.msg)
        if text.startswith(("Cancel notification for unknown message id", "Received response to unknown message id")):
            return False
        optional = isinstance(record.args, tuple) and str(record.args[:1]).startswith("('$/")
        return not (text.startswith("Ignoring notification for unknown method") and optional)


class ClientLog(logging.Handler):
    """Log records to the client as window/logMessage, one message per record, sent from the
    event loop whatever thread logged them; before the connection is up, and what cannot be
    sent, to stderr. Never both: an editor that shows the server's stderr too (VS Code does)
    would show a record twice."""

    def __init__(self, ls: TracefixServer) -> None:
        super().__init__()
        self.ls = ls
        self.fallback = logging.StreamHandler(sys.stderr)
        self.fallback.setFormatter(Printable("tracefix %(levelname)s %(name)s: %(message)s"))
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's; learnt on the first record there
        self._sending = threading.local()  # what pygls logs while sending one record is not sent

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._sending, "active", False) or (
            record.name.startswith("pygls") and record.levelno < logging.WARNING
        ):
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # a worker thread
            running = None
        if running is not None and self.ls.protocol.writer is not None:
            self.loop = running
            self._send(record)
        elif self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._send, record)
        else:
            self.fallback.handle(record)

    def _send(self, record: logging.LogRecord) -> None:
        kind = next((k for k, level in LEVELS.items() if level <= record.levelno), types.MessageType.Log)
        self._sending.active = True
        try:
            self.ls.window_log_message(types.LogMessageParams(type=kind, message=self.format(record)))
        except Exception:  # the client went away: stderr may still be read
            self.fallback.handle(record)
        finally:
            self._sending.active = False


def serve(tcp: tuple[str, int] | None = None, log_file: Path | None = None, verbose: bool = False) -> int:
    """Serve until the client goes; the exit status."""
    ls = create_server()
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    root.setLevel(level)
    handlers: list[logging.Handler] = [ls.client_log]
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file))
        handlers[-1].setFormatter(Printable("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for handler in handlers:
        handler.addFilter(Noise())
        root.addHandler(handler)
    for library in LIBRARIES:
        logging.getLogger(library).setLevel(level if verbose else logging.WARNING)
    if tcp:
        ls.start_tcp(*tcp)
        return 0
    return ls.start_io()
