"""Publishes, per file, the union of syntax, test and review diagnostics, for open and closed files."""

from __future__ import annotations

from lsprotocol import types

from tracefix.lsp.session import ProjectState, Session
from tracefix.parsing.document import SyntaxProblem
from tracefix.reporting.diagnostics import RUN, Diagnostic
from tracefix.running.results import Outcome, TestResult

SOURCE = "tracefix"
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


async def restore(session: Session, state: ProjectState) -> None:
    """Failures stored by an earlier session show again at start-up: a test stays failing until a
    run shows it passing."""
    await update(session, state, await state.call(state.project.known_failures))


async def update(session: Session, state: ProjectState, results: list[TestResult], audit: bool = False) -> None:
    """Replace these tests' results and diagnostics (a passing test clears its own) and publish.
    audit: results of the idle audit, whose new failures are marked as found by it."""
    results = [r for r in results if r.outcome != Outcome.NOT_RUN]
    found = await state.call(_diagnose, state, results)
    touched: set[str] = set()
    for r in results:
        was = state.results.get(r.nodeid)
        if audit and r.failing and not (was is not None and was.failing):
            state.found_by_audit.add(r.nodeid)
        elif not (audit and r.failing):
            state.found_by_audit.discard(r.nodeid)
        state.results[r.nodeid] = r
        touched |= _replace(state, r.nodeid, found.get(r.nodeid, []))
    for uri in touched:
        publish(session, uri)


def drop(session: Session, state: ProjectState, nodeids: list[str]) -> None:
    """Results of tests that no longer exist (a run showed them gone): clear them."""
    touched: set[str] = set()
    for nodeid in nodeids:
        state.results.pop(nodeid, None)
        state.found_by_audit.discard(nodeid)
        touched |= _replace(state, nodeid, [])
    for uri in touched:
        publish(session, uri)


def set_run(session: Session, state: ProjectState, diagnostics: list[Diagnostic]) -> None:
    """The diagnostics of the last run itself: where the cause is when it did not complete."""
    for uri in _replace(state, RUN, diagnostics):
        publish(session, uri)


def _replace(state: ProjectState, key: str, new: list[Diagnostic]) -> set[str]:
    """Replace the diagnostics under `key` (a nodeid, or RUN); the uris that need publishing."""
    old = state.diagnostics.pop(key, [])
    if new:
        state.diagnostics[key] = new
    return {state.uri(d.path) for d in old + new}


def _diagnose(state: ProjectState, results: list[TestResult]) -> dict[str, list[Diagnostic]]:
    found: dict[str, list[Diagnostic]] = {}
    for d in state.project.diagnostics(results):
        found.setdefault(d.nodeid, []).append(d)
    return found


def set_syntax(session: Session, uri: str, problems: list[SyntaxProblem]) -> None:
    session.syntax[uri] = [
        types.Diagnostic(
            range=types.Range(types.Position(p.line, p.column), types.Position(p.end_line, p.end_column)),
            message=p.message,
            severity=types.DiagnosticSeverity.Error,
            source=SOURCE,
            code="syntax",
        )
        for p in problems
    ]
    publish(session, uri)


def set_reviews(session: Session, state: ProjectState, by_uri: dict[str, list[types.Diagnostic]]) -> None:
    old = state.review_diagnostics
    state.review_diagnostics = by_uri
    for uri in set(old) | set(by_uri):
        publish(session, uri)


def forget(session: Session, state: ProjectState) -> None:
    """A folder that left the workspace: clear what it published."""
    uris = {state.uri(d.path) for ds in state.diagnostics.values() for d in ds} | set(state.review_diagnostics)
    state.diagnostics.clear()
    state.review_diagnostics = {}
    for uri in uris:
        publish(session, uri)


def for_uri(session: Session, uri: str) -> list[types.Diagnostic]:
    found = list(session.syntax.get(uri, []))
    located = session.locate(uri)
    if located is not None:
        state, rel = located
        text = session.text_of(state, rel)
        for diagnostics in state.diagnostics.values():
            found.extend(_to_lsp(session, state, d, text) for d in diagnostics if d.path == rel)
        found.extend(state.review_diagnostics.get(uri, []))
    return found


def publish(session: Session, uri: str) -> None:
    diagnostics = for_uri(session, uri)
    if not diagnostics and uri not in session.published:
        return
    session.published.add(uri)
    opened = session.documents.get(uri)
    session.ls.text_document_publish_diagnostics(
        types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=opened.version if opened else None)
    )


def _to_lsp(session: Session, state: ProjectState, d: Diagnostic, text: str | None) -> types.Diagnostic:
    related = [
        types.DiagnosticRelatedInformation(
            location=types.Location(uri=state.uri(r.path), range=line_range(session.text_of(state, r.path), r.line)),
            message=r.message,
        )
        for r in d.related
    ]
    diagnostic = types.Diagnostic(
        range=line_range(text, d.line),
        message=d.message,
        severity=SEVERITY[d.severity],
        source=SOURCE,
        code=d.nodeid,
        related_information=related or None,
        data={"nodeid": d.nodeid, "kind": d.kind, "root": str(state.root)},
    )
    if d.nodeid in state.found_by_audit:  # no run the user started has shown it yet
        diagnostic.message = f"found by the idle audit: {diagnostic.message}"
        diagnostic.severity = types.DiagnosticSeverity.Warning
    return diagnostic
