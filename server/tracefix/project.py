"""One workspace folder: index, store, selection, runs. Shared by `tracefix check` and the server."""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tracefix import settings as settings_mod
from tracefix.index import pytestconfig
from tracefix.index.files import digest_bytes
from tracefix.index.graph import ProjectIndex
from tracefix.index.pytestconfig import CONFIG_FILES
from tracefix.index.store import Store
from tracefix.localizing.versions import green_rows, green_sources
from tracefix.parsing.document import parse
from tracefix.parsing.symbols import Symbol, diff, outline
from tracefix.paths import is_relevant_file, read_bytes, read_text
from tracefix.reporting.diagnostics import Diagnostic, diagnose
from tracefix.running import bytecode
from tracefix.running import warm as warm_mod
from tracefix.running.interpreter import InterpreterError, find_python
from tracefix.running.plugin import tracefix_records
from tracefix.running.process import Limits, Spawn, spawn_process
from tracefix.running.results import (
    FAILING,
    NOT_FAILING,
    Outcome,
    RecordError,
    RunReport,
    RunStatus,
    TestResult,
    obsolete,
)
from tracefix.running.runner import run_tests
from tracefix.selection import bindings, dynamic, environment
from tracefix.selection.recorded import Deps, Recorded, base_nodeid, deps_from_records, read_records
from tracefix.selection.select import Changed, Selected, select
from tracefix.tracing import Trace

log = logging.getLogger(__name__)
CONFIG_KEY = "config_files"  # the store's digests of the pytest configuration files at the last run


def _symbols_json(symbols: list[Symbol]) -> list:
    return [[s.qualname, s.kind, s.digest, s.start_line] for s in symbols]


def _symbols_from_json(rows: list) -> list[Symbol]:
    return [Symbol(q, k, line, line, line, d) for q, k, d, line in rows]


@dataclass
class RunPlan:
    nodeids: list[str]  # in the order to run them: likely failures first
    python: str
    env: dict[str, str]
    deps_file: Path  # where the tracefix_deps plugin writes what each test used
    started: dict[str, str]  # each file's digest when the run was planned
    extra: tuple[str, ...]  # pytest arguments
    warm: bool  # fork the warm worker
    full: bool  # every test: what collection ran is replaced, not added to
    limits: Limits


@dataclass
class Audit:
    report: RunReport  # of the whole suite
    would_run: set[str]  # what selection chose for the same changes
    missed: list[str]  # failing tests selection skipped that passed before
    missed_so_far: int  # over every audit of this project


DEPS_PREFIX = "tracefix-deps-"  # + our pid: the file of a tracefix that was killed can be told apart


def remove_orphaned_deps() -> None:
    """Remove the records files of runs whose tracefix was killed (SIGKILL leaves no time to)."""
    for path in Path(tempfile.gettempdir()).glob(f"{DEPS_PREFIX}*-*.jsonl"):
        pid = path.name[len(DEPS_PREFIX) :].split("-")[0]
        try:
            if not pid.isdigit() or path.lstat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except OSError:
            continue  # alive but not ours to signal, or gone meanwhile


# "auto" parallel runs: starting xdist workers costs about a second per core, so only runs whose
# tests took this long last time, or this many tests, get them
PARALLEL_SECONDS = 5.0
PARALLEL_TESTS = 500
PARALLEL_MAX = 8


class Project:
    def __init__(
        self, root: Path, editor_settings: dict | None = None, warm: bool = False, pool: warm_mod.Pool | None = None
    ):
        """warm: keep a warm pytest worker for runs (the editor's saves; not a one-shot check);
        pool: the warm worker of a caller that outlives this Project (the check daemon's)."""
        self.root = root.resolve()
        self.settings, self.warnings = settings_mod.load(self.root, editor_settings)
        self.store = Store(self.root)
        self.warnings += self.store.warnings
        config, more = pytestconfig.load(self.root)
        self.warnings += more
        self.index = ProjectIndex(self.root, config)
        rows, removed = self.index.load(self.store.load_files())
        self.store.save_files(rows, removed)
        self.index.restore(self.store.load_graph())
        self.snapshot: dict[str, list] = self.store.snapshot()
        self._recorded: Recorded | None = None
        self._versions: tuple[tuple | None, dict[str, str] | None] = (None, None)
        self._owns_pool = pool is None
        self.pool = pool if pool is not None else warm_mod.Pool(self.root) if warm and warm_mod.supported() else None
        remove_orphaned_deps()

    def reload_pytest_config(self) -> list[str]:
        """After a pytest configuration file changed: what counts as a test may have changed."""
        self.index.config, warnings = pytestconfig.load(self.root)
        self.index.invalidate()
        return warnings

    def reconfigure(self, editor_settings: dict | None) -> list[str]:
        self.settings, warnings = settings_mod.load(self.root, editor_settings)
        return warnings

    def rel(self, path: Path | str) -> str | None:
        try:
            return Path(path).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return None

    def text(self, rel: str) -> str | None:
        """A workspace file's text; None if it is not a regular file of readable size (paths.read_text)."""
        return read_text(self.root / rel)

    # changes
    def changes_in(self, rel: str, text: str | None) -> list[Changed]:
        """What differs in `rel` (given text, or None if deleted) from the last-tested snapshot."""
        if not rel.endswith(".py"):
            return [Changed(rel, rel, "file", "changed", 1)]
        old = _symbols_from_json(self.snapshot.get(rel, []))
        if text is None:
            new: list[Symbol] = []
        else:
            data = text.encode("utf-8", "surrogatepass")
            new = outline(parse(data), data)
        return [Changed(rel, c.qualname, c.kind, c.what, c.line) for c in diff(old, new)]

    def file_changed(self, rel: str, text: str | None) -> tuple[list[Changed], list[str]]:
        """A saved or externally changed file (text None: deleted): what it changed since the
        last-tested snapshot, with the index and store brought up to date; and warnings."""
        changes = self.changes_in(rel, text)
        warnings = self.reload_pytest_config() if rel in CONFIG_FILES else []
        if rel.endswith(".py"):
            if text is None:
                self.index.remove(rel)
                self.store.save_files([], [rel])
            else:
                try:
                    st = (self.root / rel).stat()
                    mtime, size = st.st_mtime_ns, st.st_size
                except OSError:
                    mtime, size = 0, 0
                entry = self.index.update(rel, text.encode("utf-8", "surrogatepass"), mtime, size)
                self.store.save_files([self.index.row(entry)], [])
        return changes, warnings

    def changes_since_snapshot(self) -> list[Changed]:
        """Changed symbols of Python files, and changed pytest configuration files and data files
        that tests read, since the last run."""
        changes: list[Changed] = []
        for rel in sorted(set(self.snapshot) | set(self.index.files)):
            entry = self.index.files.get(rel)
            current = entry.facts.symbols if entry else []
            old = _symbols_from_json(self.snapshot.get(rel, []))
            changes += [Changed(rel, c.qualname, c.kind, c.what, c.line) for c in diff(old, current)]
        files = self.recorded().changed_files(self.root)
        was = self.store.get(CONFIG_KEY)
        if was is not None:  # stored since the first run
            now = self._config_digests()
            for rel in set(was) | set(now):
                if was.get(rel) != now.get(rel):
                    files[rel] = "added" if rel not in was else "removed" if rel not in now else "changed"
        return changes + [Changed(rel, rel, "file", what, 1) for rel, what in sorted(files.items())]

    def _config_digests(self) -> dict[str, str]:
        """The pytest configuration files at the root: path → digest."""
        found = {}
        for name in CONFIG_FILES:
            data = read_bytes(self.root / name)
            if data is not None:
                found[name] = digest_bytes(data)
        return found

    def rescan(self) -> list[Changed]:
        """Every file from disk again, for when no file events told the index (the workspace folder
        was deleted and restored); returns the changes since the last-tested snapshot."""
        self.index.files.clear()
        rows, removed = self.index.load(self.store.load_files())
        self.store.save_files(rows, removed)
        if not self.store.has_snapshot():  # the store was deleted with the folder
            self.store.save_snapshot(self.snapshot)
        return self.changes_since_snapshot()

    def changes_since_rev(self, rev: str) -> list[Changed] | None:
        """Changes of the working tree (uncommitted and untracked too) against a git revision.

        None if this is not a git checkout or the revision is unknown."""
        top = _git(self.root, "rev-parse", "--show-toplevel")
        if top is None or _git(self.root, "rev-parse", "--verify", rev + "^{commit}") is None:
            return None
        top_path = Path(top.strip())
        names = (
            _git(self.root, "diff", "--no-ext-diff", "--no-textconv", "--name-only", "--no-renames", rev, "--", ".")
            or ""
        ).split("\n")
        untracked = (_git(self.root, "ls-files", "--others", "--exclude-standard", "--", ".") or "").split("\n")
        changes: list[Changed] = []
        prefix = self.root.relative_to(top_path).as_posix()
        for name in sorted(set(filter(None, names))):
            rel = self.rel(top_path / name)
            if rel is None or not is_relevant_file(rel):
                continue
            if not rel.endswith(".py"):
                changes.append(Changed(rel, rel, "file", "changed", 1))
                continue
            git_path = name if prefix == "." else f"{prefix}/{rel}"
            old_text = _git(self.root, "show", "--no-textconv", f"{rev}:{git_path}")
            old = outline(parse(old_text.encode()), old_text.encode()) if old_text is not None else []
            new_data = read_bytes(self.root / rel)
            new = outline(parse(new_data), new_data) if new_data is not None else []
            changes += [Changed(rel, c.qualname, c.kind, c.what, c.line) for c in diff(old, new)]
        for rel in filter(None, untracked):  # ls-files prints paths relative to the root
            if not is_relevant_file(rel):
                continue
            if rel.endswith(".py"):
                changes += self.changes_in(rel, self.text(rel))
            else:
                changes.append(Changed(rel, rel, "file", "added", 1))
        return changes

    # selection and runs
    def select(self, changes: list[Changed], mode: str | None = None, run_code: bool = True) -> list[Selected]:
        """The tests to run for `changes`. run_code False: never start the workspace's interpreter to
        ask what it has installed (no consent to run workspace code: --no-run, untrusted)."""
        mode = mode or self.settings.selection
        installed = self._installed if run_code else (lambda: None)
        evidence = dynamic.evidence_for(mode, self.recorded(), self.root, installed)
        selected = select(self.index, bindings.with_fallbacks(self.index, changes), mode, evidence)
        graph = self.index.unsaved()
        if graph is not None:  # the next check or server start reuses it
            self.store.save_graph(graph)
        return selected

    def select_all(self) -> list[Selected]:
        return select(self.index, [], "all")

    def recorded(self) -> Recorded:
        """What each test used on its last run: read once, then kept current from each run's
        records; read again when another process (a `tracefix check` beside the server) wrote."""
        if self._recorded is None or self._recorded.generation != self.store.deps_generation():
            self._recorded = Recorded.load(*self.store.deps())
        return self._recorded

    def prepare_diagnostics(self) -> None:
        """Compute ahead what a failure's diagnostic reads from the records: the code each test
        executed, recomputed over every record once a run's records change any (its cost grows
        with the project). The server does it while pytest starts, off the first failure's path."""
        self.recorded().executed  # noqa: B018  # the property computes it and keeps it

    def _installed(self) -> dict[str, str] | None:
        """Distribution versions in the test interpreter; None if nothing changed since the last run."""
        env = self.store.get("environment")
        try:
            python = self.python()
        except InterpreterError:
            return None
        if env is None or not environment.environment_changed(env, python):
            return None
        key = (python, environment.path_times(env))
        if self._versions[0] != key:  # asked once per state of the environment, not per selection
            self._versions = (key, environment.installed_versions(python))
        return self._versions[1]

    def python(self) -> str:
        return find_python(self.root, self.settings.python)

    def digests(self) -> dict[str, str]:
        """Each indexed file's digest: what a run planned now tests."""
        return {rel: e.digest for rel, e in self.index.files.items()}

    def plan(self, nodeids: list[str], nice: bool = False, started: dict[str, str] | None = None) -> RunPlan:
        """Everything a run needs from the index and the store, read before it starts; `nice`: at
        the lowest CPU priority (a background audit); `started`: the digests the tests were
        selected on, when not now."""
        previous = self.store.results()  # read once: it orders the run and sizes it
        ordered = self._order(nodeids, previous)
        # not in .tracefix: a test may delete it
        fd, deps_file = tempfile.mkstemp(prefix=f"{DEPS_PREFIX}{os.getpid()}-", suffix=".jsonl")
        os.close(fd)
        env = dict(os.environ, TRACEFIX_DEPS=deps_file, **({"TRACEFIX_NICE": "19"} if nice else {}))
        digests = self.digests()
        prefix = bytecode.prepare(self.root, digests)
        if prefix is not None:
            env["TRACEFIX_BYTECODE"] = str(prefix)
        workers = self._workers(ordered, previous)
        return RunPlan(
            nodeids=ordered,
            python=self.python(),
            env=env,
            deps_file=Path(deps_file),
            started=digests if started is None else started,
            extra=("-p", "tracefix_deps") + (("-n", str(workers)) if workers else ()),
            # a niced background audit must not occupy the worker the next save wants
            warm=self.pool is not None and self.settings.warm_runner and not nice,
            full={t.nodeid for t in self.index.tests()} <= set(nodeids),
            limits=Limits.per_test(self.settings.timeout),
        )

    async def execute(
        self,
        plan: RunPlan,
        on_result: Callable[[TestResult], None] | None = None,
        note: Callable[[str], None] = log.info,
    ) -> RunReport:
        """Run a planned run; nothing here blocks the event loop. note(why): a warm run went cold."""

        async def attempt(spawn: Spawn, on_result: Callable[[TestResult], None] | None) -> RunReport:
            os.truncate(plan.deps_file, 0)  # what an attempt that failed recorded is not the run's
            return await run_tests(
                self.root,
                plan.python,
                plan.nodeids,
                limits=plan.limits,
                on_result=on_result,
                extra_args=plan.extra,
                env=plan.env,
                spawn=spawn,
            )

        try:
            if plan.warm and self.pool is not None:
                report = await self.pool.run(plan.python, attempt, on_result, note)
            else:
                report = await attempt(spawn_process, on_result)
        except BaseException:
            plan.deps_file.unlink(missing_ok=True)
            raise
        workers = int(plan.extra[plan.extra.index("-n") + 1]) if "-n" in plan.extra else 0
        cores = os.cpu_count() or 1
        if "unrecognized arguments: -n" in report.message:
            report.message += (
                f" (the parallel setting asks for pytest-xdist workers: install pytest-xdist in {plan.python},"
                " or set parallel = 0)"
            )
        elif report.status == RunStatus.TIMEOUT and workers > cores:
            report.message += f" (parallel = {workers} starts more pytest-xdist workers than the {cores} CPU cores)"
        return report

    def conclude(self, plan: RunPlan, report: RunReport) -> list[str]:
        """Store what the run found out about the interpreter and what each test used, and forget
        the stored results it shows are gone (returned: their nodeids)."""
        try:
            if report.xdist is not None:
                self.store.put("xdist", report.xdist)
            ok = report.status == RunStatus.OK
            # a run that finished ran every case of each test function it was asked for
            functions = [n for n in plan.nodeids if "[" not in n] if ok else []
            deps = self._save_deps(read_records(plan.deps_file, plan.nodeids), plan.started, plan.full, functions)
            self._save_green(deps, report, plan.started)
            gone = obsolete(self.store.results(), plan.nodeids, report.results) if ok else []
            self.store.forget_results(gone)
            return gone
        finally:
            plan.deps_file.unlink(missing_ok=True)

    def known_failures(self) -> list[TestResult]:
        """What failed on its last run and still exists: a test stays failing until a run shows it
        passing. Results of tests and modules that are gone are forgotten, and so are results that
        are not well formed (a store can come with a cloned repository)."""
        tests = {t.nodeid for t in self.index.tests()}
        known: list[TestResult] = []
        gone: list[str] = []
        for nodeid, data in self.store.results().items():
            if data.get("outcome") not in FAILING:
                continue
            try:
                result = TestResult.from_dict(data)
            except RecordError:
                gone.append(nodeid)
                continue
            if base_nodeid(nodeid) in tests if "::" in nodeid else (self.root / nodeid).exists():
                known.append(result)
            else:
                gone.append(nodeid)
        self.store.forget_results(gone)
        return known

    async def run(
        self, nodeids: list[str], on_result: Callable[[TestResult], None] | None = None, nice: bool = False
    ) -> RunReport:
        """plan, execute and conclude in one: for callers that may block, like `tracefix check`."""
        plan = self.plan(nodeids, nice)
        report = await self.execute(plan, on_result)
        self.conclude(plan, report)
        return report

    def _save_deps(
        self, records: list[tracefix_records.Recorded], started: dict[str, str], full: bool, functions: list[str]
    ) -> dict[str, Deps | None]:
        """Store what each test used, and keep the copy in memory current. `functions`: test
        functions that ran all their cases; recorded cases of theirs that did not run are gone."""
        env = next((r for r in records if r["kind"] == tracefix_records.ENV), None)
        if env is not None:
            self.store.put("environment", {"executable": env["executable"], "paths": env["paths"]})
        recorded = self.recorded()
        earlier = None if full else recorded.deps(recorded.session)
        deps = deps_from_records(self.index, self.root, records, started, earlier)
        ran = set(functions)
        gone = [n for n in (*recorded.items, *recorded.unknown) if base_nodeid(n) in ran and n not in deps]
        stored = recorded.update(deps, self.store.intern(recorded.missing(deps.values())))
        for nodeid in gone:
            recorded.remove(nodeid)
        generation = self.store.save_deps({n: Recorded.row(r) for n, r in stored.items()}, gone)
        # another process's write in between: read everything again next time
        recorded.generation = generation if generation == recorded.generation + 1 else -1
        return deps

    def _save_green(self, deps: dict[str, Deps | None], report: RunReport, started: dict[str, str]) -> None:
        """For each test that passed: the functions it executed and their sources, the versions a
        later failure is compared with (localizing: what changed since the test last passed)."""
        passed = {r.nodeid for r in report.results if r.outcome == Outcome.PASSED}
        code = {n: [(*node, *used) for node, used in d.code.items()] for n, d in deps.items() if n in passed and d}
        green = green_rows(self.index, code)
        wanted = {row for rows in green.values() for row in rows}
        self.store.save_green(green, green_sources(self.index, self.root, wanted, started))

    async def audit(
        self, selected: list[Selected], on_result: Callable[[TestResult], None] | None = None, nice: bool = False
    ) -> Audit:
        """Run every test; count the failures that `selected`, selection's choice, would have missed."""
        before = self.store.results()
        report = await self.run([t.nodeid for t in self.index.tests()], on_result, nice)
        return self.audited(selected, before, report)

    def audited(self, selected: list[Selected], before: dict[str, dict], report: RunReport) -> Audit:
        """The audit of a run of every test: failures `selected` would have missed of tests that
        passed `before` (a test never run before may have been failing all along), counted over
        every audit of this project."""
        would_run = {s.nodeid for s in selected}
        missed = [
            r.nodeid
            for r in report.failed
            if r.nodeid not in would_run
            and base_nodeid(r.nodeid) not in would_run
            and before.get(r.nodeid, {}).get("outcome") in NOT_FAILING
        ]
        total = self.store.get("audit_missed", 0) + len(missed)
        self.store.put("audit_missed", total)
        return Audit(report, would_run, missed, total)

    def _workers(self, nodeids: list[str], previous: dict[str, dict]) -> int:
        """pytest-xdist workers for this run: with `parallel` = "auto", only for a run long enough
        to repay starting them (by the tests' last durations in `previous`), and only if the
        interpreter has xdist."""
        if isinstance(self.settings.parallel, int):  # else "auto"
            return self.settings.parallel
        cores = os.cpu_count() or 1
        if cores < 2 or not self.store.get("xdist", False):
            return 0
        expected = sum(previous.get(n, {}).get("duration", 0.0) for n in nodeids)
        return min(cores, PARALLEL_MAX) if expected >= PARALLEL_SECONDS or len(nodeids) >= PARALLEL_TESTS else 0

    def _order(self, nodeids: list[str], previous: dict[str, dict]) -> list[str]:
        # likely failures first: tests that failed last time, then the fastest

        def key(nodeid: str):
            last = previous.get(nodeid, {})
            return (last.get("outcome") not in FAILING, last.get("duration", 0.0))

        return sorted(nodeids, key=key)

    def record(self, report: RunReport, paths: list[str] | None = None, started: dict[str, str] | None = None) -> None:
        """Store results; the files the run covered become the new baseline (all if paths is None),
        except those whose content changed since the run was planned (`started`: each file's digest
        then): the run did not test what they hold now."""
        self.store.save_results([r.to_dict() for r in report.results if r.outcome != Outcome.NOT_RUN])
        if report.status != RunStatus.OK:
            return
        covered = self.index.files if paths is None else paths
        update = {}
        for rel in covered:
            entry = self.index.files.get(rel)
            if entry is not None and (started is None or started.get(rel) == entry.digest):
                update[rel] = _symbols_json(entry.facts.symbols)
        self.snapshot.update(update)
        self.store.save_snapshot(update)
        config, now = self.store.get(CONFIG_KEY, {}), self._config_digests()
        for rel in CONFIG_FILES if paths is None else set(paths) & set(CONFIG_FILES):
            config.pop(rel, None)
            if rel in now:
                config[rel] = now[rel]
        self.store.put(CONFIG_KEY, config)

    def baseline_everything(self) -> None:
        """First contact: what is on disk now is the baseline for later saves."""
        if not self.snapshot:
            self.snapshot = {rel: _symbols_json(e.facts.symbols) for rel, e in self.index.files.items()}
            self.store.save_snapshot(self.snapshot)
            self.store.put(CONFIG_KEY, self._config_digests())

    def head_text(self, rel: str) -> str | None:
        """The file as git HEAD has it; None outside git or for a file HEAD does not have."""
        top = _git(self.root, "rev-parse", "--show-toplevel")
        if top is None:
            return None
        name = (self.root / rel).resolve().relative_to(Path(top.strip()).resolve()).as_posix()
        return _git(self.root, "show", "--no-textconv", f"HEAD:{name}")

    def diagnostics(self, results: list[TestResult], traces: dict[str, Trace] | None = None) -> list[Diagnostic]:
        """Diagnostics blaming each failure's top suspect; a test's trace, where there is one,
        points at the line inside it that made the wrong value or raised."""
        from tracefix.localizing.gather import Localizer  # it reads the reporting helpers

        failing = [r for r in results if r.failing]
        localizer = Localizer(self, results) if failing else None
        traces = traces or {}
        suspects = {r.nodeid: localizer.suspects(r, traces.get(r.nodeid)) for r in failing if localizer is not None}
        return diagnose(results, self.index, self.root, suspects)

    def close(self) -> None:
        if self.pool is not None and self._owns_pool:
            self.pool.close()
        self.store.close()


# A repository's own config can name programs for git to run (fsmonitor, external diff and
# textconv drivers); reading changes must never execute them, least of all under --no-run.
GIT_SAFE = ("-c", "core.fsmonitor=false", "-c", "diff.external=", "-c", "core.hooksPath=/dev/null")


def _git(cwd: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *GIT_SAFE, *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None
