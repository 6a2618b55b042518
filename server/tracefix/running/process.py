"""Run a child in its own process group, stream its JSON records, bound it, kill it whole.

Everything that executes user or model code goes through `run_streaming`, so the limits
(timeout, output cap, rlimits, process-group kill) are the same for test runs, traces and
candidate verification.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tracefix.running.plugin.tracefix_warm import apply_limits

PLUGIN_DIR = Path(__file__).parent / "plugin"
OUTPUT_CAP = 1_000_000  # bytes of stdout/stderr kept; the rest is drained and dropped
RECORD_CAP = 16 << 20  # bytes of one JSON record; a longer one is dropped
FILE_BYTES = 1 << 30  # the largest file a run may write: more is a runaway loop, not a fixture
CPU_GRACE = 2  # CPU seconds past the timeout, so that on one core the wall clock stops a busy loop first
EXTRA_PROCESSES = 1024  # on top of the user's current count: RLIMIT_NPROC counts all of them


SILENCE = 5  # a test run with a per-test limit is killed after this many times it without a record


@dataclass
class Limits:
    """Bounds of one run; a limit left None gets the default of `bounded`, memory excepted."""

    timeout: float | None = 120.0  # wall-clock seconds for the whole process; None: no such limit
    test_timeout: float | None = None  # seconds per test, enforced inside the test process (tracefix_pytest)
    silence: float | None = None  # seconds the process may send no record before it is killed
    cpu_seconds: int | None = None
    memory_bytes: int | None = None
    processes: int | None = None
    file_bytes: int | None = None

    @classmethod
    def per_test(cls, seconds: float) -> Limits:
        """A test run that may last as long as its tests do, each at most `seconds`: the plugin ends
        the process when one runs longer. What it cannot stop (a hung collection or session
        teardown, a test stuck in C code that holds the GIL) ends after SILENCE times `seconds`
        without a record. No CPU limit: a long suite uses CPU for as long as it runs."""
        return cls(timeout=None, test_timeout=seconds, silence=SILENCE * seconds)

    def bounded(self) -> Limits:
        """CPU seconds: the timeout on every core (threads add up), plus CPU_GRACE, where there is a
        timeout; files up to FILE_BYTES; a fork bomb stops EXTRA_PROCESSES above what the user runs
        now. Memory stays unbounded: test suites differ too much for one default."""
        cpu = math.ceil(self.timeout) * (os.cpu_count() or 1) + CPU_GRACE if self.timeout else None
        return replace(
            self,
            cpu_seconds=self.cpu_seconds or cpu,
            processes=self.processes or process_limit(EXTRA_PROCESSES),
            file_bytes=self.file_bytes or FILE_BYTES,
        )


def process_limit(extra: int) -> int | None:
    """An RLIMIT_NPROC `extra` tasks above the user's current count (it counts threads too)."""
    uid, count = os.getuid(), 0
    try:
        entries = [p for p in os.scandir("/proc") if p.name.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            if entry.stat().st_uid == uid:
                count += len(os.listdir(f"/proc/{entry.name}/task"))
        except OSError:
            pass  # exited meanwhile
    return count + extra


@dataclass
class ProcessResult:
    returncode: int | None
    timed_out: bool = False
    silent: bool = False  # timed out by Limits.silence: no record for that long
    cancelled: bool = False
    output: str = ""
    output_truncated: bool = False
    records: list[dict] = field(default_factory=list)

    @property
    def signal(self) -> int | None:
        if self.returncode is not None and self.returncode < 0:
            return -self.returncode
        return None

    @property
    def out_of_time(self) -> bool:
        """Stopped by our timeout, or by the kernel at the CPU-seconds limit: on an idle machine a
        busy loop reaches that limit as soon as the wall-clock timeout, and either may come first."""
        return self.timed_out or self.signal == signal.SIGXCPU


RLIMITS = ("cpu_seconds", "memory_bytes", "processes", "file_bytes")


def rlimits(limits: Limits) -> dict[str, int]:
    """The limits a child applies to itself (plugin/tracefix_warm.py's apply_limits): those set.
    The parent enforces the timeouts (the per-test one travels in the environment: runner.py)."""
    return {k: v for k, v in asdict(limits).items() if k in RLIMITS and v}


PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None  # loaded before any fork


def _die_with(parent: int) -> None:
    """In a child before it runs the test interpreter: the kernel sends it SIGKILL when its parent
    dies, even by SIGKILL, so no test process outlives tracefix. (Strictly, when the thread that
    forked ends: one of the event loop's executor threads, which last as long as the loop.)"""
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _prepare_child(limits: Limits) -> Callable[[], None]:
    values, parent = rlimits(limits), os.getpid()

    def prepare() -> None:
        _die_with(parent)
        apply_limits(values)

    return prepare


def kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


PYTEST_OWN = ("PYTEST_XDIST_", "PYTEST_CURRENT_TEST")


def plugin_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment that lets any interpreter with pytest load our plugins from PLUGIN_DIR."""
    # a pytest we run from inside another one's test (xdist worker, current test) is no part of it
    env = {k: v for k, v in (os.environ if env is None else env).items() if not k.startswith(PYTEST_OWN)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PLUGIN_DIR), env.get("PYTHONPATH", "")) if p)
    prefix = env.pop("TRACEFIX_BYTECODE", None)  # a cache folder bytecode.prepare made ready for this run
    if prefix:
        env["PYTHONPYCACHEPREFIX"] = prefix
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:  # never into the workspace
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env


async def _read_records(reader: asyncio.StreamReader, on_record, records: list[dict], heard: list[float]) -> None:
    """Read records until EOF; heard[0]: the loop's time of the last one."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            line = await reader.readline()
        except ValueError:
            continue  # over RECORD_CAP: dropped, and its tail fails to parse below
        if not line:
            return
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a torn last line from a killed child
        if not isinstance(record, dict) or not isinstance(record.get("kind"), str):
            continue  # not a record at all; what a record holds, its reader checks (results.checked_record)
        heard[0] = loop.time()
        records.append(record)
        if on_record is not None:
            on_record(record)


async def _drain(reader: asyncio.StreamReader, sink: bytearray) -> bool:
    truncated = False
    while chunk := await reader.read(65536):
        room = OUTPUT_CAP - len(sink)
        if room > 0:
            sink += chunk[:room]
        if len(chunk) > room:
            truncated = True
    return truncated


# (argv, cwd, env, bounded limits, report fd) -> a started child: .pid (its process group too),
# .stdout (an asyncio.StreamReader of stdout and stderr), await .wait(), then .returncode
Spawn = Callable[[list[str], Path, dict[str, str], Limits, int], Awaitable[Any]]


async def spawn_process(argv: list[str], cwd: Path, env: dict[str, str], limits: Limits, report_fd: int) -> Child:
    """A new process, started on a thread: forking a large server can take tens of milliseconds,
    which must not stall the event loop."""
    popen = await asyncio.to_thread(
        subprocess.Popen,
        argv,
        cwd=str(cwd),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        pass_fds=(report_fd,),
        start_new_session=True,
        preexec_fn=_prepare_child(limits),
    )
    return await Child.watch(popen)


class Child:
    """A started subprocess.Popen shaped like asyncio's Process: `stdout` is a StreamReader and
    `wait()` resolves when it exits, seen through a pidfd (a thread where there is none)."""

    def __init__(self, popen: subprocess.Popen, stdout: asyncio.StreamReader, exited: asyncio.Future):
        self.popen, self.pid, self.stdout, self._exited = popen, popen.pid, stdout, exited

    @classmethod
    async def watch(cls, popen: subprocess.Popen) -> Child:
        loop = asyncio.get_running_loop()
        stdout = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdout), popen.stdout)
        exited: asyncio.Future = loop.create_future()
        try:
            pidfd = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):  # no pidfd: a thread waits
            wait = loop.run_in_executor(None, popen.wait)

            def settle(f: asyncio.Future) -> None:
                if not exited.done():
                    exited.set_result(f.result())

            wait.add_done_callback(settle)
            return cls(popen, stdout, exited)

        def reap() -> None:
            if popen.poll() is not None:
                loop.remove_reader(pidfd)
                os.close(pidfd)
                if not exited.done():
                    exited.set_result(popen.returncode)

        loop.add_reader(pidfd, reap)
        reap()
        return cls(popen, stdout, exited)

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)


async def _bounded(work: asyncio.Future, limits: Limits, heard: list[float]) -> tuple[bool, bool]:
    """Wait for work within the limits; (timed out, by silence). work goes on either way."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limits.timeout if limits.timeout else math.inf
    while True:
        quiet = heard[0] + limits.silence if limits.silence else math.inf
        wait = min(end, quiet) - loop.time()
        if wait <= 0:
            return True, quiet < end
        await asyncio.wait([work], timeout=None if math.isinf(wait) else wait)
        if work.done():
            return False, False


async def run_streaming(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    limits: Limits,
    on_record: Callable[[dict], None] | None = None,
    spawn: Spawn = spawn_process,
) -> ProcessResult:
    """Run argv; the child writes JSON lines to the fd named by TRACEFIX_REPORT_FD.

    `spawn` starts it: a new process, or a fork of a warm worker (running/warm.py).
    Cancelling the awaiting task kills the whole process group.
    """
    read_fd, write_fd = os.pipe()
    env = dict(env, TRACEFIX_REPORT_FD=str(write_fd))
    try:
        proc = await spawn(argv, cwd, env, limits.bounded(), write_fd)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=RECORD_CAP)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
    )
    result = ProcessResult(returncode=None)
    output = bytearray()
    heard = [loop.time()]
    work = asyncio.gather(
        _read_records(reader, on_record, result.records, heard), _drain(proc.stdout, output), proc.wait()
    )
    try:
        result.timed_out, result.silent = await _bounded(work, limits, heard)
        if not result.timed_out:
            _, result.output_truncated, _ = work.result()
    except asyncio.CancelledError:
        result.cancelled = True
        kill_group(proc)
        transport.close()
        work.cancel()
        work.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody awaits it now
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(proc.wait(), 5)  # reap it: no zombie outlives the run
        raise
    finally:
        if result.timed_out:
            kill_group(proc)
            try:
                await asyncio.wait_for(work, 5)
            except (TimeoutError, asyncio.CancelledError):
                work.cancel()
        elif not result.cancelled:
            kill_group(proc)  # grandchildren a test left behind die with the run
        transport.close()
    result.returncode = proc.returncode
    result.output = output.decode("utf-8", "replace")
    return result
