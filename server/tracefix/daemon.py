"""`tracefix check --daemon`: checks served by a resident process, one per workspace.

A check through the daemon is the same check (check.check, with a new Project per request, so the
files, the settings and the store are read anew each time); what the daemon keeps between checks
is an interpreter with tracefix imported and the warm pytest worker (running/warm.py), which is
only ever faster, never different. A check pays for neither a tracefix start nor a pytest start.

The client starts the daemon when none answers, sends its arguments, working directory and
environment, and hands over its stdout and stderr, which the check writes to as it would have
itself; the reply is the exit status. Ctrl-C or a lost client cancels the check (its test
processes are killed). The daemon serves one check at a time, ends after IDLE seconds without a
request, when its workspace folder is gone, when tracefix's code changed on disk (the client then
starts a new one), and on `tracefix stop`.

Its socket lives in a directory only the user can enter ($XDG_RUNTIME_DIR/tracefix, else
<tmp>/tracefix-<uid>, mode 0700, checked), and it answers only processes of the same user.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from tracefix import __version__

IDLE = 600.0  # seconds without a check before the daemon ends (TRACEFIX_DAEMON_IDLE)
START_TIMEOUT = 30.0  # seconds for a new daemon to answer
HEADER_TIMEOUT = 10.0  # seconds for a client to send its request once connected
PACKAGE = Path(__file__).resolve().parent
log = logging.getLogger(__name__)


class DaemonError(Exception):
    """No daemon can serve this check; the check runs in this process instead."""


class Place:
    """Where the daemon of one workspace keeps its socket, lock and log."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        key = hashlib.sha256(f"{self.root}\0{sys.executable}\0{__version__}".encode()).hexdigest()[:16]
        folder = _private_folder()
        self.socket, self.lock, self.log = (folder / f"{key}.{suffix}" for suffix in ("sock", "lock", "log"))


def _private_folder() -> Path:
    """A folder only this user can enter: made if missing, refused if anyone else could use it."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(runtime) / "tracefix" if runtime else Path(tempfile.gettempdir()) / f"tracefix-{os.getuid()}"
    try:
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
        st = folder.lstat()
    except OSError as exc:
        raise DaemonError(f"no folder for the daemon's socket: {exc}") from exc
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise DaemonError(f"{folder} is not a folder of this user's alone (mode 0700): not using a daemon")
    return folder


def _code_stamp() -> tuple:
    """tracefix's own source files as they are now: a daemon whose code changed on disk ends."""
    return tuple(sorted((str(p), p.stat().st_mtime_ns) for p in PACKAGE.rglob("*.py")))


# ---- the client: `tracefix check --daemon` -------------------------------------------------------


def request(root: Path, argv: list[str], retried: bool = False) -> int:
    """Run `tracefix check argv` in root's daemon, started if none answers; its exit status.
    DaemonError: no daemon could take it (nothing ran)."""
    place = Place(root)
    sock = _connect(place) or _start(place)
    with sock:
        _send(sock, {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}, [1, 2])
        reply = _reply(sock)
    if reply.get("lost"):
        print("tracefix: the daemon ended during the check; the run did not complete", file=sys.stderr)
    if "exit" in reply:
        return int(reply["exit"])
    if "stale" in reply and not retried:  # it ends, as its code changed on disk: start the new code's
        _wait_gone(place)
        return request(root, argv, retried=True)
    raise DaemonError(f"the daemon answered {reply}")


def stop(root: Path) -> bool:
    """End root's daemon; False if none was running."""
    place = Place(root)
    sock = _connect(place)
    if sock is None:
        return False
    with sock:
        _send(sock, {"stop": True}, [])
        _reply(sock)
    _wait_gone(place)
    return True


def _connect(place: Place) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(place.socket))
    except OSError:
        sock.close()
        return None
    return sock


def _start(place: Place) -> socket.socket:
    """Start root's daemon and connect to it."""
    with place.log.open("wb") as log_file:  # each daemon's own log
        process = subprocess.Popen(
            [sys.executable, "-m", "tracefix.daemon", str(place.root)],
            cwd=place.root,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,  # not in the terminal's process group: Ctrl-C is the client's
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        sock = _connect(place)
        if sock is not None:
            return sock
        if process.poll() is not None and not _locked(place):  # it ended, and no other daemon is starting
            tail = place.log.read_text(errors="replace")[-1000:].strip()
            raise DaemonError(f"the daemon did not start: {tail or f'exit {process.returncode}'}")
        time.sleep(0.01)
    raise DaemonError(f"the daemon did not answer within {START_TIMEOUT:g} s (its log: {place.log})")


def _locked(place: Place) -> bool:
    """Whether a daemon holds root's lock (is running or starting)."""
    with place.lock.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def _wait_gone(place: Place) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while _locked(place) and time.monotonic() < deadline:
        time.sleep(0.01)


def _send(sock: socket.socket, message: dict, fds: list[int]) -> None:
    body = json.dumps(message).encode()
    socket.send_fds(sock, [b"%d\n" % len(body)], fds)
    sock.sendall(body)


def _reply(sock: socket.socket) -> dict:
    """The daemon's one-line answer; a daemon that ended without one ended the check with it."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            return {"exit": 3, "lost": True} if data == b"" else json.loads(data)
        data += chunk
    return json.loads(data)


# ---- the daemon: `python -m tracefix.daemon ROOT` -----------------------------------------------


class Daemon:
    def __init__(self, place: Place):
        from tracefix.running.warm import Pool, supported

        self.place = place
        self.pool = Pool(place.root) if supported() else None
        self.code = _code_stamp()
        self.busy = asyncio.Lock()
        self.last = time.monotonic()
        self.idle = float(os.environ.get("TRACEFIX_DAEMON_IDLE", IDLE))
        self.done = asyncio.Event()
        self.serving: set[asyncio.Task] = set()  # held: the loop keeps only weak references to tasks

    async def serve(self, server: socket.socket) -> None:
        from tracefix.cli import STOP_SIGNALS, log_warnings

        self.handler = log_warnings()  # its stream is each check's client's stderr in turn
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self.done.set)
        accepting = loop.create_task(self._accept(server))
        idle = loop.create_task(self._idle())
        try:
            await self.done.wait()
        finally:
            accepting.cancel()
            idle.cancel()
            if self.pool is not None:
                self.pool.close()

    async def _idle(self) -> None:
        while not self.done.is_set():
            await asyncio.sleep(min(self.idle, 30.0))
            if not self.busy.locked() and (time.monotonic() - self.last > self.idle or not self.place.root.is_dir()):
                self.done.set()

    async def _accept(self, server: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(server)
            task = loop.create_task(self._serve_one(conn))
            self.serving.add(task)
            task.add_done_callback(self.serving.discard)

    async def _serve_one(self, conn: socket.socket) -> None:
        with conn:
            try:
                message, fds = await asyncio.to_thread(_receive, conn)
            except (OSError, ValueError) as exc:
                log.warning("a request could not be read: %s", exc)
                return
            try:
                async with self.busy:  # one check at a time, as two in one workspace would share its store
                    self.last = time.monotonic()
                    reply = await self._answer(conn, message, fds)
                    self.last = time.monotonic()
            finally:
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            with contextlib.suppress(OSError):
                conn.setblocking(True)
                conn.sendall(json.dumps(reply).encode() + b"\n")

    async def _answer(self, conn: socket.socket, message: dict, fds: list[int]) -> dict:
        if message.get("stop"):
            self.done.set()
            return {"exit": 0}
        if _code_stamp() != self.code:
            self.done.set()
            return {"stale": "tracefix's code changed on disk"}
        if len(fds) != 2:
            return {"error": "expected the client's stdout and stderr"}
        from tracefix.check import check
        from tracefix.cli import CLOSED_PIPE, parser

        try:
            os.chdir(message["cwd"])
        except OSError as exc:
            return {"error": f"cannot enter the client's working directory: {exc}"}
        os.environ.clear()
        os.environ.update(message["env"])
        out, err = (os.fdopen(os.dup(fd), "w", encoding="utf-8", errors="backslashreplace") for fd in fds)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        self.handler.setStream(err)
        loop = asyncio.get_running_loop()
        try:
            args = parser().parse_args(["check", *message["argv"]])
            if args.path.resolve() != self.place.root:
                print(f"tracefix: this daemon serves {self.place.root}, not {args.path}", file=err)
                return {"exit": 2}
            job = loop.create_task(check(args, self.pool))
            gone = loop.create_task(_hung_up(conn))
            await asyncio.wait([job, gone], return_when=asyncio.FIRST_COMPLETED)
            if not job.done():  # the client was interrupted or died: stop its tests
                job.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await job
                return {"exit": 130}
            gone.cancel()
            status = job.result()
            out.flush()
            return {"exit": status}
        except SystemExit as exc:  # argparse, on bad arguments (it said why)
            return {"exit": exc.code if isinstance(exc.code, int) else 2}
        except BrokenPipeError:  # the reader of the client's output left (`| head -1`)
            return {"exit": CLOSED_PIPE}
        except Exception:  # a bug: shown as the check without the daemon would show it
            traceback.print_exc(file=err)
            return {"exit": 1}
        finally:
            sys.stdout, sys.stderr = saved
            self.handler.setStream(sys.stderr)
            for stream in (out, err):
                with contextlib.suppress(OSError):
                    stream.close()


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    """The client's request: a length line sent with its fds, then the JSON body; only from this user."""
    conn.settimeout(HEADER_TIMEOUT)
    uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[1]
    if uid != os.getuid():
        raise ValueError(f"a process of user {uid} is not served")
    head, fds, _, _ = socket.recv_fds(conn, 64, 4)
    size, _, body = head.partition(b"\n")
    while len(body) < int(size):
        chunk = conn.recv(int(size) - len(body))
        if not chunk:
            raise ValueError("the request ended early")
        body += chunk
    conn.setblocking(False)
    return json.loads(body), list(fds)


async def _hung_up(conn: socket.socket) -> None:
    """Returns when the client closed its end (it was interrupted, or it died)."""
    loop = asyncio.get_running_loop()
    while await loop.sock_recv(conn, 1):
        pass


def main(root: str) -> int:
    place = Place(Path(root))
    with place.lock.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # another daemon serves this workspace
        place.socket.unlink(missing_ok=True)  # a daemon that died left it
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(place.socket))
        server.listen()
        server.setblocking(False)
        try:
            asyncio.run(Daemon(place).serve(server))
        finally:
            place.socket.unlink(missing_ok=True)
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
