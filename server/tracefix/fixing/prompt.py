"""What a fix is asked for (FixRequest) and the chat messages that ask a model for it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tracefix.tracing import Trace


@dataclass
class Subject:
    """A function a fix may rewrite, as it is in the file the editor has."""

    path: str
    qualname: str
    source: str  # the def with its decorators
    start_line: int  # 1-based, inclusive, the first decorator if any
    end_line: int
    evidence: str = ""  # why it is suspected, in words

    @property
    def name(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]

    @property
    def label(self) -> str:
        """How a reply names it: `path::qualname`."""
        return f"{self.path}::{self.qualname}"


@dataclass
class FixRequest:
    root: Path
    python: str  # the interpreter that runs the workspace's tests
    path: str  # the target function's file, relative to root, posix
    qualname: str  # e.g. "Cart.total"
    function_source: str  # the def with its decorators, as in the file
    function_start_line: int  # 1-based, inclusive, the first decorator if any
    function_end_line: int  # 1-based, inclusive
    signature: str  # the def line
    test_nodeid: str  # the failing test
    test_source: str
    failure_message: str
    docstring: str | None = None
    expected: str | None = None
    actual: str | None = None
    trace_text: str = ""  # the failing test's rendered block trace
    callers: list[tuple[str, str]] = field(default_factory=list)  # (qualname, source)
    callees: list[tuple[str, str]] = field(default_factory=list)
    review_comments: list[str] = field(default_factory=list)  # "@ana: handle the empty list"
    affected_tests: list[str] = field(default_factory=list)  # nodeids that must not regress
    overlay: dict[str, str] = field(default_factory=dict)  # relative posix path -> unsaved text
    allow_signature_change: bool = False
    instruction: str | None = None  # a review-driven change: change type -> location -> edit
    test_timeout: float = 60.0  # seconds for one verification run
    evidence: str = ""  # why the function is suspected, in words
    suspects: list[Subject] = field(default_factory=list)  # more functions a later round may rewrite
    failing_tests: list[str] = field(default_factory=list)  # more failing tests blamed on the same code
    trace: Trace | None = None  # the failing test's trace, for the inputs it gave each function
    revert: Revert | None = None  # a model-free first candidate
    baselines: dict[str, Baseline] = field(default_factory=dict)  # label → the version its tests passed with
    inputs: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # label → args passing tests gave it

    def subjects(self, wide: bool = True) -> list[Subject]:
        """The functions a candidate may rewrite: the primary one, and with `wide` the other suspects."""
        primary = Subject(
            self.path,
            self.qualname,
            self.function_source,
            self.function_start_line,
            self.function_end_line,
            self.evidence,
        )
        return [primary, *self.suspects] if wide else [primary]

    @property
    def name(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]

    def file_text(self, path: str | None = None) -> str:
        """A file (by default the function's) as the editor has it: the unsaved buffer if any, else the disk."""
        path = path or self.path
        if path in self.overlay:
            return self.overlay[path]
        return (self.root / path).read_text(encoding="utf-8")


@dataclass
class Baseline:
    """A function's source as it was when its tests last passed (the differential check's oracle)."""

    source: str
    at: float  # when it was recorded


@dataclass
class Revert:
    """The changes blamed for the failure undone, hunk by hunk: path → the file's text so."""

    texts: dict[str, str]
    title: str  # "Revert the change at shop/pricing.py:8 that broke 2 tests"


@dataclass
class Feedback:
    """What happened to an earlier candidate, shown to the model in the next round."""

    result: str  # the failures it caused, or why it was rejected
    source: str = ""  # the candidate function, if the reply had one
    trace: str = ""  # the failing test's block trace with this candidate in place


SYSTEM = """\
You fix bugs in Python functions. You get one function, the test that fails, how it fails \
and often an execution trace of the failing run.
Reply with the whole corrected function in one ```python fenced block: the complete def, with \
its decorators, and nothing else in the block. Keep the change minimal and keep the function's \
name{signature}. Do not add code outside the function; put any new import inside the function \
body. A short explanation before the block is fine."""

SYSTEM_WIDE = """\
You fix bugs in Python code. You get the functions most likely at fault, ranked, with the \
evidence against each, the test that fails, how it fails and often an execution trace of the \
failing run. The bug may be in any of them, not necessarily the one the test calls.
Rewrite only the function or functions that are wrong. For each one, reply with one ```python \
fenced block whose first line is a comment naming it exactly as given, like \
`# shop/pricing.py::apply_discount`, followed by the complete def with its decorators and \
nothing else. Keep the changes minimal and keep each function's name{signature}. Do not add \
code outside the functions. A short explanation before the blocks is fine."""


def _fence(text: str) -> str:
    return f"```python\n{text.rstrip()}\n```"


def _section(title: str, body: str) -> str:
    return f"## {title}\n{body.rstrip()}"


def build_messages(
    request: FixRequest,
    *,
    previous: Sequence[Feedback] = (),
    redact: Callable[[str], str] = lambda text: text,
    traced: bool = True,
    wide: bool = False,
) -> list[dict]:
    """System and user messages for one round; `redact` is applied to everything sent.
    traced=False leaves out every trace: the brief view of the same request. wide=True offers
    every suspect for rewriting, not only the primary function."""
    keep = "" if request.allow_signature_change else " and parameters (with their defaults)"
    subjects = request.subjects(wide)
    if len(subjects) > 1:
        parts = [
            _section(
                f"Suspect {rank}: `{s.label}`, lines {s.start_line}-{s.end_line}",
                (f"Evidence: {s.evidence}\n" if s.evidence else "") + _fence(s.source),
            )
            for rank, s in enumerate(subjects, 1)
        ]
    else:
        start, end = request.function_start_line, request.function_end_line
        parts = [
            _section(
                f"Function `{request.qualname}` in {request.path}, lines {start}-{end}",
                _fence(request.function_source),
            )
        ]
        if request.evidence:
            parts.append(_section("Why this function", request.evidence))
    if request.docstring:
        parts.append(_section("What it should do (its docstring)", request.docstring))
    for title, items in (("Called by", request.callers), ("Calls", request.callees)):
        if items:
            parts.append(_section(title, "\n\n".join(f"# {name}\n{_fence(src)}" for name, src in items)))
    parts.append(_section(f"Failing test {request.test_nodeid}", _fence(request.test_source)))
    if request.failing_tests:
        parts.append(_section("Also failing, blamed on the same code", "\n".join(request.failing_tests)))
    failure = [request.failure_message.strip()]
    if request.expected is not None and request.actual is not None:
        failure.append(f"expected: {request.expected}\nactual:   {request.actual}")
    parts.append(_section("How it fails", "\n".join(failure)))
    if traced and request.trace_text.strip():
        parts.append(_section("Execution trace of the failing test", f"```\n{request.trace_text.rstrip()}\n```"))
    if request.review_comments:
        parts.append(_section("Reviewer comments", "\n".join(f"- {c}" for c in request.review_comments)))
    if request.instruction:
        parts.append(_section("Requested change", request.instruction))
    for i, attempt in enumerate(previous, 1):
        body = f"{_fence(attempt.source)}\n" if attempt.source else ""
        if traced and attempt.trace.strip():
            body += f"Execution trace with this attempt:\n```\n{attempt.trace.rstrip()}\n```\n"
        parts.append(_section(f"Earlier attempt {i} did not work", body + attempt.result.rstrip()))
    ask = f"Reply with the corrected `{request.name}` function in one ```python block."
    if len(subjects) > 1:
        ask = "Reply with a ```python block for each function you correct, its first line naming it."
    if traced and request.trace_text.strip() and not request.instruction:
        # Naming the wrong line first keeps a small model from repeating the function unchanged.
        ask = "First say in one or two sentences which line is wrong, judging by the trace. Then r" + ask[1:]
    if previous:
        ask = "Try a different fix. " + ask
    parts.append(ask)
    system = SYSTEM_WIDE if len(subjects) > 1 else SYSTEM
    return [
        {"role": "system", "content": system.format(signature=keep)},
        {"role": "user", "content": redact("\n\n".join(parts))},
    ]
