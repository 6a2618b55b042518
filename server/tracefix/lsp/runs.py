"""Test runs in the background: saves coalesce, a new save cancels a stale run, results stream
to diagnostics, $/progress and the `tracefix/testResults` notification as tests finish, and
every run request ends in one `done: true` notification, even when nothing needed to run.

A run that did not complete (pytest could not start, crashed, timed out, could not collect a
module) is never shown as a pass: the status is `error` with the cause until a run completes, and
a diagnostic sits where the cause is when it is one place.

When no run has started for AUDIT_IDLE seconds after one that selected tests for changes, the
whole suite runs at low priority to audit selection: failures it would have skipped are counted.
Failures it finds that no run the user started has shown are marked "found by the idle audit" and
do not count as failed until such a run confirms them."""

from __future__ import annotations

import asyncio
import os
import time

from lsprotocol import types

from tracefix.index.pytestconfig import CONFIG_FILES
from tracefix.lsp import publishing, traces
from tracefix.lsp.progress import Progress
from tracefix.lsp.session import Pending, ProjectState, Session
from tracefix.project import Audit, Project
from tracefix.protocol import Method, ResultPayload, RunSummary, StatusParams, TestResultsParams
from tracefix.reporting.diagnostics import run_diagnostics
from tracefix.running.interpreter import InterpreterError, check_python
from tracefix.running.results import Outcome, RunReport, RunStatus, TestResult, Verdict
from tracefix.selection.select import Selected

COALESCE = 0.05  # seconds: a "save all" arrives as a burst of didSave
AUDIT_IDLE = float(os.environ.get("TRACEFIX_AUDIT_IDLE", "60"))  # seconds; tests shorten it
UNTRUSTED = "workspace not trusted: tracefix runs no tests"


async def file_changed(session: Session, state: ProjectState, rel: str, text: str | None) -> None:
    """A saved or externally changed file: update the index, then maybe run."""
    changes, warnings = await state.call(state.project.file_changed, rel, text)
    for warning in warnings:
        session.ls.warn(warning)
    if rel in CONFIG_FILES:
        await state.refresh_tests()  # what counts as a test may have changed
    elif rel.endswith(".py") and await state.call(state.project.index.is_test_file, rel):
        await state.refresh_tests(rel)
    if not changes:
        return
    pending = Pending({(c.path, c.qualname): c for c in changes}, {rel})
    if state.settings.run_on_save:
        request(session, state, pending)
    elif state.runs.pending is None:
        state.runs.pending = pending
    else:
        state.runs.pending.merge(pending)


def request(session: Session, state: ProjectState, pending: Pending) -> None:
    """Run what `pending` covers soon, together with anything still waiting or running."""
    runs = state.runs
    _cancel_audit(state)  # the user's run comes first
    if runs.pending is None:
        runs.pending = Pending()
    runs.pending.merge(pending)
    if runs.active is not None:
        if runs.covering is not None:
            runs.pending.merge(runs.covering)  # its tests did not all finish: run them again
        runs.active.cancel()
        runs.active = runs.covering = None
    if runs.timer is not None:
        runs.timer.cancel()
    runs.timer = asyncio.get_running_loop().call_later(COALESCE, _start, session, state)


def _start(session: Session, state: ProjectState) -> None:
    runs = state.runs
    runs.timer = None
    pending, runs.pending = runs.pending, None
    if pending is None:
        return
    task = session.spawn(_run(session, state, pending), f"run {state.root}")
    runs.active, runs.covering = task, pending

    def finished(t: asyncio.Task) -> None:
        if runs.active is t:
            runs.active = runs.covering = None

    task.add_done_callback(finished)


# the audit
def _cancel_audit(state: ProjectState) -> None:
    if state.runs.audit is not None:
        state.runs.audit.cancel()
        state.runs.audit = None


def _schedule_audit(session: Session, state: ProjectState) -> None:
    if state.runs.unaudited:
        _cancel_audit(state)
        state.runs.audit = asyncio.get_running_loop().call_later(AUDIT_IDLE, _start_audit, session, state)


def _start_audit(session: Session, state: ProjectState) -> None:
    if state.runs.active is None:  # a run that is under way reschedules it when done
        state.runs.audit = session.spawn(_audit(session, state), f"audit {state.root}")


async def _audit(session: Session, state: ProjectState) -> None:
    project = state.project
    changes = dict(state.runs.unaudited)

    def plan():
        selected = project.select(list(changes.values()))
        return selected, project.store.results(), project.plan([t.nodeid for t in project.index.tests()], nice=True)

    selected, before, plan = await state.call(plan)
    report = await project.execute(plan)
    audit, gone = await state.call(_conclude_audit, project, plan, selected, before, report)
    state.runs.audit = None
    for key in changes:  # changes that arrived meanwhile wait for the next audit
        state.runs.unaudited.pop(key, None)
    known = set(state.found_by_audit) | {n for n, r in state.results.items() if r.failing}
    publishing.drop(session, state, gone)
    await publishing.update(session, state, audit.report.results, audit=True)
    new = [r.nodeid for r in report.failed if r.nodeid not in known]
    level = types.MessageType.Warning if new or audit.missed else types.MessageType.Info
    session.ls.log(_audit_message(audit, new), level)
    publish_status(session)


def _audit_message(audit: Audit, new: list[str]) -> str:
    """What the idle audit found, in words."""
    report = audit.report
    text = f"idle audit: ran every test at low priority: {report.summary()}"
    if report.verdict == Verdict.INCOMPLETE:
        text += f"; the run did not complete: {report.message}"
    if new:
        text += f"; found by the idle audit, failing in no run you started: {', '.join(new)}"
    if audit.missed:
        text += (
            f"; selection skipped {len(audit.missed)} test(s) that passed before and fail now: "
            f"{', '.join(audit.missed)} ({audit.missed_so_far} missed so far)"
        )
    return text


def _conclude_audit(
    project: Project, plan, selected: list[Selected], before: dict, report: RunReport
) -> tuple[Audit, list[str]]:
    gone = project.conclude(plan, report)
    project.record(report)
    return project.audited(selected, before, report), gone


# the run
def _select(project: Project, pending: Pending) -> list[Selected]:
    if pending.run_all:
        return project.select_all()
    selected = project.select(list(pending.changes.values()))
    chosen = {s.nodeid for s in selected}
    return selected + [Selected(n, "asked to rerun") for n in sorted(pending.nodeids) if n not in chosen]


async def _python_problem(state: ProjectState) -> str | None:
    """Why the folder's interpreter cannot run tests, asked once per interpreter."""
    try:
        python = await state.call(state.project.python)
    except InterpreterError as exc:
        return str(exc)
    if python not in state.python_problem:
        state.python_problem[python] = await state.call(check_python, python)
    return state.python_problem[python]


async def _run(session: Session, state: ProjectState, pending: Pending) -> None:
    ls, project, runs = session.ls, state.project, state.runs
    run_id = f"run-{next(session.run_ids)}"
    started = time.monotonic()
    if not session.trusted:
        publish_status(session, "untrusted", UNTRUSTED)
        _notify_done(session, state, run_id, [], RunReport(status=RunStatus.ERROR, message=UNTRUSTED), 0.0)
        return
    selected = await state.call(_select, project, pending)
    runs.unaudited.update(pending.changes)
    for s in selected:
        state.reasons[s.nodeid] = s.reason
    paths = sorted(pending.paths) if not pending.run_all else None
    if not selected:
        ls.log(f"no tests can reach the change in {', '.join(sorted(pending.paths))}")
        await state.call(project.record, RunReport(), paths)  # the change is now the baseline
        _notify_done(session, state, run_id, [], None, 0.0)
        _schedule_audit(session, state)
        return
    problem = await _python_problem(state)
    if problem:
        ls.log(f"cannot run tests: {problem}", types.MessageType.Error)
        ls.tell(f"tracefix: {problem}", types.MessageType.Error)
        publish_status(session, "error", problem)
        _notify_done(session, state, run_id, [], RunReport(status=RunStatus.ERROR, message=problem), 0.0)
        return
    total = len(selected)
    what = "every test" if pending.run_all else f"{total} affected test{'s' if total != 1 else ''}"
    progress = await Progress.start(session, f"Running {what}" if not pending.run_all else f"Running all {total} tests")
    runs.running += total
    publish_status(session)
    done: list[TestResult] = []
    updates: list[asyncio.Task] = []

    def on_result(result: TestResult) -> None:
        done.append(result)
        updates.append(session.spawn(publishing.update(session, state, [result]), "publish"))
        _notify(session, state, run_id, [result])
        failed = sum(r.failing for r in done)
        progress.report(f"{len(done)}/{total} done, {failed} failed", min(99, len(done) * 100 // total))

    try:
        plan = await state.call(project.plan, [s.nodeid for s in selected])
        report = await project.execute(plan, on_result)
        gone = await state.call(project.conclude, plan, report)
    except asyncio.CancelledError:
        progress.end("cancelled: a newer save supersedes this run")
        _notify_done(
            session,
            state,
            run_id,
            [],
            RunReport(status=RunStatus.CANCELLED, message="superseded by a newer save"),
            time.monotonic() - started,
        )
        raise
    finally:
        runs.running -= total
    late = [r for r in report.results if r not in done]  # "not run" and killed tests
    await asyncio.gather(*updates)
    publishing.drop(session, state, gone)
    await publishing.update(session, state, late)
    await state.call(project.record, report, paths)
    summary = report.summary() if not report.message else f"{report.message}; {report.summary()}"
    _verdict(session, state, run_id, report)
    traces.after_run(session, state, report.results)
    _notify_done(session, state, run_id, late, report, time.monotonic() - started)
    progress.end(summary)
    publish_status(session)
    _schedule_audit(session, state)


def _verdict(session: Session, state: ProjectState, run_id: str, report: RunReport) -> None:
    """An incomplete run is never shown as a pass: the status says it did not complete and why
    until a run completes, with a diagnostic where the cause is; a toast when nothing else shows it."""
    cause = report.message if report.verdict == Verdict.INCOMPLETE else ""
    shown = run_diagnostics(report)
    publishing.set_run(session, state, shown)
    if cause:
        session.ls.warn(f"test run {run_id} did not complete: {cause}\n{report.output[-4000:]}")
        if cause != state.incomplete and not shown and not any(r.uncollected for r in report.results):
            session.ls.tell(f"tracefix: the test run did not complete: {cause}", types.MessageType.Warning)
    state.incomplete = cause


def _notify(session: Session, state: ProjectState, run_id: str, results: list[TestResult]) -> None:
    params: TestResultsParams = {
        "runId": run_id,
        "results": [_payload(state, r) for r in results],
        "done": False,
        "summary": None,
    }
    session.ls.notify(Method.TEST_RESULTS, params)


def _notify_done(
    session: Session,
    state: ProjectState,
    run_id: str,
    results: list[TestResult],
    report: RunReport | None,
    duration: float,
) -> None:
    """The end of a run request; report None: nothing needed to run."""
    counts = {
        k: sum(r.outcome == k for r in report.results) if report else 0
        for k in (Outcome.PASSED, Outcome.FAILED, Outcome.ERROR, Outcome.SKIPPED)
    }
    summary: RunSummary = {
        "passed": counts[Outcome.PASSED],
        "failed": counts[Outcome.FAILED],
        "errors": counts[Outcome.ERROR],
        "skipped": counts[Outcome.SKIPPED],
        "duration": round(duration, 3),
        "status": report.status if report else "nothing to run",
        "verdict": report.verdict if report else Verdict.PASSED,
        "message": report.message if report else "no test can reach the change",
    }
    params: TestResultsParams = {
        "runId": run_id,
        "results": [_payload(state, r) for r in results],
        "done": True,
        "summary": summary,
    }
    session.ls.notify(Method.TEST_RESULTS, params)


def _payload(state: ProjectState, r: TestResult) -> ResultPayload:
    data = r.to_dict()
    rel = r.path or r.nodeid.split("::")[0]
    where = r.location
    return {
        "nodeid": r.nodeid,
        "outcome": data["outcome"],
        "duration": r.duration,
        "message": r.message,
        "path": str(state.root / rel),
        "uri": state.uri(rel),
        "line": r.line or None,
        "location": {"uri": state.uri(where.path), "line": where.line} if where else None,
        "reason": state.reasons.get(r.nodeid, ""),
    }


def publish_status(session: Session, state: str | None = None, message: str = "") -> None:
    folders = session.projects.values()
    failed = sum(r.nodeid not in s.found_by_audit for s in folders for r in s.failing())
    running = sum(s.runs.running for s in folders)
    if state is None:
        incomplete = next((s.incomplete for s in folders if s.incomplete), "")
        audited = sorted(n for s in folders for n in s.found_by_audit)
        if not session.trusted:
            state, message = "untrusted", UNTRUSTED
        elif running:
            state = "running"
        elif incomplete:
            state, message = "error", f"the last test run did not complete: {incomplete}"
        else:
            state = "failed" if failed else "idle"
        if audited and state != "untrusted":
            found = f"found by the idle audit, failing in no run you started: {', '.join(audited)}"
            message = f"{message}; {found}" if message else found
    params: StatusParams = {"state": state, "running": running, "failed": failed, "message": message}  # type: ignore[typeddict-item]
    session.ls.notify(Method.STATUS, params)
