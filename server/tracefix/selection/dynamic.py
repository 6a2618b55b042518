"""What each test used on its last run (recorded by the tracefix_deps pytest plugin) as selection
evidence: the code it executed, the fixtures it requested, the data files it read and the
installed distributions it ran.

A test is also chosen when code it ran changed since its last run (a cancelled run, an edit
outside the editor), not only for the changes at hand. A test with no complete record is
unknown: only static evidence speaks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath

from tracefix.index.files import Node
from tracefix.index.graph import ProjectIndex
from tracefix.index.pytestconfig import CONFIG_FILES
from tracefix.parsing.symbols import MODULE
from tracefix.selection.recorded import (
    EXECUTED,
    FIXTURE,
    FileState,
    Record,
    Recorded,
    base_nodeid,
    file_change,
)
from tracefix.selection.select import (
    DEFAULT_EVIDENCE,
    Changed,
    ConftestScope,
    Evidence,
    StaticNames,
    node_name,
)


def _phrase(node: Node, how: str, kind: str) -> str:
    if how == FIXTURE:
        return f"uses fixture {node_name(node)}"
    if how == EXECUTED:
        return f"executed {node_name(node)}"
    if node[1] == MODULE:
        return f"ran code of {PurePosixPath(node[0]).stem}"
    if kind == "variable":
        return f"executed code that reads {node_name(node)}"
    return f"executed code that uses {kind} {node_name(node)}"


EVERY_CASE = "; runs every case: the change can change its parametrization"
NOT_A_BINDING = " (not a plain name binding: every test that ran the module's code)"


class Executed:
    """Tests that ran (or used as a fixture, or depend on the class or module of, or read a
    module-level name of) changed code; each collected item (parametrized case) on its own, unless
    the change is to what decides the cases (the test's own code, its fixtures, what they read):
    then every case of the test function.

    Code run at collection decides which tests exist and what they get (decorators, parametrize
    arguments). What a test module's own body ran selects that module's tests and the tests that
    use the module; what anything else ran at collection selects every test. `per_module` False
    does not trust test modules to keep their import-time effects to themselves."""

    def __init__(self, recorded: Recorded, per_module: bool = True):
        self.recorded = recorded
        self.per_module = per_module

    def select(self, index: ProjectIndex, changes: list[Changed]) -> dict[str, str]:
        recorded = self.recorded
        changed = self._changed(index, changes)
        if not changed:
            return {}
        keys = {vid << 3 | bits for vid in changed for bits in range(8)}
        tests = {t.nodeid for t in index.tests()}

        def first_reason(record: Record) -> str | None:
            if keys.isdisjoint(record.code):
                return None
            return next(
                f"{_phrase(changed[v][0], how, changed[v][1])}{changed[v][2]}"
                for v, how, _ in record.entries()
                if v in changed
            )

        reason = first_reason(recorded.session)
        if reason:
            return dict.fromkeys(tests, f"at collection, {reason}")
        reasons: dict[str, str] = {}
        for path, record in recorded.imports.items():
            reason = first_reason(record) if path in index.files else None
            if reason is None:
                continue
            reason = f"at import of {path}, {reason}"
            own = [t.nodeid for t in index.tests(path)]
            if not own or not self.per_module:
                return dict.fromkeys(tests, reason)
            users = set(own) | set(index.tests_reaching({(path, MODULE)}))
            in_module = {
                vid << 3 | bits
                for node, vids in recorded.by_node.items()
                if node[0] == path
                for vid in vids
                for bits in range(8)
            }
            users |= {base_nodeid(n) for n, r in recorded.items.items() if not in_module.isdisjoint(r.code)}
            for nodeid in users & tests:
                reasons.setdefault(nodeid, reason)
        for nodeid, record in recorded.current(index):
            base = base_nodeid(nodeid)
            if base in reasons:
                continue
            reason = first_reason(record)
            if reason is None:
                continue
            if nodeid != base and any(shapes and v in changed for v, _, shapes in record.entries()):
                reason += EVERY_CASE
                nodeid = base
            reasons[nodeid] = reason
        return reasons

    def _changed(self, index: ProjectIndex, changes: list[Changed]) -> dict[int, tuple[Node, str, str]]:
        """version → (node, kind now, how it changed) for each recorded version that differs from
        the code now or that `changes` name."""
        exact = {(c.path, c.qualname): c for c in changes if c.kind != "file" and c.what != "added"}
        # a name added to or removed from a module or class changes what that namespace holds
        holders = {
            (c.path, c.qualname.rpartition(".")[0] or MODULE): c
            for c in changes
            if c.kind != "file" and c.what != "changed"
        }
        found: dict[int, tuple[Node, str, str]] = {}
        for node, vids in self.recorded.by_node.items():
            entry = index.files.get(node[0])
            now = entry.symbols.get(node[1]) if entry is not None else None
            if node in holders:
                c = holders[node]
                tail = f", where {c.qualname} was {c.what} ({c.path}:{c.line})"
            elif node in exact:
                c = exact[node]
                tail = _tail(node, f"{c.what} at {c.path}:{c.line}", " ({})")
            elif now is None:
                tail = f", which is gone since the test last ran ({node[0]})"
            else:
                digest = entry.digests[node[1]]  # type: ignore[union-attr]
                vids = [v for v in vids if self.recorded.versions[v][1] != digest]  # type: ignore[index]
                tail = _tail(node, f"changed since the test last ran ({node[0]}:{now.start_line})", ", {}")
            found.update((v, (node, now.kind if now else "symbol", tail)) for v in vids)
        return found


def _tail(node: Node, what: str, form: str) -> str:
    """How a recorded node changed; a module's own code (other than its plain name bindings)
    selects every test that ran the module's code: say so."""
    return f", whose module-level code {what}{NOT_A_BINDING}" if node[1] == MODULE else form.format(what)


class DataFiles:
    """Tests that read a changed data file or listed a directory whose entries changed."""

    def __init__(self, recorded: Recorded, root: Path):
        self.recorded = recorded
        self.root = root

    def select(self, index: ProjectIndex, changes: list[Changed]) -> dict[str, str]:
        changed = {c.path: c for c in changes if c.kind == "file"}
        for c in list(changed.values()):
            changed.setdefault(str(PurePosixPath(c.path).parent) + "/", c)  # its directory's listing
        states: dict[str, str | None] = {}

        def reason(rel: str, was: FileState) -> str | None:
            if rel not in states:
                states[rel] = self._reason(rel, was, changed)
            return states[rel]

        for rel, was in self.recorded.session.files.items():
            why = reason(rel, was)
            if why:
                return {t.nodeid: f"{why}, at import or collection" for t in index.tests()}
        found: dict[str, str] = {}
        for nodeid, record in self.recorded.current(index):
            why = next((r for rel, was in record.files.items() if (r := reason(rel, was))), None)
            if why:
                found[nodeid] = why
        return found

    def _reason(self, rel: str, was: FileState, changed: dict[str, Changed]) -> str | None:
        verb = "listed" if rel.endswith("/") else "read"
        name = rel.rstrip("/") or "."
        if rel in changed:
            c = changed[rel]
            return f"{verb} {name}, where {c.path} was {c.what}" if verb == "listed" else f"read {name} ({c.what})"
        if file_change(self.root, rel, was) is None:
            return None
        return f"{verb} {name}, which changed since the test last ran"


class Distributions:
    """Tests that ran code of an installed distribution whose version changed since."""

    def __init__(self, recorded: Recorded, installed: Callable[[], dict[str, str] | None]):
        self.recorded = recorded
        self.installed = installed  # current versions, or None when nothing can have changed

    def select(self, index: ProjectIndex, changes: list[Changed]) -> dict[str, str]:
        now = self.installed()
        if now is None:
            return {}
        found: dict[str, str] = {}
        for nodeid, record in self.recorded.current(index):
            moved = next((d for d, v in record.dists.items() if now.get(d) != v), None)
            if moved:
                found[nodeid] = f"ran {moved} {record.dists[moved]}, now {now.get(moved) or 'not installed'}"
        return found


class ConfigFiles:
    """pytest reads its configuration before any plugin can watch: a change can affect every test."""

    def select(self, index: ProjectIndex, changes: list[Changed]) -> dict[str, str]:
        config = next((c for c in changes if c.kind == "file" and PurePosixPath(c.path).name in CONFIG_FILES), None)
        if config is None:
            return {}
        return {t.nodeid: f"{config.path} configures pytest and {config.what}" for t in index.tests()}


class Unrecorded:
    """Another source's choices, kept only for tests with no record of what they used."""

    def __init__(self, source: Evidence, recorded: Recorded):
        self.source = source
        self.recorded = recorded

    def select(self, index: ProjectIndex, changes: list[Changed]) -> dict[str, str]:
        return {n: r for n, r in self.source.select(index, changes).items() if n not in self.recorded.tests}


def evidence_for(
    mode: str, recorded: Recorded, root: Path, installed: Callable[[], dict[str, str] | None]
) -> tuple[Evidence, ...]:
    """precise: what each recorded test used, plus static evidence for new names and for tests
    with no record; conservative: every source for every test."""
    dynamic = (
        Executed(recorded, per_module=mode != "conservative"),
        DataFiles(recorded, root),
        Distributions(recorded, installed),
        ConfigFiles(),
    )
    if mode == "conservative":
        return dynamic + DEFAULT_EVIDENCE
    return (
        dynamic
        + (StaticNames(("added",)), ConftestScope(outside_tests=True))
        + tuple(Unrecorded(source, recorded) for source in DEFAULT_EVIDENCE)
    )
