"""Run selected tests with pytest in the workspace's interpreter and stream per-test results."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

from tracefix.running.process import Limits, Spawn, plugin_env, run_streaming, spawn_process

FAILING = ("failed", "error", "timeout", "crashed")


@dataclass(frozen=True)
class Location:
    path: str  # relative to the project root, posix
    line: int  # 1-based
    function: str = ""


@dataclass
class TestResult:
    nodeid: str
    outcome: str  # passed failed error skipped xfailed timeout crashed "not run"
    duration: float = 0.0
    message: str = ""
    path: str = ""  # the test's file, relative to the root
    line: int = 0  # the test's def line, 1-based
    location: Location | None = None  # the failing line in the test file
    frame: Location | None = None  # the deepest frame in workspace non-test code
    expected: str | None = None
    actual: str | None = None

    @property
    def failing(self) -> bool:
        return self.outcome in FAILING

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TestResult":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["location"], values["frame"] = _location(data.get("location")), _location(data.get("frame"))
        return cls(**values)


@dataclass
class RunReport:
    results: list[TestResult] = field(default_factory=list)
    status: str = "ok"  # ok | timeout | crashed | cancelled | error
    message: str = ""
    duration: float = 0.0
    output: str = ""
    xdist: bool | None = None  # whether the test interpreter has pytest-xdist; None if pytest never started

    @property
    def failed(self) -> list[TestResult]:
        return [r for r in self.results if r.failing]

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
        parts = [f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: kv[0] not in FAILING)]
        text = ", ".join(parts) or "no tests ran"
        return f"{text} in {self.duration:.1f} s"


class InterpreterError(Exception):
    """The configured or discovered interpreter cannot run tests."""


def find_python(root: Path, configured: str | None = None) -> str:
    """setting, else .venv/venv in the workspace, else $VIRTUAL_ENV, else our own interpreter."""
    if configured:
        path = Path(os.path.expanduser(configured))
        if not path.is_absolute() and os.sep not in configured:
            found = shutil.which(configured)
            if found:
                return found
        path = path if path.is_absolute() else root / path
        if not path.exists():
            raise InterpreterError(f"tracefix.python is set to {configured!r}, which does not exist")
        return str(path)
    bindir = "Scripts" if os.name == "nt" else "bin"
    candidates = [root / name / bindir / "python" for name in (".venv", "venv")]
    if os.environ.get("VIRTUAL_ENV"):
        candidates.append(Path(os.environ["VIRTUAL_ENV"]) / bindir / "python")
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    return sys.executable


def check_python(python: str) -> str | None:
    """None if `python` can import pytest, else a message that says what to do."""
    try:
        proc = subprocess.run(
            [python, "-c", "import pytest"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot start the test interpreter {python}: {exc}"
    if proc.returncode != 0:
        return f"pytest is not installed in {python} (run: {python} -m pip install pytest)"
    return None


def _location(data: dict | None) -> Location | None:
    if not data:
        return None
    return Location(data["path"], int(data["line"]), data.get("function", ""))


def parse_record(record: dict) -> TestResult | None:
    """A plugin record → TestResult (None for records that are not a test's outcome)."""
    kind = record.get("kind")
    if kind == "collect_error":
        path = record["nodeid"].split("::")[0]
        return TestResult(
            nodeid=record["nodeid"], outcome="error", path=path, line=1,
            message="collection failed: " + record.get("message", ""),
        )
    if kind != "result":
        return None
    compare = record.get("compare") or {}
    expected = actual = None
    if compare.get("op") == "==":
        # pytest writes `assert actual == expected` by convention
        actual, expected = compare["left"], compare["right"]
    return TestResult(
        nodeid=record["nodeid"],
        outcome=record["outcome"],
        duration=round(float(record.get("duration", 0.0)), 4),
        message=record.get("message", ""),
        path=record.get("path", ""),
        line=int(record.get("line", 0)),
        location=_location(record.get("location")),
        frame=_location(record.get("frame")),
        expected=expected,
        actual=actual,
    )


def pytest_argv(python: str, nodeids: list[str], extra: tuple[str, ...] = ()) -> list[str]:
    return [
        python, "-m", "pytest", "-p", "tracefix_pytest", "-p", "no:cacheprovider",
        "-q", "--no-header", "-rN", "--color=no", "--continue-on-collection-errors", *extra, "--", *nodeids,
    ]


async def run_tests(
    root: Path,
    python: str,
    nodeids: list[str],
    *,
    limits: Limits,
    on_result: Callable[[TestResult], None] | None = None,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    spawn: Spawn = spawn_process,
) -> RunReport:
    """Run nodeids; results stream to on_result as tests finish. `spawn`: see run_streaming.

    A killed or hung run is reported, with the test that was running at that moment marked
    timeout/crashed and the others that never ran as "not run".
    """
    report = RunReport()
    if not nodeids:
        return report
    started = time.monotonic()
    running: list[str] = []

    def on_record(record: dict) -> None:
        if record.get("kind") == "start":
            running.append(record["nodeid"])
            return
        if record.get("kind") == "session":
            report.xdist = bool(record.get("xdist"))
            return
        result = parse_record(record)
        if result is None:
            return
        if result.nodeid in running:  # xdist workers run several at once
            running.remove(result.nodeid)
        report.results.append(result)
        if on_result is not None:
            on_result(result)

    try:
        proc = await run_streaming(
            pytest_argv(python, nodeids, extra_args), cwd=root, env=plugin_env(env),
            limits=limits, on_record=on_record, spawn=spawn,
        )
    except FileNotFoundError:
        report.status, report.message = "error", f"test interpreter not found: {python}"
        return report
    unknown = [] if report.results else _not_found(proc.output, root, nodeids)
    if unknown:
        # pytest refuses a whole run over one id it cannot find: run the rest, report the stale ids
        rest = [n for n in nodeids if n not in unknown]
        report = await run_tests(root, python, rest, limits=limits, on_result=on_result,
                                 extra_args=extra_args, env=env, spawn=spawn)
        for nodeid in unknown:
            result = TestResult(nodeid, "error", path=nodeid.split("::")[0],
                                message="pytest does not know this test; tracefix's index may be out of date")
            report.results.append(result)
            if on_result is not None:
                on_result(result)
        return report
    report.duration = round(time.monotonic() - started, 3)
    report.output = proc.output
    done = any(r.get("kind") == "done" for r in proc.records)
    if proc.timed_out:
        report.status = "timeout"
        report.message = f"the test run exceeded its timeout of {limits.timeout:g} s and was killed"
    elif proc.out_of_time:
        report.status = "timeout"
        report.message = (f"timeout: the test run used up its CPU time limit of "
                          f"{limits.bounded().cpu_seconds} s and was killed")
    elif not done:
        report.status = "crashed"
        report.message = f"the test process ended with {_how(proc.signal, proc.returncode)} before pytest finished"
        if "No module named pytest" in proc.output:
            report.status = "error"
            report.message = f"pytest is not installed in {python} (run: {python} -m pip install pytest)"
    elif not report.results and proc.returncode not in (0, 1, 5):
        report.status = "error"  # usage errors, bad config: pytest's own words say why
        report.message = proc.output.strip()[-2000:] or f"pytest exited with {proc.returncode}"
    if report.status in ("timeout", "crashed"):
        _account_for_unfinished(report, running, nodeids, on_result)
    else:
        _account_for_lost(report, running, on_result)
    return report


def _how(signum: int | None, returncode: int | None) -> str:
    if not signum:
        return f"exit status {returncode}"
    try:
        return f"signal {signum} ({signal.Signals(signum).name})"
    except ValueError:
        return f"signal {signum}"


def _account_for_lost(report, running, on_result) -> None:
    """Tests that started but whose result never came: a record too large to read."""
    for nodeid in running:
        result = TestResult(nodeid=nodeid, outcome="error", path=nodeid.split("::")[0],
                            message="its result was too large to read (a huge assertion or exception message?)")
        report.results.append(result)
        if on_result is not None:
            on_result(result)


def _not_found(output: str, root: Path, nodeids: list[str]) -> list[str]:
    """The requested ids that pytest reported as "ERROR: not found: <absolute path>::…"."""
    missing = set()
    for line in output.splitlines():
        if line.startswith("ERROR: not found: "):
            target = line[len("ERROR: not found: "):].strip()
            path, sep, rest = target.partition("::")
            try:
                path = Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
            except ValueError:
                pass
            missing.add(path + sep + rest)
    return [n for n in nodeids if n in missing]


def _account_for_unfinished(report, running, nodeids, on_result) -> None:
    seen = {r.nodeid for r in report.results}
    outcome = "timeout" if report.status == "timeout" else "crashed"
    for nodeid in running:
        path = nodeid.split("::")[0]
        result = TestResult(nodeid=nodeid, outcome=outcome, path=path, message=report.message)
        report.results.append(result)
        seen.add(nodeid)
        if on_result is not None:
            on_result(result)
    for nodeid in nodeids:
        if not any(s == nodeid or s.startswith(nodeid + "[") or s.startswith(nodeid + "::") for s in seen):
            report.results.append(TestResult(nodeid=nodeid, outcome="not run", path=nodeid.split("::")[0]))
