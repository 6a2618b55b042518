"""The evidence about failing tests, read from a project's index and store: what each test
executed on its last run, what changed since a failing test last passed (or since git HEAD when
it never passed here), and where the failure surfaced."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tracefix.index.files import Node
from tracefix.localizing.rank import Evidence, Place, Suspect, localize
from tracefix.localizing.versions import FUNCTIONS, Version, hunks
from tracefix.parsing.document import parse
from tracefix.parsing.symbols import outline
from tracefix.reporting.diagnostics import called_symbol
from tracefix.running.results import FAILING, TestResult
from tracefix.selection.recorded import base_nodeid
from tracefix.tracing import Trace

if TYPE_CHECKING:
    from tracefix.project import Project

SINCE_GREEN, SINCE_HEAD = "since the test last passed", "since git HEAD"


class Localizer:
    """Suspects for the failing tests of one state of a project; build one per batch of results
    (it reads the recorded runs and results once)."""

    def __init__(self, project: Project, results: Sequence[TestResult] = (), texts: dict[str, str] | None = None):
        self.project = project
        self.texts = texts or {}
        self.executed = project.recorded().executed  # computed once per recorded state
        outcomes: dict[str, str] = project.store.outcomes()
        outcomes.update({r.nodeid: r.outcome for r in results})
        self.failing = frozenset(base_nodeid(n) for n, o in outcomes.items() if o in FAILING)
        self._head: dict[str, dict[str, tuple]] = {}

    def _function(self, node: Node) -> bool:
        symbol = self.project.index.symbol(*node)
        return symbol is not None and symbol.kind in FUNCTIONS and not self.project.index.is_test_file(node[0])

    def _place(self, node: Node) -> Place | None:
        symbol = self.project.index.symbol(*node)
        if symbol is None or not self._function(node):
            return None
        return Place(node[0], node[1], symbol.start_line, symbol.end_line, symbol.name_line)

    def _text(self, path: str) -> str | None:
        return self.texts.get(path) if path in self.texts else self.project.text(path)

    def changes(self, nodeid: str, nodes: set[Node]) -> dict[Node, Version]:
        """The functions (among nodes, and those the test executed when it last passed) that differ
        from the versions under which it last passed; from git HEAD when it never passed here."""
        store, index = self.project.store, self.project.index
        green = store.green(nodeid) or store.green(base_nodeid(nodeid))
        if not green:
            return self._head_changes(nodes)
        found = {}
        for node, digest in green.items():
            now = index.digests(node[0]).get(node[1]) if node[0] in index.files else None
            symbol = index.symbol(*node)
            source = store.green_source(*node, digest) if now is not None and now != digest else None
            text = self._text(node[0]) if source else None
            if source is None or symbol is None or text is None:
                continue
            old, at = source
            lines = text.splitlines(keepends=True)[symbol.start_line - 1 : symbol.end_line]
            changed = hunks(node[0], old.splitlines(keepends=True), lines, symbol.start_line)
            if changed:
                found[node] = Version(node, SINCE_GREEN, old, changed, at)
        return found

    def _head_changes(self, nodes: set[Node]) -> dict[Node, Version]:
        found = {}
        for path in sorted({p for p, _ in nodes}):
            if path not in self._head:
                self._head[path] = self._file_head(path)
            for qualname, (source, changed) in self._head[path].items():
                if (path, qualname) in nodes:
                    found[(path, qualname)] = Version((path, qualname), SINCE_HEAD, source, changed)
        return found

    def _file_head(self, path: str) -> dict[str, tuple[str, tuple]]:
        """qualname → (its source at HEAD, hunks) for the functions of path that differ from HEAD;
        a function added since has nothing to compare with."""
        old, new = self.project.head_text(path), self._text(path)
        entry = self.project.index.files.get(path)
        if old is None or new is None or old == new or entry is None:
            return {}
        data = old.encode("utf-8", "surrogatepass")
        before = {s.qualname: s for s in outline(parse(data), data) if s.kind in FUNCTIONS}
        old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
        found = {}
        for symbol in entry.facts.symbols:
            was = before.get(symbol.qualname)
            if was is None or symbol.kind not in FUNCTIONS:
                continue
            source = old_lines[was.start_line - 1 : was.end_line]
            changed = hunks(path, source, new_lines[symbol.start_line - 1 : symbol.end_line], symbol.start_line)
            if changed:
                found[symbol.qualname] = ("".join(source), changed)
        return found

    def evidence(self, result: TestResult, trace: Trace | None = None) -> Evidence:
        nodeid = base_nodeid(result.nodeid)
        executed = set(self.executed.get(nodeid, ()))
        traced = {(c.path, c.qualname) for c in trace.calls} if trace else set()
        nodes = {n for n in executed | traced if self._function(n)}
        frame = (result.frame.path, result.frame.line) if result.frame else None
        if frame is not None:
            symbol = self.project.index.symbol_at(*frame)
            if symbol is not None:
                nodes.add((frame[0], symbol.qualname))
        changes = self.changes(result.nodeid, nodes)
        places = {n: p for n in nodes | set(changes) if (p := self._place(n)) is not None}
        called = called_symbol(self.project.index, result, self.project.root)
        return Evidence(
            nodeid=nodeid,
            places=places,
            executed=self.executed,
            failing=self.failing | {nodeid},
            changes=changes,
            trace=trace,
            frame=frame,
            called=(called.path, called.function) if called else None,
            actual=result.actual,
        )

    def suspects(self, result: TestResult, trace: Trace | None = None) -> list[Suspect]:
        return localize(self.evidence(result, trace))
