"""Test runs handed to a warm worker (plugin/tracefix_warm.py) instead of a new interpreter.

The worker has pytest and the tests' third-party imports loaded; every run is a fresh fork of
it, so workspace code is always imported anew. Warm is only ever faster, never different:
- a run the worker cannot take (starting, busy, gone, out of date: a module it imported changed
  on disk, packages were installed) starts a new interpreter, and a worker that is out of date
  is replaced;
- a forked run that did not complete (it crashed, exited with no verdict, lost its worker) runs
  again in a new interpreter, in the same request, since only that can tell the tests' fault from
  the worker's; its report is the cold run's. When the cold run completes, the worker was at
  fault and is replaced.
Each of these says why through the `note` of Pool.run.
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

from tracefix.running.plugin import tracefix_records as records
from tracefix.running.plugin.tracefix_warm import CHANGED, PULLED, UPDATED
from tracefix.running.process import Limits, Spawn, rlimits, spawn_process
from tracefix.running.results import RunReport, RunStatus, TestResult

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # seconds for the worker to import pytest
REPLY_TIMEOUT = 10.0  # seconds for the worker to fork a run
OUT_OF_DATE = (UPDATED, CHANGED, PULLED)  # why a worker quits that is no fault of its own
OnResult = Callable[[TestResult], None] | None
COMPLETE = (RunStatus.OK, RunStatus.TIMEOUT)  # a run that gave its verdict, or that a cold one would not finish sooner


def supported() -> bool:
    return os.name == "posix" and hasattr(socket, "send_fds") and hasattr(os, "fork")


def _startup_env(env: dict[str, str]) -> dict[str, str]:
    """What the interpreter sees at start; TRACEFIX_* vary per run and are set in each fork."""
    return {k: v for k, v in env.items() if not k.startswith("TRACEFIX_")}


class Worker:
    """One warm worker for one (interpreter, workspace, environment)."""

    def __init__(self, python: str, root: Path, env: dict[str, str], skip: list[str]):
        self.python, self.root, self.env = python, root, _startup_env(env)
        self.skip = skip  # modules not to import ahead of runs; the worker's own list when it quits
        self.process: subprocess.Popen | None = None
        self.stderr: IO[bytes] | None = None  # the worker's, read if it does not start
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
        # on a thread: forking the server can take long enough to stall the event loop
        await asyncio.to_thread(self.launch)
        await self.connect()

    def launch(self) -> None:
        """Start the worker's process; connect() then waits until it is ready."""
        ours, theirs = socket.socketpair()
        # a file, not a pipe: warnings printed by imports must never fill a pipe nobody reads
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - read in connect(), which may come later
        try:
            self.process = subprocess.Popen(
                [self.python, "-m", "tracefix_warm"],
                cwd=str(self.root),
                env=dict(self.env, TRACEFIX_WARM_FD=str(theirs.fileno()), TRACEFIX_WARM_SKIP=json.dumps(self.skip)),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self.stderr,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            self.stderr.close()
            self.dead = f"cannot start: {exc}"
            return
        finally:
            theirs.close()
        self.sock = ours

    async def connect(self) -> None:
        if self.sock is None or self.stderr is None:  # launch failed: dead says why
            return
        with self.stderr:
            self.reader, self.writer = await asyncio.open_unix_connection(sock=self.sock)
            try:
                hello = await self._reply(START_TIMEOUT)
            except (TimeoutError, OSError, ValueError) as exc:
                self.stderr.seek(0)
                why = self.stderr.read()[-2000:].decode(errors="replace").strip() or repr(exc)
                self.close(f"did not start: {why}")
                return
        self.ready = "ready" in hello
        log.info("warm worker %s ready for %s in %.2f s", hello.get("ready"), self.root, hello.get("seconds", 0))

    async def _reply(self, timeout: float | None) -> dict:
        assert self.reader is not None, "the worker is not connected"
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        if not line:
            raise ConnectionResetError("the worker exited")
        return json.loads(line)

    async def spawn(self, argv: list[str], cwd: Path, env: dict[str, str], limits: Limits, report_fd: int):
        """A forked run of argv (`python -m pytest ...`), or None if this worker cannot take it."""
        if not self.ready or self.busy or self.dead:
            return None
        assert self.sock is not None and self.writer is not None  # ready: connected
        self.busy = True
        out_read, out_write = os.pipe()
        try:
            request = records.Request(args=argv[3:], cwd=str(cwd), env=env, limits=rlimits(limits))
            body = json.dumps(request).encode()
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
            self.skip = reply.get("skip", self.skip)
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
        if self.stderr is not None:
            self.stderr.close()
        if self.writer is not None:
            self.writer.close()
        elif self.sock is not None:
            self.sock.close()
        # the run has a session of its own: killing the worker would leave it running
        alive = self.process if self.process is not None and self.process.poll() is None else None
        for group in (self.running, alive.pid if alive else None):
            if group is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
        self.running = None
        if alive:
            _reap(alive)


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
        assert self.returncode is not None  # _read_exit sets it
        return self.returncode


class Pool:
    """The warm worker of one workspace: started on first use, replaced when the interpreter or
    environment changes or it goes stale; a run it cannot take starts cold."""

    RESTARTS = 3  # workers that died before this one gives up and runs everything cold

    def __init__(self, root: Path):
        self.root = root
        self.worker: Worker | None = None
        self.restarts = 0
        self.skip: list[str] = []  # what the last worker learnt not to import ahead of runs
        self.closed = False
        self.prestarted: Worker | None = None  # started ahead of the run that will wait for it
        self._starting: asyncio.Task | None = None

    async def run(
        self,
        python: str,
        attempt: Callable[[Spawn, OnResult], Awaitable[RunReport]],
        on_result: OnResult,
        note: Callable[[str], None],
    ) -> RunReport:
        """attempt(spawn, on_result), a test run, forked from the worker when it can take it, else
        in a new interpreter; a forked run that did not complete runs again in a new interpreter,
        whose report is the run's. Results stream to on_result as tests finish, except those the
        runner makes up once a forked run has ended (crashed, not run): if it runs again, they are
        not the run's. note(why) for each run that went cold."""
        forked: list[tuple[Worker, _Run]] = []
        held: list[TestResult] = []

        async def spawn(argv: list[str], cwd: Path, env: dict[str, str], limits: Limits, report_fd: int):
            worker, why = self._current(python, env)
            if worker is not None:
                if worker is self.prestarted and not worker.ready and not worker.dead:
                    await self._connect(worker)  # started for this run: sooner ready than a new interpreter
                run = await worker.spawn(argv, cwd, env, limits, report_fd)
                if run is not None:
                    forked.append((worker, run))
                    return run
                why = worker.dead or ("busy with another run" if worker.busy else "still starting")
                if worker.dead:
                    self._current(python, env)  # a replacement gets ready while this run starts cold
            note(f"warm runner: {why}; the run starts a new interpreter")
            return await spawn_process(argv, cwd, env, limits, report_fd)

        def streamed(result: TestResult) -> None:
            if forked and forked[-1][1].returncode is not None:
                held.append(result)
            elif on_result is not None:
                on_result(result)

        report = await attempt(spawn, streamed)
        if not forked or report.status in COMPLETE or self.closed:  # closed: its runs end with it
            if on_result is not None:
                for result in held:  # the run's after all
                    on_result(result)
            return report
        worker = forked[-1][0]
        note(f"warm run failed ({worker.dead or report.message}); running the same tests in a new interpreter")
        cold = await attempt(spawn_process, on_result)
        if cold.status in COMPLETE and worker is self.worker:
            worker.close(f"a forked run failed where a new interpreter did not: {report.message}")
        return cold

    def prestart(self, python: str, env: dict[str, str]) -> None:
        """Start the worker of a new pool now, with no event loop yet: a one-shot check starts
        pytest while it imports, indexes and selects, and its run then waits for this worker
        instead of starting a new interpreter. env: what the run's environment will be (as
        run_tests passes it)."""
        assert self.worker is None, "prestart is for a pool that has no worker yet"
        self.worker = self.prestarted = Worker(python, self.root, env, self.skip)
        self.worker.launch()

    async def _connect(self, worker: Worker) -> None:
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(worker.connect())
        await self._starting

    def _current(self, python: str, env: dict[str, str]) -> tuple[Worker | None, str]:
        """The worker that fits, or None and why not."""
        worker = self.worker
        if worker is not None and worker.fits(python, env) and not worker.dead:
            return worker, ""
        if worker is not None:
            if worker.busy:
                return None, "the worker is being replaced"  # when its run is over
            if worker.dead is not None and not worker.dead.startswith(("closed", *OUT_OF_DATE)):
                self.restarts += 1  # a fault; being out of date is not one
            self.skip = worker.skip
            worker.close()
        if self.closed:
            return None, "closed"
        if self.restarts > self.RESTARTS:
            return None, f"off after {self.restarts} failed workers"
        self.worker = Worker(python, self.root, env, self.skip)
        self._starting = asyncio.get_running_loop().create_task(self.worker.start())
        return None, "starting the worker"  # this run starts cold while the worker gets ready

    async def ready(self) -> bool:
        """Wait for a starting worker; True if one can take runs."""
        if self._starting is not None:
            await self._starting
        return bool(self.worker and self.worker.ready and not self.worker.dead)

    def close(self) -> None:
        self.closed = True
        if self._starting is not None:
            self._starting.cancel()
        if self.worker is not None:
            self.worker.close()
