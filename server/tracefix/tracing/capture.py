"""Run one test under the tracing plugin and turn its records into a Trace."""

from __future__ import annotations

from pathlib import Path

from tracefix.running.plugin import tracefix_records as records
from tracefix.running.process import Limits, ProcessResult, plugin_env, run_streaming
from tracefix.running.results import RAISED
from tracefix.tracing.trace import Trace

OUTPUT_TAIL = 1500  # characters of pytest's output quoted when no trace came back


async def capture(
    root: Path,
    python: str,
    nodeid: str,
    *,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    limits: Limits | None = None,
) -> Trace:
    """Trace the test nodeid with the interpreter python (which needs pytest, not tracefix).

    Never raises for a test run that went wrong: a timeout, a crash or a test pytest could not
    run gives a Trace whose error says so, with whatever partial trace the plugin wrote first.
    """
    result = await _traced(root, python, [nodeid], timeout, env, limits)
    traced = [r for r in result.records if r["kind"] == records.TRACE and isinstance(r.get("nodeid"), str)]
    record = _pick(traced, nodeid)
    trace = _trace(record) if record else None
    if trace is None:
        record, trace = None, Trace(nodeid=nodeid)
    trace.error = _error(result, record, nodeid, timeout)
    return trace


async def capture_passing(
    root: Path, python: str, nodeids: list[str], *, timeout: float = 60, env: dict[str, str] | None = None
) -> list[Trace]:
    """Traces of the tests among nodeids that pass, from one pytest run: the calls they make and
    the values they pass (the inputs a differential check replays). [] when the run fails."""
    if not nodeids:
        return []
    result = await _traced(root, python, nodeids, timeout, env, None)
    traced = [r for r in result.records if r["kind"] == records.TRACE and not r.get("partial")]
    traces = [_trace(r) for r in traced if r.get("outcome") == "passed"]
    return [t for t in traces if t is not None]


def _trace(record: dict) -> Trace | None:
    """The record's Trace; None for a malformed one: test code can write records too."""
    try:
        return Trace.from_dict(record)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


async def _traced(
    root: Path, python: str, nodeids: list[str], timeout: float, env: dict[str, str] | None, limits: Limits | None
) -> ProcessResult:
    root = Path(root).resolve()
    env = plugin_env(env)
    env["TRACEFIX_TRACE_ROOT"] = str(root)
    # xdist workers would not inherit the report fd, so the tests must run in this process.
    argv = [python, "-m", "pytest", "-p", "tracefix_trace", "-p", "no:cacheprovider", "-p", "no:xdist", "-q", *nodeids]
    return await run_streaming(argv, cwd=root, env=env, limits=limits or Limits(timeout=timeout))


def _pick(records: list[dict], nodeid: str) -> dict | None:
    """The final record of the requested test; a nodeid that selects several picks the first
    failure. A later record of a test replaces its partial one."""
    latest: dict[str, dict] = {}
    for record in records:
        latest[record["nodeid"]] = record
    if nodeid in latest:
        return latest[nodeid]
    failed = [r for r in latest.values() if r.get("outcome") in RAISED]
    return next(iter(failed or latest.values()), None)


def _error(result: ProcessResult, record: dict | None, nodeid: str, timeout: float) -> str | None:
    partial = record is not None and record.get("partial")
    if result.out_of_time:  # the trace's limit, not the test's outcome
        found = "; the trace shows what ran until its step budget was spent" if partial else ""
        why = f"did not finish in {timeout:g} s" if result.timed_out else "used up its CPU time limit"
        return f"tracing {why}{found}"
    if record is not None and not partial:
        return None
    if result.signal is not None:
        ended = f"was killed by signal {result.signal}"
    else:
        ended = f"exited with code {result.returncode}"
    if partial:
        return f"pytest {ended} before {nodeid} finished; the trace stops where its step budget was spent"
    tail = result.output[-OUTPUT_TAIL:].strip()
    return f"pytest {ended} without running {nodeid}" + (f":\n{tail}" if tail else "")
