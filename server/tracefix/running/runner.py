"""Run selected tests with pytest in the workspace's interpreter and stream per-test results."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from tracefix.running.process import Limits, Spawn, plugin_env, run_streaming, spawn_process
from tracefix.running.results import Outcome, RunReport, RunStatus, TestResult, parse_record


def pytest_argv(python: str, nodeids: list[str], extra: tuple[str, ...] = ()) -> list[str]:
    return [
        python,
        "-m",
        "pytest",
        "-p",
        "tracefix_pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "--no-header",
        "-rN",
        "--color=no",
        "--continue-on-collection-errors",
        *extra,
        "--",
        *nodeids,
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
            pytest_argv(python, nodeids, extra_args),
            cwd=root,
            env=plugin_env(env),
            limits=limits,
            on_record=on_record,
            spawn=spawn,
        )
    except FileNotFoundError:
        report.status, report.message = RunStatus.ERROR, f"test interpreter not found: {python}"
        return report
    unknown = [] if report.results else _not_found(proc.output, root, nodeids)
    if unknown:
        # pytest refuses a whole run over one id it cannot find: run the rest, report the stale ids;
        # a parametrized case that is gone stands for its test function (its cases changed)
        rest = list(dict.fromkeys(n.split("[")[0] if n in unknown else n for n in nodeids))
        unknown = [n for n in unknown if "[" not in n]
        rest = [n for n in rest if n not in unknown]
        report = await run_tests(
            root, python, rest, limits=limits, on_result=on_result, extra_args=extra_args, env=env, spawn=spawn
        )
        for nodeid in unknown:
            result = TestResult(
                nodeid,
                Outcome.ERROR,
                path=nodeid.split("::")[0],
                message="pytest does not know this test; tracefix's index may be out of date",
            )
            report.results.append(result)
            if on_result is not None:
                on_result(result)
        return report
    report.duration = round(time.monotonic() - started, 3)
    report.output = proc.output
    done = any(r.get("kind") == "done" for r in proc.records)
    if proc.timed_out:
        report.status = RunStatus.TIMEOUT
        report.message = f"the test run exceeded its timeout of {limits.timeout:g} s and was killed"
    elif proc.out_of_time:
        report.status = RunStatus.TIMEOUT
        report.message = (
            f"timeout: the test run used up its CPU time limit of {limits.bounded().cpu_seconds} s and was killed"
        )
    elif not done:
        report.status = RunStatus.CRASHED
        report.message = f"the test process ended with {_how(proc.signal, proc.returncode)} before pytest finished"
        if "No module named pytest" in proc.output:
            report.status = RunStatus.ERROR
            report.message = f"pytest is not installed in {python} (run: {python} -m pip install pytest)"
    elif not report.results and proc.returncode not in (0, 1, 5):
        report.status = RunStatus.ERROR  # usage errors, bad config: pytest's own words say why
        report.message = proc.output.strip()[-2000:] or f"pytest exited with {proc.returncode}"
    if report.status in (RunStatus.TIMEOUT, RunStatus.CRASHED):
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
        result = TestResult(
            nodeid=nodeid,
            outcome=Outcome.ERROR,
            path=nodeid.split("::")[0],
            message="its result was too large to read (a huge assertion or exception message?)",
        )
        report.results.append(result)
        if on_result is not None:
            on_result(result)


def _not_found(output: str, root: Path, nodeids: list[str]) -> list[str]:
    """The requested ids that pytest reported as "ERROR: not found: <absolute path>::…"."""
    missing = set()
    for line in output.splitlines():
        if line.startswith("ERROR: not found: "):
            target = line[len("ERROR: not found: ") :].strip()
            path, sep, rest = target.partition("::")
            try:
                path = Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
            except ValueError:
                pass
            missing.add(path + sep + rest)
    # pytest 9 names the function of a case it cannot find, older versions the case
    return [n for n in nodeids if n in missing or n.split("[")[0] in missing]


def _account_for_unfinished(report, running, nodeids, on_result) -> None:
    seen = {r.nodeid for r in report.results}
    outcome = Outcome.TIMEOUT if report.status == RunStatus.TIMEOUT else Outcome.CRASHED
    for nodeid in running:
        path = nodeid.split("::")[0]
        result = TestResult(nodeid=nodeid, outcome=outcome, path=path, message=report.message)
        report.results.append(result)
        seen.add(nodeid)
        if on_result is not None:
            on_result(result)
    for nodeid in nodeids:
        if not any(s == nodeid or s.startswith((nodeid + "[", nodeid + "::")) for s in seen):
            report.results.append(TestResult(nodeid=nodeid, outcome=Outcome.NOT_RUN, path=nodeid.split("::")[0]))
