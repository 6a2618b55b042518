"""From a failing test or a review comment to a verified edit: localizes the fault, builds the
refinement request from the index, the trace, the suspects and the reviews, and turns the
outcome into line-range edits of one or more files.

Shared by `tracefix check --fix` and the editor's fix actions."""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tracefix.fixing.differential import calls_of
from tracefix.fixing.engine import FixOutcome, refine
from tracefix.fixing.model import not_configured_message
from tracefix.fixing.prompt import Baseline, FixRequest, Revert, Subject
from tracefix.localizing.gather import SINCE_GREEN, Localizer
from tracefix.localizing.rank import Suspect
from tracefix.localizing.versions import revert
from tracefix.parsing.symbols import MODULE, Symbol
from tracefix.project import Project
from tracefix.reporting.diagnostics import called_symbol
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
from tracefix.tracing import Trace, capture, capture_passing, lines_in

NEIGHBOURS = 3  # callers and callees shown to the model
SUSPECTS = 3  # functions a candidate may rewrite
PASSING_TRACES = 5  # passing tests traced for the inputs a candidate is checked on
T = TypeVar("T")


@dataclass
class Edit:
    """Replace lines start..end (1-based, inclusive; end = start - 1 inserts) with text."""

    path: str
    start: int
    end: int
    text: str


@dataclass
class FileChange:
    path: str
    before: str  # the file text the fix was computed against
    after: str

    def edit(self) -> Edit:
        return line_edit(self.path, self.before, self.after)


@dataclass
class Fix:
    subject: str  # the test node id, or "review <id>"
    files: list[FileChange]
    verified: bool
    evidence: str
    diff: str
    outcome: FixOutcome
    comment: Comment | None = None
    title: str = ""  # what a model-free fix is: "Revert the change at shop/pricing.py:8 that broke 2 tests"
    tests: list[str] = field(default_factory=list)  # the failing tests it is for
    suspects: list[Suspect] = field(default_factory=list)  # ranked, the first being the fix's target

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]

    def report(self) -> dict:
        """The fix job as `tracefix check --format json` reports it."""
        outcome = self.outcome
        return {
            "subject": self.subject,
            "tests": self.tests,
            "paths": self.paths,
            "title": self.title,
            "verified": self.verified,
            "evidence": self.evidence,
            "suspects": [suspect_json(s) for s in self.suspects],
            **usage(outcome),
        }


def suspect_json(s: Suspect) -> dict:
    return {"path": s.path, "function": s.qualname, "line": s.line, "score": s.score, "evidence": s.describe()}


def usage(outcome: FixOutcome | None) -> dict:
    """What a fix job spent."""
    if outcome is None:
        return {"model_calls": 0, "tokens": 0, "seconds": 0.0, "attempts": []}
    return {
        "model_calls": outcome.model_calls,
        "tokens": outcome.tokens_in + outcome.tokens_out,
        "seconds": outcome.wall_time,
        "attempts": [f"{a.view} r{a.round}c{a.index}: {a.verdict}: {a.reason}" for a in outcome.attempts],
    }


class FixError(Exception):
    """No fix can be looked for, or none was found; the message says why and what to do."""

    def __init__(self, message: str, outcome: FixOutcome | None = None, suspects: Sequence[Suspect] = ()):
        super().__init__(message)
        self.outcome = outcome  # what was spent looking
        self.suspects = list(suspects)

    def report(self, subject: str) -> dict:
        """The failed fix job as `tracefix check --format json` reports it."""
        return {
            "subject": subject,
            "outcome": "no fix",
            "verified": False,
            "error": str(self),
            "suspects": [suspect_json(s) for s in self.suspects],
            **usage(self.outcome),
        }


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


def function_under_test(
    project: Project, result: TestResult, trace: Trace | None = None, texts: dict[str, str] | None = None
) -> tuple[str, Symbol] | None:
    """The function most likely at fault for the failing test (tracefix.localizing's top suspect);
    without any run-time evidence, the function the failing assert called, or the only function
    the test refers to (the assert may sit in a helper: `check(fn)`)."""
    suspects = Localizer(project, [result], texts).suspects(result, trace)
    if suspects:
        symbol = project.index.symbol(suspects[0].path, suspects[0].qualname)
        return (suspects[0].path, symbol) if symbol is not None else None
    called = called_symbol(project.index, result, project.root)
    test = project.index.test_for(result.nodeid)
    nodes = (
        [(called.path, called.function)] if called else sorted(project.index.graph().get(test.node, ())) if test else []
    )
    found = [
        (path, symbol)
        for path, qualname in nodes
        if (symbol := project.index.symbol(path, qualname)) is not None
        and symbol.kind in ("function", "method")
        and not project.index.is_test_file(path)
    ]
    return found[0] if len(found) == 1 else None


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
    comments: Sequence[Comment] = (),
    suspects: Sequence[Suspect] = (),
) -> FixRequest:
    """The request to fix `symbol`; with suspects (ranked, `symbol` first) a later round may
    rewrite any of them, and every test that reaches one verifies a candidate."""
    text = texts.get(path) or project.text(path) or ""
    source = _source(text, symbol)
    signature = next(
        (line.strip() for line in source.splitlines() if line.lstrip().startswith(("def ", "async def "))), ""
    )
    test = project.index.test_for(nodeid)
    callers, callees = _neighbours(project, path, symbol.qualname, texts)
    others = [found for s in suspects[1:] if (found := _subject(project, s, texts)) is not None]
    reached = {(path, symbol.qualname)} | {(s.path, s.qualname) for s in others}
    affected = sorted(project.index.tests_reaching(reached))
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
        evidence=suspects[0].describe() if suspects else "",
        suspects=others,
    )


def _subject(project: Project, suspect: Suspect, texts: dict[str, str]) -> Subject | None:
    symbol = project.index.symbol(suspect.path, suspect.qualname)
    text = texts.get(suspect.path) or project.text(suspect.path)
    if symbol is None or text is None:
        return None
    source = _source(text, symbol)
    return Subject(suspect.path, suspect.qualname, source, symbol.start_line, symbol.end_line, suspect.describe())


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
    failing: Sequence[TestResult] = (),
) -> Fix:
    """Trace the failing test, localize the fault, try the revert of the blamed change, ask for
    candidates, verify them; never touches the user's files. `failing`: the other failing tests;
    those whose top suspect is this one's are verified by the same fix."""
    say = report or (lambda message: None)
    say(f"tracing {result.nodeid}")
    python = await call(project.python)
    trace = await capture(project.root, python, result.nodeid, timeout=project.settings.timeout)
    asked, suspects = await call(plan_fix, project, result, texts, trace, list(failing))
    if asked.revert is None and not project.settings.llm.model:
        raise FixError(not_configured_message(), suspects=suspects)
    if project.settings.llm.model:
        # what passing tests give the suspects: the inputs a candidate is checked on besides the tests
        failed = {result.nodeid, *(r.nodeid for r in failing)}
        passing = [t for t in asked.affected_tests if t not in failed][:PASSING_TRACES]
        say(f"tracing {len(passing)} passing tests for the inputs they give the suspects")
        traces = await capture_passing(project.root, python, passing, timeout=project.settings.timeout)
        asked.inputs = {s.label: calls_of(traces, s.path, s.qualname) for s in asked.subjects()}
    outcome = await refine(asked, project.settings.llm, report=say)
    fix = _fix(result.nodeid, asked, outcome, suspects=suspects)
    fix.tests = [result.nodeid, *asked.failing_tests]
    return fix


def plan_fix(
    project: Project, result: TestResult, texts: dict[str, str], trace: Trace | None, failing: list[TestResult]
) -> tuple[FixRequest, list[Suspect]]:
    """The request for a failing test: its suspects, the failing tests that blame the same code,
    and the revert of the blamed changes when the test passed before them."""
    localizer = Localizer(project, [result, *failing], texts)
    suspects = localizer.suspects(result, trace)[:SUSPECTS]
    if not suspects:
        raise FixError(f"cannot tell which function {result.nodeid} exercises; no fix attempted")
    top = suspects[0]
    symbol = project.index.symbol(top.path, top.qualname)
    if symbol is None:
        raise FixError(f"{top.qualname} is no longer in {top.path}; run the tests again")
    group = [r.nodeid for r in failing if r.nodeid != result.nodeid and _top(localizer, r) == top.node]
    reviews = ReviewSet.from_settings(project.root, project.settings.review).collect(texts)
    asked = build_request(
        project,
        top.path,
        symbol,
        nodeid=result.nodeid,
        texts=texts,
        result=result,
        trace_text=prompt_trace(project, trace) if trace else "",
        comments=comments_for_symbol(reviews, top.path, top.qualname),
        suspects=suspects,
    )
    asked.failing_tests = group
    asked.trace = trace
    asked.revert = _revert(project, suspects, texts, 1 + len(group))
    asked.baselines = {
        f"{s.path}::{s.qualname}": Baseline(s.change.source, s.change.at or 0.0)
        for s in suspects
        if s.change is not None and s.change.since == SINCE_GREEN
    }
    return asked, suspects


def _top(localizer: Localizer, result: TestResult) -> tuple[str, str] | None:
    ranked = localizer.suspects(result)
    return ranked[0].node if ranked else None


def _revert(project: Project, suspects: list[Suspect], texts: dict[str, str], broke: int) -> Revert | None:
    """The blamed changes made since the test last passed, undone hunk by hunk; None when the top
    suspect has none (the bug is older than the test's last pass, or the test never passed)."""
    if suspects[0].change is None or suspects[0].change.since != SINCE_GREEN:
        return None
    changed = [s.change for s in suspects if s.change is not None and s.change.since == SINCE_GREEN]
    reverted = {}
    for path in dict.fromkeys(v.node[0] for v in changed):
        text = texts.get(path) or project.text(path)
        if text is not None:
            reverted[path] = revert(text, [h for v in changed if v.node[0] == path for h in v.hunks])
    first = suspects[0].change.hunks[0]
    tests = "a test" if broke == 1 else f"{broke} tests"
    return Revert(reverted, f"Revert the change at {first.path}:{first.lines[0]} that broke {tests}")


async def address_review(
    project: Project,
    comment: Comment,
    texts: dict[str, str],
    report: Callable[[str], None] | None = None,
    call: Call = inline,
) -> Fix:
    """Make the change a review comment asks for, guarded by the tests of its function."""
    if not project.settings.llm.model:
        raise FixError(not_configured_message())

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
    outcome = await refine(asked, project.settings.llm, report=report)
    fix = _fix(f"review {comment.id}", asked, outcome, comment)
    edits = [f.edit() for f in fix.files if f.path == comment.path]
    if fix.verified and not touches(comment, [(e.start, max(e.end, e.start)) for e in edits]):
        fix.verified = False
        fix.evidence = f"not verified: the edit does not touch the lines the review is about ({fix.evidence})"
    return fix


def _fix(
    subject: str,
    request: FixRequest,
    outcome: FixOutcome,
    comment: Comment | None = None,
    suspects: Sequence[Suspect] = (),
) -> Fix:
    if outcome.error:
        raise FixError(outcome.error, outcome, suspects)
    candidate = outcome.best or outcome.unverified
    if candidate is None:
        tried = "; ".join(a.reason for a in outcome.attempts[-3:]) or "no usable reply"
        raise FixError(f"no candidate fix after {outcome.model_calls} model calls: {tried}", outcome, suspects)
    files = []
    for path, after in candidate.texts.items():
        if comment is not None and comment.source == "inline" and path == comment.path:
            after = _without_comment(path, after, comment)
        files.append(FileChange(path, request.file_text(path), after))
    return Fix(
        subject,
        files,
        outcome.best is not None,
        outcome.evidence,
        candidate.diff,
        outcome,
        comment,
        title=candidate.title,
        suspects=list(suspects),
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
