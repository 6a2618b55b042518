"""Publishes the union of syntax, test and review diagnostics per file, for open and closed files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from tracefix.parsing.document import SyntaxProblem
from tracefix.reporting.diagnostics import SOURCE, Diagnostic
from tracefix.running.results import TestResult

if TYPE_CHECKING:
    from tracefix.lsp.server import TracefixServer
    from tracefix.project import Project

SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "information": types.DiagnosticSeverity.Information,
    "hint": types.DiagnosticSeverity.Hint,
}


def line_range(text: str | None, line: int) -> types.Range:
    """A 1-based line → the range of its non-blank text (whole line if unknown)."""
    zero = max(line - 1, 0)
    lines = text.splitlines() if text else []
    if zero < len(lines):
        content = lines[zero]
        start = len(content) - len(content.lstrip())
        end = len(content.rstrip())
        if end > start:
            return types.Range(types.Position(zero, _utf16(content, start)), types.Position(zero, _utf16(content, end)))
    return types.Range(types.Position(zero, 0), types.Position(zero + 1, 0))


def _utf16(line: str, column: int) -> int:
    return len(line[:column].encode("utf-16-le")) // 2


class Publisher:
    def __init__(self, ls: TracefixServer):
        self.ls = ls
        self.tests: dict[tuple, list[Diagnostic]] = {}  # (project root, nodeid) → diagnostics
        self.results: dict[tuple, TestResult] = {}  # (project root, nodeid) → latest result
        self.syntax: dict[str, list[types.Diagnostic]] = {}  # uri → syntax diagnostics
        self.extra: dict[str, dict[str, list[types.Diagnostic]]] = {}  # kind → uri → diagnostics
        self.published: set[str] = set()

    def restore(self, project: Project) -> None:
        """Failures stored by an earlier session show again at start-up."""
        results = [TestResult.from_dict(d) for d in project.store.results().values()]
        self.update(project, [r for r in results if r.failing])

    def update(self, project: Project, results: list[TestResult]) -> None:
        """Replace the diagnostics of these tests (a passing test clears its own) and publish."""
        touched: set[str] = set()
        for r in results:
            if r.outcome == "not run":
                continue
            key = (project.root, r.nodeid)
            self.results[key] = r
            old = self.tests.pop(key, [])
            new = project.diagnostics([r])
            if new:
                self.tests[key] = new
            touched.update(self.ls.uri(project, d.path) for d in old + new)
        for uri in touched:
            self.publish(uri)

    def set_syntax(self, uri: str, problems: list[SyntaxProblem]) -> None:
        self.syntax[uri] = [
            types.Diagnostic(
                range=types.Range(types.Position(p.line, p.column), types.Position(p.end_line, p.end_column)),
                message=p.message, severity=types.DiagnosticSeverity.Error, source=SOURCE, code="syntax",
            )
            for p in problems
        ]
        self.publish(uri)

    def set_extra(self, kind: str, by_uri: dict[str, list[types.Diagnostic]]) -> None:
        """Diagnostics owned by another feature (reviews), replaced as a whole."""
        old = self.extra.get(kind, {})
        self.extra[kind] = by_uri
        for uri in set(old) | set(by_uri):
            self.publish(uri)

    def forget(self, project: Project) -> None:
        for key in [k for k in self.tests if k[0] == project.root]:
            for d in self.tests.pop(key):
                self.publish(self.ls.uri(project, d.path))

    def failing(self, project: Project) -> list[TestResult]:
        return [r for (root, _), r in self.results.items() if root == project.root and r.failing]

    def for_uri(self, uri: str) -> list[types.Diagnostic]:
        found = list(self.syntax.get(uri, []))
        located = self.ls.locate(uri)
        if located is not None:
            project, rel = located
            text = self.ls.text_of(project, rel)
            for (root, _), diagnostics in self.tests.items():
                if root != project.root:
                    continue
                found.extend(self._to_lsp(project, d, text) for d in diagnostics if d.path == rel)
        for by_uri in self.extra.values():
            found.extend(by_uri.get(uri, []))
        return found

    def publish(self, uri: str) -> None:
        diagnostics = self.for_uri(uri)
        if not diagnostics and uri not in self.published:
            return
        self.published.add(uri)
        version = self.ls.versions.get(uri)
        self.ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version)
        )

    def _to_lsp(self, project: Project, d: Diagnostic, text: str | None) -> types.Diagnostic:
        related = []
        for r in d.related:
            related.append(types.DiagnosticRelatedInformation(
                location=types.Location(uri=self.ls.uri(project, r.path),
                                        range=line_range(self.ls.text_of(project, r.path), r.line)),
                message=r.message,
            ))
        return types.Diagnostic(
            range=line_range(text, d.line), message=d.message, severity=SEVERITY[d.severity],
            source=SOURCE, code=d.nodeid, related_information=related or None,
            data={"nodeid": d.nodeid, "kind": d.kind, "root": str(project.root)},
        )
