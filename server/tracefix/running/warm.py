"""Test runs handed to a warm worker (plugin/tracefix_warm.py) instead of a new interpreter.

The worker has pytest, its plugins and the tests' third-party imports loaded; every run is a
fresh fork of it, so workspace code is always imported anew. When the worker cannot take a run
(starting, busy, gone, out of date), the run starts a new interpreter as before: warm is only
ever faster, never different in what it can run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from tracefix.running.plugin.tracefix_warm import UPDATED
from tracefix.running.process import Limits, rlimits, spawn_process

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # seconds for the worker to import pytest and its plugins
REPLY_TIMEOUT = 10.0  # seconds for the worker to fork a run


def supported() -> bool:
    return os.name == "posix" and hasattr(socket, "send_fds") and hasattr(os, "fork")


def _startup_env(env: dict[str, str]) -> dict[str, str]:
    """What the interpreter sees at start; TRACEFIX_* vary per run and are set in each fork."""
    return {k: v for k, v in env.items() if not k.startswith("TRACEFIX_")}


class Worker:
    """One warm worker for one (interpreter, workspace, environment)."""

    def __init__(self, python: str, root: Path, env: dict[str, str]):
        self.python, self.root, self.env = python, root, _startup_env(env)
        self.process: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.ready = False
        self.busy = False
        self.running: int | None = None  # the process group of the run in progress
        self.dead: str | None = None  # why it can take no more runs

    def fits(self, python: str, env: dict[str, str]) -> bool:
        return self.python == python and self.env == _startup_env(env)

    async def start(self) -> None:
        ours, theirs = socket.socketpair()
        # a file, not a pipe: warnings printed by imports must never fill a pipe nobody reads
        with tempfile.TemporaryFile() as stderr:
            try:
                # on a thread: forking the server can take long enough to stall the event loop
                self.process = await asyncio.to_thread(
                    subprocess.Popen,
                    [self.python, "-m", "tracefix_warm"],
                    cwd=str(self.root),
                    env=dict(self.env, TRACEFIX_WARM_FD=str(theirs.fileno())),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,
                )
            except OSError as exc:
                ours.close()
                self.dead = f"cannot start: {exc}"
                return
            finally:
                theirs.close()
            self.sock = ours
            self.reader, self.writer = await asyncio.open_unix_connection(sock=ours)
            try:
                hello = await self._reply(START_TIMEOUT)
            except (TimeoutError, OSError, ValueError) as exc:
                stderr.seek(0)
                why = stderr.read()[-2000:].decode(errors="replace").strip() or repr(exc)
                self.close(f"did not start: {why}")
                return
        self.ready = "ready" in hello
        log.info("warm worker %s ready for %s in %.2f s", hello.get("ready"), self.root, hello.get("seconds", 0))

    async def _reply(self, timeout: float) -> dict:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        if not line:
            raise ConnectionResetError("the worker exited")
        return json.loads(line)

    async def spawn(self, argv: list[str], cwd: Path, env: dict[str, str], limits: Limits, report_fd: int):
        """A forked run of argv (`python -m pytest ...`), or None if this worker cannot take it."""
        if not self.ready or self.busy or self.dead:
            return None
        self.busy = True
        out_read, out_write = os.pipe()
        try:
            body = json.dumps({"args": argv[3:], "cwd": str(cwd), "env": env, "limits": rlimits(limits)}).encode()
            socket.send_fds(self.sock, [b"%d\n" % len(body)], [out_write, report_fd])
            self.writer.write(body)
            await self.writer.drain()
            reply = await self._reply(REPLY_TIMEOUT)
        except (TimeoutError, OSError, ValueError) as exc:
            os.close(out_read)
            self.close(f"lost: {exc or type(exc).__name__}")
            return None
        finally:
            os.close(out_write)
        if "pid" not in reply:
            os.close(out_read)
            self.close(reply.get("stale") or f"unexpected reply {reply}")
            return None
        self.running = reply["pid"]
        run = _Run(self, reply["pid"])
        await run.connect(out_read)
        return run

    def close(self, why: str = "closed") -> None:
        if self.dead is None:
            self.dead = why
            if why != "closed":
                log.info("warm worker for %s: %s", self.root, why)
        self.ready = self.busy = False
        if self.writer is not None:
            self.writer.close()
        elif self.sock is not None:
            self.sock.close()
        # the run has a session of its own: killing the worker would leave it running
        alive = self.process is not None and self.process.poll() is None
        for group in (self.running, self.process.pid if alive else None):
            if group is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
        self.running = None
        if alive:
            _reap(self.process)


def _reap(process: subprocess.Popen) -> None:
    """Wait for a killed worker off the loop, so that it leaves no zombie."""
    try:
        asyncio.get_running_loop().run_in_executor(None, process.wait)
    except RuntimeError:  # no loop: a one-shot caller that may block
        process.wait()


class _Run:
    """A forked run, shaped like asyncio's Process for run_streaming."""

    def __init__(self, worker: Worker, pid: int):
        self.worker, self.pid = worker, pid
        self.returncode: int | None = None
        self.stdout = asyncio.StreamReader()
        # one reader of the exit message, however many wait() and however often cancelled
        self._exit = asyncio.get_running_loop().create_task(self._read_exit())

    async def connect(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(self.stdout), os.fdopen(fd, "rb", 0))

    async def _read_exit(self) -> None:
        try:
            self.returncode = int((await self.worker._reply(timeout=None))["exit"])
        except (OSError, ValueError, KeyError, asyncio.CancelledError) as exc:
            self.worker.close(f"lost during a run: {exc or type(exc).__name__}")
            self.returncode = -9
        self.worker.busy, self.worker.running = False, None

    async def wait(self) -> int:
        await asyncio.shield(self._exit)
        return self.returncode


class Pool:
    """The warm worker of one workspace: started on first use, replaced when the interpreter or
    environment changes or it goes stale; a run it cannot take starts cold."""

    RESTARTS = 3  # workers that died before this one gives up and runs everything cold

    def __init__(self, root: Path):
        self.root = root
        self.worker: Worker | None = None
        self.restarts = 0
        self._starting: asyncio.Task | None = None

    def spawner(self, python: str):
        """The spawn function for run_streaming: warm when possible, else a new process."""

        async def spawn(argv, cwd, env, limits, report_fd):
            worker = self._current(python, env)
            run = await worker.spawn(argv, cwd, env, limits, report_fd) if worker else None
            if worker is not None and worker.dead:
                self._current(python, env)  # a replacement gets ready while this run starts cold
            return run or await spawn_process(argv, cwd, env, limits, report_fd)

        return spawn

    def _current(self, python: str, env: dict[str, str]) -> Worker | None:
        worker = self.worker
        if worker is not None and worker.fits(python, env) and not worker.dead:
            return worker
        if worker is not None:
            if worker.busy:
                return None  # replaced when its run is over
            if worker.dead not in (None, "closed", UPDATED):
                self.restarts += 1  # a fault; an update of installed packages is not one
            worker.close()
        if self.restarts > self.RESTARTS:
            return None
        self.worker = Worker(python, self.root, env)
        self._starting = asyncio.get_running_loop().create_task(self.worker.start())
        return None  # this run starts cold while the worker gets ready

    async def ready(self) -> bool:
        """Wait for a starting worker; True if one can take runs."""
        if self._starting is not None:
            await self._starting
        return bool(self.worker and self.worker.ready and not self.worker.dead)

    def close(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
        if self.worker is not None:
            self.worker.close()
