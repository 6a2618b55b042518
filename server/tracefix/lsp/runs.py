"""Test runs in the background: saves coalesce, a newer save supersedes the run in flight, results
stream to diagnostics, $/progress and the `tracefix/testResults` notification as tests finish, and
every run request ends in one `done: true` notification, even when nothing needed to run.

A run that did not complete (pytest could not start, crashed, timed out, could not collect a
module) is never shown as a pass: the status is `error` with the cause until a run completes, and
a diagnostic sits where the cause is when it is one place.

When no run has started for AUDIT_IDLE seconds after one that selected tests for changes, the
whole suite runs at low priority to audit selection: failures it would have skipped are counted.
Failures it finds that no run the user started has shown are marked "found by the idle audit" and
do not count as failed until such a run confirms them.

A folder's queue (session.Runs) is in one of these states:

  idle       nothing in flight (the audit's timer may wait)
  waiting    `pending` collects what the next run covers; `timer` starts it COALESCE later
  running    `active` selects, plans, streams results, concludes and records; `covering` is what
             it covers (with the tests it selected, once it has), `started` the content it tests:
             each file's digest when its tests were selected
  tracing    `tracing` captures traces of the last run's failures
  auditing   `audit` runs every test at low priority; `started` as for a run

and moves on these events:

  a save         its changes are taken against the tested snapshot. It requests a run if it
                 changed a symbol, or if it changed a file that the run or audit in flight was
                 planned on, even back to the tested snapshot (an undo while results stream).
                 A request supersedes whatever is in flight: a run is cancelled and what it
                 covered goes back into `pending`; a trace capture or an audit is dropped.
                 Then waiting.
  the timer      running; with nothing selected, the change is the new baseline: idle.
  a result       its diagnostics replace the test's earlier ones.
  the run ends   its results are recorded; the snapshot advances for the files whose digest is
                 still the one in `started`, never to content no run tested. Then tracing if
                 tests failed, else idle; the audit's timer is set again.
  cancelled      the run ends with a "cancelled" notification and records nothing.
  the idle timer the audit starts if nothing runs or waits, and ends like a run.

Invariant: the latest saved content is the content that ends up tested. A run's results count
only for the content it was planned on, and any save that changes that content while the run is
in flight restarts it with everything it covered; so once the queue is idle, every test's
diagnostics come from a run of the files as last saved.
"""

from __future__ import annotations

import asyncio
import os
import time

from lsprotocol import types

from tracefix.index.pytestconfig import CONFIG_FILES
from tracefix.lsp import publishing, traces
from tracefix.lsp.progress import Progress
from tracefix.lsp.session import Pending, ProjectState, Session
from tracefix.project import Audit, Project, RunPlan
from tracefix.protocol import Method, ResultPayload, RunSummary, StatusParams, TestResultsParams
from tracefix.reporting.diagnostics import run_diagnostics
from tracefix.running.interpreter import InterpreterError, check_python
from tracefix.running.results import Outcome, RunReport, RunStatus, TestResult, Verdict
from tracefix.selection.recorded import base_nodeid
from tracefix.selection.select import Changed, Selected

COALESCE = 0.05  # seconds: a "save all" arrives as a burst of didSave
AUDIT_IDLE = float(os.environ.get("TRACEFIX_AUDIT_IDLE", "60"))  # seconds; tests shorten it
UNTRUSTED = "workspace not trusted: tracefix runs no tests"


async def file_changed(session: Session, state: ProjectState, rel: str, text: str | None) -> None:
    """A saved or externally changed file: update the index, then maybe run."""
    changes, warnings, digest, is_test = await state.call(_take, state.project, rel, text)
    runs = state.runs
    # right after the index took it: a run in flight has not recorded (and cleared `started`) since
    stale = runs.started is not None and runs.started.get(rel) != digest
    for warning in warnings:
        session.ls.warn(warning)
    if rel in CONFIG_FILES:
        await state.refresh_tests()  # what counts as a test may have changed
    elif is_test:
        await state.refresh_tests(rel)
    if not changes and not stale:
        return
    pending = Pending({(c.path, c.qualname): c for c in changes}, {rel})
    if state.settings.run_on_save or stale:
        request(session, state, pending)
    elif runs.pending is None:
        runs.pending = pending
    else:
        runs.pending.merge(pending)


def _take(project: Project, rel: str, text: str | None) -> tuple[list[Changed], list[str], str | None, bool]:
    """On the folder's thread: what Project.file_changed gives, the file's digest now, and
    whether it holds tests."""
    changes, warnings = project.file_changed(rel, text)
    entry = project.index.files.get(rel)
    return changes, warnings, entry.digest if entry else None, rel.endswith(".py") and project.index.is_test_file(rel)


def request(session: Session, state: ProjectState, pending: Pending) -> None:
    """Run what `pending` covers soon, together with anything still waiting; what is in flight is
    superseded: a run is cancelled and runs again, trace capture and the audit stop."""
    runs = state.runs
    _cancel_audit(state)  # the user's run comes first
    if runs.tracing is not None:
        runs.tracing.cancel()  # traces of content that is gone
        runs.tracing = None
    if runs.pending is None:
        runs.pending = Pending()
    runs.pending.merge(pending)
    if runs.active is not None:
        if runs.covering is not None:
            runs.pending.merge(runs.covering)  # it ran stale content: all of it runs again
        runs.active.cancel()
        runs.active = runs.covering = None
    runs.started = None
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
            runs.active = runs.covering = runs.started = None

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
    runs = state.runs
    runs.audit = None
    if runs.active is None and runs.timer is None:  # a run under way or about to start reschedules it
        runs.audit = session.spawn(_audit(session, state), f"audit {state.root}")


async def _audit(session: Session, state: ProjectState) -> None:
    project, runs = state.project, state.runs
    changes = dict(runs.unaudited)

    def prepare() -> tuple[list[Selected], dict, RunPlan]:
        selected = project.select(list(changes.values()))
        return selected, project.store.results(), project.plan([t.nodeid for t in project.index.tests()], nice=True)

    selected, before, plan = await state.call(prepare)
    runs.started = plan.started
    report = await project.execute(plan)
    audit, gone = await state.call(_conclude_audit, project, plan, selected, before, report)
    runs.audit = runs.started = None
    for key in changes:  # changes that arrived meanwhile wait for the next audit
        runs.unaudited.pop(key, None)
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
    project: Project, plan: RunPlan, selected: list[Selected], before: dict, report: RunReport
) -> tuple[Audit, list[str]]:
    gone = project.conclude(plan, report)
    project.record(report, None, plan.started)
    return project.audited(selected, before, report), gone


# the run
def _select(project: Project, pending: Pending) -> tuple[list[Selected], dict[str, str]]:
    """The tests to run for `pending`, and the content they were selected on (each file's digest)."""
    if pending.run_all:
        return project.select_all(), project.digests()
    selected = project.select(list(pending.changes.values()))
    chosen = {s.nodeid for s in selected}
    for nodeids, reason in ((pending.nodeids, "asked to rerun"), (pending.superseded, "its last run was superseded")):
        for nodeid in sorted(nodeids - chosen):
            if project.index.test_for(base_nodeid(nodeid)) is not None:  # not deleted since
                selected.append(Selected(nodeid, reason))
                chosen.add(nodeid)
    return selected, project.digests()


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
    began = time.monotonic()
    if not session.trusted:
        publish_status(session, "untrusted", UNTRUSTED)
        _notify_done(session, state, run_id, [], RunReport(status=RunStatus.ERROR, message=UNTRUSTED), 0.0)
        return
    selected, started = await state.call(_select, project, pending)
    runs.started = started
    pending.superseded = {s.nodeid for s in selected}  # `pending` is what this run covers: see request()
    runs.unaudited.update(pending.changes)
    for s in selected:
        state.reasons[s.nodeid] = s.reason
    paths = sorted(pending.paths) if not pending.run_all else None
    if not selected:
        ls.log(f"no tests can reach the change in {', '.join(sorted(pending.paths))}")
        await state.call(project.record, RunReport(), paths, started)  # the change is now the baseline
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
    latest: dict[str, TestResult] = {}  # a warm run that failed runs again cold: its tests report twice
    updates: list[asyncio.Task] = []

    def on_result(result: TestResult) -> None:
        done.append(result)
        latest[result.nodeid] = result
        updates.append(session.spawn(publishing.update(session, state, [result]), "publish"))
        _notify(session, state, run_id, [result])
        failed = sum(r.failing for r in latest.values())
        progress.report(f"{len(latest)}/{total} done, {failed} failed", min(99, len(latest) * 100 // total))

    try:
        plan = await state.call(project.plan, [s.nodeid for s in selected], False, started)
        # queued on the folder's thread, which is idle while pytest starts and collects
        session.spawn(state.call(project.prepare_diagnostics), "prepare diagnostics")
        report = await project.execute(plan, on_result, ls.log)
        gone = await state.call(project.conclude, plan, report)
        late = [r for r in report.results if r not in done]  # "not run" and killed tests
        await asyncio.gather(*updates)
        publishing.drop(session, state, gone)
        # the failures again too: blamed anew now that the run's records say what each test executed
        await publishing.update(session, state, late + [r for r in done if r.failing])
        await state.call(project.record, report, paths, started)
    except asyncio.CancelledError:
        progress.end("cancelled: a newer save supersedes this run")
        cancelled = RunReport(status=RunStatus.CANCELLED, message="superseded by a newer save")
        _notify_done(session, state, run_id, [], cancelled, time.monotonic() - began)
        raise
    finally:
        runs.running -= total
    summary = report.summary() if not report.message else f"{report.message}; {report.summary()}"
    _verdict(session, state, run_id, report)
    _notify_done(session, state, run_id, late, report, time.monotonic() - began)
    progress.end(summary)
    publish_status(session)
    runs.tracing = traces.after_run(session, state, report.results)  # in the background, after the verdict
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


def _notify(
    session: Session, state: ProjectState, run_id: str, results: list[TestResult], summary: RunSummary | None = None
) -> None:
    """Results as they come; with the summary, the last notification of the run."""
    params: TestResultsParams = {
        "runId": run_id,
        "results": [_payload(state, r) for r in results],
        "done": summary is not None,
        "summary": summary,
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
    _notify(session, state, run_id, results, summary)


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
