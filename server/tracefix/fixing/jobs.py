"""From a failing test or a review comment to a verified edit: builds the refinement request
from the index, the trace and the reviews, and turns the outcome into one line-range edit.

Shared by `tracefix check --fix` and the editor's fix actions."""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tracefix.fixing.engine import FixOutcome, refine
from tracefix.fixing.model import not_configured_message
from tracefix.fixing.prompt import FixRequest
from tracefix.parsing.symbols import MODULE, Symbol
from tracefix.project import Project
from tracefix.reviews import (
    Comment,
    ReviewSet,
    comments_for_symbol,
    describe,
    inline_comments,
    removal_edit,
    touches,
)
from tracefix.running.results import TestResult
from tracefix.settings import LLMSettings
from tracefix.tracing import Trace, capture, lines_in

NEIGHBOURS = 3  # callers and callees shown to the model
T = TypeVar("T")


@dataclass
class Edit:
    """Replace lines start..end (1-based, inclusive; end = start - 1 inserts) with text."""

    path: str
    start: int
    end: int
    text: str


@dataclass
class Fix:
    subject: str  # the test node id, or "review <id>"
    path: str
    before: str  # the file text the fix was computed against
    after: str
    verified: bool
    evidence: str
    diff: str
    outcome: FixOutcome
    comment: Comment | None = None

    def edit(self) -> Edit:
        return line_edit(self.path, self.before, self.after)


class FixError(Exception):
    """No fix can be looked for; the message says why and what to do."""


def line_edit(path: str, before: str, after: str) -> Edit:
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    head = 0
    while head < min(len(old), len(new)) and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < min(len(old), len(new)) - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    return Edit(path, head + 1, len(old) - tail, "".join(new[head : len(new) - tail]))


def _source(text: str, symbol: Symbol) -> str:
    lines = text.splitlines(keepends=True)
    return "".join(lines[symbol.start_line - 1 : symbol.end_line])


def _neighbours(project: Project, path: str, qualname: str, texts: dict[str, str]) -> tuple[list, list]:
    index = project.index
    node = (path, qualname)

    def sources(nodes) -> list[tuple[str, str]]:
        found = []
        for p, q in sorted(nodes):
            symbol = index.symbol(p, q)
            if q == MODULE or symbol is None or symbol.kind == "class" or index.is_test_file(p) or (p, q) == node:
                continue
            text = texts.get(p) or project.text(p)
            if text is not None:
                found.append((q, _source(text, symbol)))
            if len(found) == NEIGHBOURS:
                break
        return found

    return sources(index.reverse().get(node, ())), sources(index.graph().get(node, ()))


def _docstring(source: str) -> str | None:
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return None
    fn = tree.body[0] if tree.body else None
    return ast.get_docstring(fn) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) else None


def function_under_test(project: Project, result: TestResult) -> tuple[str, Symbol] | None:
    """Where the test failed in the code under test: the deepest frame, else the called function."""
    for d in project.diagnostics([result]):
        if d.kind == "frame":
            symbol = project.index.symbol_at(d.path, d.line)
            if symbol is not None and symbol.kind in ("function", "method"):
                return d.path, symbol
    # the assert sits in a helper (`check(fn)`): take what the test itself hands to it
    test = project.index.test_for(result.nodeid)
    for path, qualname in sorted(project.index.graph().get(test.node, ())) if test else ():
        symbol = project.index.symbol(path, qualname)
        if symbol is not None and symbol.kind in ("function", "method") and not project.index.is_test_file(path):
            return path, symbol
    return None


def build_request(
    project: Project,
    path: str,
    symbol: Symbol,
    *,
    nodeid: str,
    texts: dict[str, str],
    result: TestResult | None = None,
    trace_text: str = "",
    instruction: str | None = None,
    comments: list[Comment] = (),
) -> FixRequest:
    text = texts.get(path) or project.text(path) or ""
    source = _source(text, symbol)
    signature = next(
        (line.strip() for line in source.splitlines() if line.lstrip().startswith(("def ", "async def "))), ""
    )
    test = project.index.test_for(nodeid)
    callers, callees = _neighbours(project, path, symbol.qualname, texts)
    affected = sorted(project.index.tests_reaching({(path, symbol.qualname)}))
    return FixRequest(
        root=project.root,
        python=project.python(),
        path=path,
        qualname=symbol.qualname,
        function_source=source,
        function_start_line=symbol.start_line,
        function_end_line=symbol.end_line,
        signature=signature,
        test_nodeid=nodeid,
        test_source=_test_source(project, test, texts) if test else "",
        failure_message=result.message if result else "",
        docstring=_docstring(source),
        expected=result.expected if result else None,
        actual=result.actual if result else None,
        trace_text=trace_text,
        callers=callers,
        callees=callees,
        review_comments=[describe(c) for c in comments],
        affected_tests=affected,
        overlay=dict(texts),
        instruction=instruction,
        test_timeout=project.settings.timeout,
        sandbox=project.settings.sandbox,
    )


def _test_source(project: Project, test, texts: dict[str, str]) -> str:
    """The test and the helpers of its own file that it calls: the asserts often live there."""
    nodes = [test.node] + sorted(
        n for n in project.index.graph().get(test.node, ()) if n[0] == test.node[0] and n[1] != MODULE
    )
    parts = []
    for path, qualname in nodes[: 1 + NEIGHBOURS]:
        symbol = project.index.symbol(path, qualname)
        text = texts.get(path) or project.text(path)
        if symbol is not None and symbol.kind in ("function", "method") and text:
            parts.append(_source(text, symbol))
    return "\n\n".join(parts)


def _settings_or_raise(project: Project) -> LLMSettings:
    settings = project.settings.llm
    if not settings.model:
        raise FixError(not_configured_message())
    return settings


def prompt_trace(project: Project, trace: Trace) -> str:
    """The trace as the prompt shows it, each block beside its code; "" when nothing was traced
    (a partial trace of a hang still counts)."""
    return trace.render(source=lines_in(project.root)) if trace.calls else ""


async def inline(fn: Callable[..., T], *args: Any) -> T:
    """`call` for callers that may block (the CLI): fn(*args), here and now."""
    return fn(*args)


Call = Callable[..., Awaitable[Any]]  # how a job runs blocking core work: the server passes its worker thread


async def fix_test(
    project: Project,
    result: TestResult,
    texts: dict[str, str],
    report: Callable[[str], None] | None = None,
    call: Call = inline,
) -> Fix:
    """Trace the failing test, ask for candidates, verify them; never touches the user's files."""
    settings = _settings_or_raise(project)
    found = await call(function_under_test, project, result)
    if found is None:
        raise FixError(f"cannot tell which function {result.nodeid} exercises; no fix attempted")
    path, symbol = found
    say = report or (lambda message: None)
    say(f"tracing {result.nodeid}")
    python = await call(project.python)
    trace = await capture(project.root, python, result.nodeid, timeout=project.settings.timeout)

    def request() -> FixRequest:
        reviews = ReviewSet.from_settings(project.root, project.settings.review).collect(texts)
        return build_request(
            project,
            path,
            symbol,
            nodeid=result.nodeid,
            texts=texts,
            result=result,
            trace_text=prompt_trace(project, trace),
            comments=comments_for_symbol(reviews, path, symbol.qualname),
        )

    asked = await call(request)
    outcome = await refine(asked, settings, report=say)
    return _fix(result.nodeid, asked, outcome)


async def address_review(
    project: Project,
    comment: Comment,
    texts: dict[str, str],
    report: Callable[[str], None] | None = None,
    call: Call = inline,
) -> Fix:
    """Make the change a review comment asks for, guarded by the tests of its function."""
    settings = _settings_or_raise(project)

    def request() -> FixRequest:
        symbol = project.index.symbol(comment.path, comment.symbol) if comment.symbol else None
        if symbol is None or symbol.kind not in ("function", "method"):
            raise FixError(f"review {comment.id} is not inside a function; tracefix edits one function at a time")
        tests = sorted(project.index.tests_reaching({(comment.path, symbol.qualname)}))
        if not tests:
            raise FixError(f"no test reaches {symbol.qualname}: an edit for this review could not be verified")
        return build_request(
            project,
            comment.path,
            symbol,
            nodeid=tests[0],
            texts=texts,
            instruction=describe(comment),
            comments=[comment],
        )

    asked = await call(request)
    outcome = await refine(asked, settings, report=report)
    fix = _fix(f"review {comment.id}", asked, outcome, comment)
    if fix.verified and not touches(comment, [(e.start, max(e.end, e.start)) for e in [fix.edit()]]):
        fix.verified = False
        fix.evidence = f"not verified: the edit does not touch the lines the review is about ({fix.evidence})"
    return fix


def _fix(subject: str, request: FixRequest, outcome: FixOutcome, comment: Comment | None = None) -> Fix:
    if outcome.error:
        raise FixError(outcome.error)
    candidate = outcome.best or outcome.unverified
    if candidate is None:
        tried = "; ".join(a.reason for a in outcome.attempts[-3:]) or "no usable reply"
        raise FixError(f"no candidate fix after {outcome.model_calls} model calls: {tried}")
    before = request.file_text()
    after = candidate.file_text
    if comment is not None and comment.source == "inline":
        after = _without_comment(request.path, after, comment)
    return Fix(
        subject,
        request.path,
        before,
        after,
        outcome.best is not None,
        outcome.evidence,
        candidate.diff,
        outcome,
        comment,
    )


def _without_comment(path: str, text: str, comment: Comment) -> str:
    """The same edit removes the inline comment it addresses."""
    for current in inline_comments(path, text):
        if current.body == comment.body:
            removal = removal_edit(text, current)
            if removal is not None:
                lines = text.splitlines(keepends=True)
                lines[removal.start_line - 1 : removal.end_line] = [removal.text] if removal.text else []
                return "".join(lines)
    return text
