"""Changed symbols → the tests that can be affected, each with the reason it was chosen.

Sources of evidence are pluggable (`Evidence`): the static name graph here; what each test used
on its last run in `tracefix.selection.dynamic`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

from tracefix.index.files import Node
from tracefix.index.graph import ANY_NAME, MEMBERS, ProjectIndex, missing_name
from tracefix.parsing.symbols import MODULE


@dataclass(frozen=True)
class Changed:
    path: str
    qualname: str
    kind: str  # module | class | function | method | file
    what: str  # changed | added | removed
    line: int

    def label(self) -> str:
        name = PurePosixPath(self.path).stem if self.qualname == MODULE else self.qualname
        where = "module-level code" if self.qualname == MODULE else name
        return f"{where} ({self.what} at {self.path}:{self.line})"


@dataclass(frozen=True)
class Selected:
    nodeid: str
    reason: str


class Evidence(Protocol):
    def select(self, index: ProjectIndex, changes: list[Changed]) -> dict[str, str]:
        """nodeid → reason for every test this source says the changes can affect."""


def node_name(node: Node) -> str:
    path, qualname = node
    stem = PurePosixPath(path).stem
    return stem if qualname == MODULE else f"{stem}.{qualname.removesuffix(MEMBERS)}"


class StaticNames:
    """Tests that can reach a changed name through imports and uses."""

    def __init__(self, whats: tuple[str, ...] = ("changed", "added", "removed")):
        self.whats = whats

    def select(self, index: ProjectIndex, changes: list[Changed]) -> dict[str, str]:
        reasons: dict[str, str] = {}
        by_node: dict[Node, Changed] = {}
        for c in changes:
            if c.kind == "file" or c.what not in self.whats:
                continue
            # a removed symbol is gone from the graph; its module stands for it
            node = (c.path, MODULE if c.what == "removed" else c.qualname)
            by_node.setdefault(node, c)
        if not by_node:
            return reasons
        for nodeid, chain in index.tests_reaching(set(by_node)).items():
            change = by_node[chain[-1]]
            unresolved = next((n for n in chain if missing_name(n) is not None), None)
            if unresolved is not None:
                reasons[nodeid] = f"{_unresolved(index, unresolved)}: selected conservatively ({change.label()})"
            elif len(chain) == 1:
                reasons[nodeid] = f"the test itself {change.what} ({change.path}:{change.line})"
            else:
                via = " → ".join(node_name(n) for n in chain[1:-1])
                path = f" via {via}" if via else ""
                reasons[nodeid] = f"reaches {change.label()}{path}"
        return reasons


def _unresolved(index: ProjectIndex, node: Node) -> str:
    path, name = node[0], missing_name(node)
    if not path:
        return f"could not resolve module {name}"
    if name == ANY_NAME:
        return f"could not resolve which names of {path} are used (the module is read with getattr or passed on)"
    if index.symbol(path, "__getattr__") is not None:
        return f"could not resolve {name} in {path} (its module __getattr__ answers)"
    return f"could not resolve {name} in {path}"


class ConftestScope:
    """A changed conftest.py can change any test below its directory.

    With outside_tests, only changes to what runs outside any test count (module-level code and
    pytest_* hooks), and added or removed names (a new fixture overrides one of the same name);
    edits of fixtures and helpers are left to what tests were seen to use."""

    def __init__(self, outside_tests: bool = False):
        self.outside_tests = outside_tests

    def select(self, index: ProjectIndex, changes: list[Changed]) -> dict[str, str]:
        reasons: dict[str, str] = {}
        for c in changes:
            if PurePosixPath(c.path).name != "conftest.py":
                continue
            if (
                self.outside_tests
                and c.what == "changed"
                and c.qualname != MODULE
                and not c.qualname.startswith("pytest_")
            ):
                continue
            scope = str(PurePosixPath(c.path).parent)
            prefix = "" if scope == "." else scope + "/"
            for test in index.tests():
                if test.path.startswith(prefix):
                    reasons.setdefault(test.nodeid, f"in the scope of {c.path}, which changed ({c.label()})")
        return reasons


class NonPythonFiles:
    """Static analysis cannot see which tests read a data or config file: run them all."""

    def select(self, index: ProjectIndex, changes: list[Changed]) -> dict[str, str]:
        files = [c for c in changes if c.kind == "file"]
        if not files:
            return {}
        reason = f"{files[0].path} changed and tests may read it"
        return {t.nodeid: reason for t in index.tests()}


DEFAULT_EVIDENCE: tuple[Evidence, ...] = (StaticNames(), ConftestScope(), NonPythonFiles())


def select(
    index: ProjectIndex,
    changes: list[Changed],
    mode: str = "precise",
    evidence: tuple[Evidence, ...] = DEFAULT_EVIDENCE,
) -> list[Selected]:
    """Tests to run, in file order, each with the first reason found."""
    if mode == "all":
        return [Selected(t.nodeid, "selection is set to run all tests") for t in index.tests()]
    reasons: dict[str, str] = {}
    for source in evidence:
        for nodeid, reason in source.select(index, changes).items():
            reasons.setdefault(nodeid, reason)
    if mode == "conservative" and reasons:
        # every test in a file that has one selected test: guards against dynamic dispatch
        files = {n.split("::")[0] for n in reasons}
        for t in index.tests():
            if t.path in files:
                reasons.setdefault(t.nodeid, "conservative: shares a file with a selected test")
    # a test function chosen whole runs every case: its cases need not be named too
    reasons = {n: r for n, r in reasons.items() if "[" not in n or n.split("[")[0] not in reasons}
    order = {t.nodeid: i for i, t in enumerate(index.tests())}
    return [Selected(n, r) for n, r in sorted(reasons.items(), key=lambda kv: order.get(kv[0].split("[")[0], 1 << 30))]


def explain_skipped(
    index: ProjectIndex, selected: list[Selected], recorded: Mapping[str, Collection[str]] | None = None
) -> list[Selected]:
    """Why each other test was skipped; `recorded`: test functions whose last run's dependencies
    are known → their cases (collected items) that ran."""
    recorded = recorded or {}
    chosen = {s.nodeid for s in selected}
    skipped = []
    for t in index.tests():
        if t.nodeid in chosen:
            continue
        if t.nodeid not in recorded:
            skipped.append(Selected(t.nodeid, "skipped: no path from the change"))
            continue
        cases = [n for n in recorded[t.nodeid] if n not in chosen]
        if len(cases) == len(recorded[t.nodeid]):  # no case chosen: the function as a whole
            cases = [t.nodeid]
        skipped += [Selected(n, "skipped: its last run used none of the changes") for n in cases]
    return skipped
