"""Run selected tests with pytest in the workspace's interpreter and stream per-test results."""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

from tracefix.running.interpreter import no_pytest
from tracefix.running.plugin import tracefix_records as records
from tracefix.running.process import Limits, ProcessResult, Spawn, plugin_env, run_streaming, spawn_process
from tracefix.running.results import (
    Location,
    Outcome,
    RecordError,
    RunReport,
    RunStatus,
    TestResult,
    asked_for,
    cause_location,
    cause_text,
    checked_record,
    parse_record,
)

log = logging.getLogger(__name__)


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
    nodeids = _outermost(nodeids)
    if not nodeids:
        return report
    started = time.monotonic()
    running: list[str] = []
    reported: dict[str, TestResult] = {}
    accepted: list[records.Report] = []  # the records that passed the checks: all the run's status reads

    def on_record(raw: dict) -> None:
        try:
            record = checked_record(raw)
            result = _accepted(record, nodeids, running, reported)
        except RecordError as exc:
            log.warning("refused a record from the test process in %s: %s", root, exc)
            return
        accepted.append(record)
        if record["kind"] == records.START:
            running.append(record["nodeid"])
        elif record["kind"] == records.SESSION:
            report.xdist = record.get("xdist", False)
        if result is None:
            return
        if result.nodeid in running:  # xdist workers run several at once
            running.remove(result.nodeid)
        if result.nodeid in reported:
            report.results.remove(reported[result.nodeid])
        reported[result.nodeid] = result
        report.results.append(result)
        if on_result is not None:
            on_result(result)

    child_env = plugin_env(env)
    if limits.test_timeout:
        child_env["TRACEFIX_TEST_TIMEOUT"] = str(limits.test_timeout)  # a warm fork gets it with the environment
    try:
        proc = await run_streaming(
            pytest_argv(python, nodeids, extra_args),
            cwd=root,
            env=child_env,
            limits=limits,
            on_record=on_record,
            spawn=spawn,
        )
    except FileNotFoundError:
        missing = python if root.is_dir() else f"the workspace folder {root}"
        report.status, report.message = RunStatus.ERROR, f"not found: {missing}"
        return report

    async def run_rest(rest: list[str]) -> RunReport:
        if not rest:
            return RunReport()
        return await run_tests(
            root, python, rest, limits=limits, on_result=on_result, extra_args=extra_args, env=env, spawn=spawn
        )

    uncollected = [r for r in report.results if r.uncollected]
    if uncollected and len(uncollected) == len(report.results) and "found no collectors for" in proc.output:
        # pytest refuses a whole run when an asked-for test's module cannot be collected: run the
        # rest; the modules' collection errors say why their tests did not run
        report = await run_rest([n for n in nodeids if not _inside(n, uncollected)])
        report.results[:0] = uncollected
        _name_collection_errors(report)
        return report
    unknown = [] if report.results else _not_found(proc.output, root, nodeids)
    if unknown:
        # pytest refuses a whole run over one id it cannot find: run the rest. An id the index has
        # that pytest does not is a test its module did not define when imported (a def under an
        # `if` that did not hold), so pytest would not run it either: skipped, and said why. A
        # parametrized case that is gone stands for its test function (its cases changed)
        rest = list(dict.fromkeys(n.split("[")[0] if n in unknown else n for n in nodeids))
        unknown = [n for n in unknown if "[" not in n]
        report = await run_rest([n for n in rest if n not in unknown])
        for nodeid in unknown:
            result = TestResult(
                nodeid,
                Outcome.SKIPPED,
                path=nodeid.split("::")[0],
                message="pytest did not find it in its module: not defined when the module was imported "
                "(under a condition that did not hold), or removed since tracefix last read the file",
            )
            report.results.append(result)
            if on_result is not None:
                on_result(result)
        return report
    report.duration = round(time.monotonic() - started, 3)
    report.output = proc.output
    done = next((r for r in accepted if r["kind"] == records.DONE), None)
    overrun = next((r for r in report.results if r.outcome == Outcome.TIMEOUT), None)
    if proc.silent:
        report.status = RunStatus.TIMEOUT
        report.message = (
            f"the test process sent nothing for {limits.silence:g} s (a hang outside any test, or a test "
            f"its per-test timeout could not stop) and was killed {_when(accepted)}"
        )
    elif proc.timed_out:
        report.status = RunStatus.TIMEOUT
        report.message = f"the test run exceeded its timeout of {limits.timeout:g} s and was killed {_when(accepted)}"
    elif overrun is not None and done is None:
        report.status = RunStatus.TIMEOUT
        report.message = f"{overrun.nodeid} {overrun.message}; the test process was ended there"
    elif proc.out_of_time:
        report.status = RunStatus.TIMEOUT
        report.message = (
            f"timeout: the test run used up its CPU time limit of {limits.bounded().cpu_seconds} s "
            f"and was killed {_when(accepted)}"
        )
    elif done is None:
        _not_finished(report, proc, accepted, python, root)
    elif done["exitstatus"] in PYTEST_GAVE_UP or not report.results:
        report.status = RunStatus.ERROR
        said, report.location = _pytest_says(proc.output, root)
        if not report.results:
            said = f"pytest ran none of the {len(nodeids)} selected tests" + (f": {said}" if said else "")
        report.message = said or f"pytest ended with exit status {done['exitstatus']}"
    if done is not None:
        _name_collection_errors(report)  # the cause, before pytest's "found no collectors for …"
    if report.status == RunStatus.OK:
        _account_for_lost(report, running, on_result)
    else:
        _account_for_unfinished(report, running, on_result)
        _account_for_not_run(report, nodeids)
    return report


FORGED = (
    "two results arrived for this test: code in the test process wrote to tracefix's report channel, "
    "so neither is trusted"
)


def _accepted(
    record: records.Report, nodeids: list[str], running: list[str], reported: dict[str, TestResult]
) -> TestResult | None:
    """The checked record's result, or None for other kinds: only tests the run asked for may
    start or report, a test's result only after its start, and a second result of one test marks
    it as forged. Raises RecordError."""
    result = parse_record(record)
    nodeid = result.nodeid if result is not None else record["nodeid"] if record["kind"] == records.START else None
    if nodeid is not None and not asked_for(nodeid, nodeids):
        raise RecordError(f"a record of {nodeid!r:.200}, which this run did not ask for")
    if result is None or record["kind"] != records.RESULT:
        return result
    if result.nodeid in reported:
        return TestResult(result.nodeid, Outcome.ERROR, path=result.path, line=result.line, message=FORGED)
    if result.nodeid not in running:
        raise RecordError(f"a result of {result.nodeid!r:.200}, which has not started")
    return result


# pytest's exit statuses for a session that stopped before it ran what it was asked to:
# interrupted (pytest.exit, KeyboardInterrupt), internal error, usage error
PYTEST_GAVE_UP = (2, 3, 4)
PYTEST_STATUSES = range(1, 6)  # what pytest itself exits with when it refuses to run


def _not_finished(
    report: RunReport, proc: ProcessResult, accepted: list[records.Report], python: str, root: Path
) -> None:
    """The test process ended before pytest's session did: why, in the best words there are."""
    refused = next((r for r in accepted if r["kind"] == records.CONFTEST_ERROR), None)
    if refused is not None:
        report.status = RunStatus.ERROR
        report.message = "a conftest.py failed to import: " + cause_text(refused["cause"])
        report.location = cause_location(refused["cause"])
        return
    if "No module named pytest" in proc.output:
        report.status = RunStatus.ERROR
        report.message = no_pytest(python)
        return
    said, where = _pytest_says(proc.output, root)
    if said and not proc.signal and proc.returncode in PYTEST_STATUSES and not accepted:
        report.status = RunStatus.ERROR  # pytest refused to start: a usage or configuration error
        report.message, report.location = said, where
        return
    report.status = RunStatus.CRASHED
    how = _how(proc.signal, proc.returncode)
    report.message = f"the test process ended with {how} {_when(accepted)}" + (f": {said}" if said else "")


def _when(accepted: list[records.Report]) -> str:
    """How far pytest got, by the records it sent."""
    if not any(r["kind"] == records.SESSION for r in accepted):
        return "while pytest was starting (loading plugins and conftest.py files)"
    if not any(r["kind"] == records.START for r in accepted):
        return "while pytest was collecting, before any test ran"
    return "before pytest finished"


def _pytest_says(output: str, root: Path) -> tuple[str, Location | None]:
    """pytest's own words for why it stopped (its ERROR and usage lines, an internal error, the
    reason on its "!!! … !!!" line; paths relative to the root), and the place they name."""
    lines = []
    internal = []
    for line in output.splitlines():
        if line.startswith("ERROR: ") and not line.startswith(SAID_ELSEWHERE):
            lines.append(line[len("ERROR: ") :])
        elif ": error: " in line and not line.startswith(" "):
            lines.append(line.split(": error: ", 1)[1])
        elif line.startswith("!!!") and line.endswith("!!!"):
            lines.append(line.strip("! "))
        elif line.startswith("INTERNALERROR>"):
            internal.append(line[len("INTERNALERROR>") :])
    prefix = str(root) + os.sep
    said = "; ".join(dict.fromkeys(line.replace(prefix, "").strip() for line in lines))
    where = _said_where(said, root)
    if internal:
        frames = [m for m in (TRACEBACK_FRAME.match(line) for line in internal) if m]
        ours = [m for m in frames if m[1].startswith(prefix) and not any(d in m[1] for d in THIRD_PARTY)]
        where = Location(ours[-1][1][len(prefix) :], int(ours[-1][2])) if ours else where
        at = f" in {where.path}:{where.line}" if ours and where else ""
        said = "; ".join(filter(None, [said, f"internal error{at}: {internal[-1].strip()}"]))
    return said, where


SAID_ELSEWHERE = ("ERROR: usage:", "ERROR: not found:", "ERROR: found no collectors")
TRACEBACK_FRAME = re.compile(r'\s*File "(.+)", line (\d+)')
THIRD_PARTY = ("site-packages", "dist-packages", os.sep + ".venv" + os.sep, os.sep + "venv" + os.sep)


def _said_where(said: str, root: Path) -> Location | None:
    """The file and line a pytest error names: "pytest.ini:3: …", "pyproject.toml: … (at line 8, column 25)"."""
    match = re.match(r"([^\s:]+):(\d+): ", said) or re.match(r"([^\s:]+): .*?\(at line (\d+)", said)
    if match is None or not (root / match.group(1)).is_file():
        return None
    return Location(match.group(1), int(match.group(2)))


def _name_collection_errors(report: RunReport) -> None:
    """Modules that failed to collect had their tests not run: say why."""
    causes: dict[str, list[str]] = {}
    for r in report.results:
        if r.uncollected:
            causes.setdefault(r.message, []).append(r.nodeid)
    if causes:
        report.message = "; ".join(f"could not collect {', '.join(where)}: {why}" for why, where in causes.items())


def _inside(nodeid: str, collectors: list[TestResult]) -> bool:
    return any(nodeid == c.nodeid or nodeid.startswith((c.nodeid + "::", c.nodeid + "/")) for c in collectors)


def _outermost(nodeids: list[str]) -> list[str]:
    """The ids without those inside another one (a test of a module that is asked for as a whole):
    given both, some pytest versions run only the inner one."""
    whole = {n for n in nodeids if "::" not in n}
    return [n for n in nodeids if not any(n.startswith((w + "::", w + "/")) for w in whole)]


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


UNFINISHED = {RunStatus.TIMEOUT: Outcome.TIMEOUT, RunStatus.CRASHED: Outcome.CRASHED}


def _account_for_unfinished(report, running, on_result) -> None:
    """The tests that were running when the process was killed, died or pytest stopped."""
    outcome = UNFINISHED.get(report.status, Outcome.ERROR)
    for nodeid in running:
        path = nodeid.split("::")[0]
        result = TestResult(nodeid=nodeid, outcome=outcome, path=path, message=report.message)
        report.results.append(result)
        if on_result is not None:
            on_result(result)


def _account_for_not_run(report, nodeids) -> None:
    seen = {r.nodeid for r in report.results}
    for nodeid in nodeids:
        if not any(s == nodeid or s.startswith((nodeid + "[", nodeid + "::")) for s in seen):
            report.results.append(TestResult(nodeid=nodeid, outcome=Outcome.NOT_RUN, path=nodeid.split("::")[0]))
