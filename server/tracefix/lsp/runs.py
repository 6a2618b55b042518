"""Test runs in the background: saves coalesce, a new save cancels a stale run, results stream
to diagnostics, $/progress and the `tracefix/testResults` notification as tests finish.

When no run has started for AUDIT_IDLE seconds after one that selected tests for changes, the
whole suite runs at low priority to audit selection: failures it would have skipped are counted."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lsprotocol import types

from tracefix.index.pytestconfig import CONFIG_FILES
from tracefix.lsp import traces
from tracefix.lsp.progress import Progress
from tracefix.running.interpreter import InterpreterError, check_python
from tracefix.running.results import RunReport, TestResult
from tracefix.selection.select import Changed, Selected

if TYPE_CHECKING:
    from tracefix.lsp.server import TracefixServer
    from tracefix.project import Project

COALESCE = 0.05  # seconds: a "save all" arrives as a burst of didSave
AUDIT_IDLE = float(os.environ.get("TRACEFIX_AUDIT_IDLE", "60"))  # seconds; tests shorten it
_ids = itertools.count(1)


@dataclass
class Pending:
    changes: dict[tuple[str, str], Changed] = field(default_factory=dict)
    paths: set[str] = field(default_factory=set)
    run_all: bool = False
    nodeids: set[str] = field(default_factory=set)  # explicit reruns

    def merge(self, other: Pending) -> None:
        self.changes.update(other.changes)
        self.paths |= other.paths
        self.run_all |= other.run_all
        self.nodeids |= other.nodeids


class Runs:
    def __init__(self, ls: TracefixServer):
        self.ls = ls
        self.pending: dict[Path, Pending] = {}
        self.active: dict[Path, tuple[asyncio.Task, Pending]] = {}
        self.timers: dict[Path, asyncio.TimerHandle] = {}
        self.reasons: dict[tuple[Path, str], str] = {}  # why each test last ran
        self.checked_python: dict[str, str | None] = {}
        self.running = 0
        self.unaudited: dict[Path, dict[tuple[str, str], Changed]] = {}  # changes since the last audit
        self.audits: dict[Path, asyncio.TimerHandle | asyncio.Task] = {}  # waiting or running

    # requests
    def file_changed(self, project: Project, rel: str, text: str | None) -> None:
        """A saved or externally changed file: update the index, then maybe run."""
        changes = project.changes_in(rel, text)
        if rel in CONFIG_FILES:
            for warning in project.reload_pytest_config():
                self.ls.warn(warning)
        if rel.endswith(".py"):
            if text is None:
                project.index.remove(rel)
                project.store.save_files([], [rel])
            else:
                path = project.root / rel
                try:
                    st = path.stat()
                    mtime, size = st.st_mtime_ns, st.st_size
                except OSError:
                    mtime, size = 0, 0
                entry = project.index.update(rel, text.encode("utf-8", "surrogatepass"), mtime, size)
                project.store.save_files([project.index.row(entry)], [])
        if not changes:
            return
        pending = Pending({(c.path, c.qualname): c for c in changes}, {rel})
        if project.settings.run_on_save:
            self.request(project, pending)
        else:
            self.pending.setdefault(project.root, Pending()).merge(pending)

    def request(self, project: Project, pending: Pending) -> None:
        self._cancel_audit(project.root)  # the user's run comes first
        self.pending.setdefault(project.root, Pending()).merge(pending)
        active = self.active.pop(project.root, None)
        if active is not None:
            task, stale = active
            self.pending[project.root].merge(stale)  # its tests did not all finish: run them again
            task.cancel()
        timer = self.timers.pop(project.root, None)
        if timer is not None:
            timer.cancel()
        self.timers[project.root] = asyncio.get_running_loop().call_later(COALESCE, self._start, project)

    def _start(self, project: Project) -> None:
        self.timers.pop(project.root, None)
        pending = self.pending.pop(project.root, None)
        if pending is None:
            return
        task = self.ls.spawn(self._run(project, pending), f"run {project.root}")
        self.active[project.root] = (task, pending)
        task.add_done_callback(lambda t: self._finished(project, t))

    def _finished(self, project: Project, task: asyncio.Task) -> None:
        if self.active.get(project.root, (None,))[0] is task:
            del self.active[project.root]

    def cancel_all(self) -> None:
        for timer in self.timers.values():
            timer.cancel()  # a coalescing save must not start a run after shutdown
        self.timers.clear()
        for task, _ in list(self.active.values()):
            task.cancel()
        self.active.clear()
        for root in list(self.audits):
            self._cancel_audit(root)

    # the audit
    def _cancel_audit(self, root: Path) -> None:
        job = self.audits.pop(root, None)
        if job is not None:
            job.cancel()

    def _schedule_audit(self, project: Project) -> None:
        if self.unaudited.get(project.root):
            self._cancel_audit(project.root)
            loop = asyncio.get_running_loop()
            self.audits[project.root] = loop.call_later(AUDIT_IDLE, self._start_audit, project)

    def _start_audit(self, project: Project) -> None:
        if project.root not in self.active:  # a run that is under way reschedules it when done
            self.audits[project.root] = self.ls.spawn(self._audit(project), f"audit {project.root}")

    async def _audit(self, project: Project) -> None:
        changes = dict(self.unaudited.get(project.root, {}))
        audit = await project.audit(project.select(list(changes.values())), nice=True)
        self.audits.pop(project.root, None)
        for key in changes:  # changes that arrived meanwhile wait for the next audit
            self.unaudited[project.root].pop(key, None)
        self.ls.publisher.update(project, audit.report.results)
        project.record(audit.report)
        missed = f": this audit found {', '.join(audit.missed)}" if audit.missed else ""
        kind = types.MessageType.Warning if audit.missed else types.MessageType.Info
        self.ls.log(f"selection audit: {audit.missed_so_far} missed failures so far{missed}", kind)
        self.publish_status()

    # the run
    def _select(self, project: Project, pending: Pending) -> list[Selected]:
        if pending.run_all:
            return project.select_all()
        selected = project.select(list(pending.changes.values()))
        chosen = {s.nodeid for s in selected}
        selected += [Selected(n, "asked to rerun") for n in sorted(pending.nodeids) if n not in chosen]
        return selected

    def _python_problem(self, project: Project) -> str | None:
        try:
            python = project.python()
        except InterpreterError as exc:
            return str(exc)
        if python not in self.checked_python:
            self.checked_python[python] = check_python(python)
        return self.checked_python[python]

    async def _run(self, project: Project, pending: Pending) -> None:
        ls = self.ls
        if not ls.trusted:
            self.publish_status("untrusted", message="workspace not trusted: tracefix runs no tests")
            return
        selected = self._select(project, pending)
        self.unaudited.setdefault(project.root, {}).update(pending.changes)
        for s in selected:
            self.reasons[(project.root, s.nodeid)] = s.reason
        if not selected:
            ls.log(f"no tests can reach the change in {', '.join(sorted(pending.paths))}")
            project.record(RunReport(), sorted(pending.paths))  # the change is now the baseline
            self._schedule_audit(project)
            return
        problem = self._python_problem(project)
        if problem:
            ls.log(f"cannot run tests: {problem}", types.MessageType.Error)
            ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Error, message=f"tracefix: {problem}"))
            self.publish_status("error", message=problem)
            return
        run_id = f"run-{next(_ids)}"
        total = len(selected)
        title = f"Running {total} affected test{'s' if total != 1 else ''}"
        progress = await Progress.start(ls, title)
        self.running += total
        self.publish_status()
        done: list[TestResult] = []
        started = time.monotonic()

        def on_result(result: TestResult) -> None:
            done.append(result)
            ls.publisher.update(project, [result])
            self._notify(project, run_id, [result], False)
            failed = sum(r.failing for r in done)
            progress.report(f"{len(done)}/{total} done, {failed} failed", min(99, len(done) * 100 // total))

        try:
            report = await project.run([s.nodeid for s in selected], on_result)
        except asyncio.CancelledError:
            progress.end("cancelled: a newer save supersedes this run")
            self._notify(project, run_id, [], True, RunReport(status="cancelled", message="superseded by a newer save"),
                         time.monotonic() - started)
            raise
        finally:
            self.running -= total
        late = [r for r in report.results if r not in done]  # "not run" and killed tests
        ls.publisher.update(project, late)
        project.record(report, sorted(pending.paths) if not pending.run_all else None)
        summary = report.summary() if report.status == "ok" else f"{report.message}; {report.summary()}"
        if report.status != "ok":
            ls.warn(f"test run {run_id}: {summary}\n{report.output[-4000:]}")
        traces.after_run(ls, project, report.results)
        self._notify(project, run_id, late, True, report, time.monotonic() - started)
        progress.end(summary)
        self.publish_status()
        self._schedule_audit(project)

    def _notify(self, project: Project, run_id: str, results: list[TestResult], done: bool,
                report=None, duration: float = 0.0) -> None:
        payload = {"runId": run_id, "results": [self._result_json(project, r) for r in results], "done": done,
                   "summary": None}
        if done and report is not None:
            counts = {k: sum(r.outcome == k for r in report.results) for k in ("passed", "failed", "error", "skipped")}
            payload["summary"] = {"passed": counts["passed"], "failed": counts["failed"], "errors": counts["error"],
                                  "skipped": counts["skipped"], "duration": round(duration, 3),
                                  "status": report.status, "message": report.message}
        self.ls.notify("tracefix/testResults", payload)

    def _result_json(self, project: Project, r: TestResult) -> dict:
        where = r.location
        path = project.root / (r.path or r.nodeid.split("::")[0])
        return {
            "nodeid": r.nodeid, "outcome": r.outcome, "duration": r.duration, "message": r.message,
            "path": str(path), "uri": self.ls.uri(project, path.relative_to(project.root).as_posix()),
            "line": r.line or None,
            "location": {"uri": self.ls.uri(project, where.path), "line": where.line} if where else None,
            "reason": self.reasons.get((project.root, r.nodeid), ""),
        }

    def publish_status(self, state: str | None = None, message: str = "") -> None:
        failed = sum(len(self.ls.publisher.failing(p)) for p in self.ls.projects.values())
        if state is None:
            if not self.ls.trusted:
                state, message = "untrusted", "workspace not trusted: tracefix runs no tests"
            else:
                state = "running" if self.running else ("failed" if failed else "idle")
        self.ls.notify("tracefix/status", {"state": state, "running": self.running, "failed": failed,
                                            "message": message})
