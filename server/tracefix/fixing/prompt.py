"""What a fix is asked for (FixRequest) and the chat messages that ask a model for it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tracefix.paths import read_text


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
    sandbox: str = "auto"  # fix.sandbox: how candidate runs are confined (fixing/shadow.py)

    @property
    def name(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]

    def file_text(self) -> str:
        """The file as the editor has it: the unsaved buffer if any, else the disk."""
        if self.path in self.overlay:
            return self.overlay[self.path]
        text = read_text(self.root / self.path)
        if text is None:
            raise OSError(f"{self.path} is not a regular file of readable size")
        return text


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
) -> list[dict]:
    """System and user messages for one round; `redact` is applied to everything sent.
    traced=False leaves out every trace: the brief view of the same request."""
    keep = "" if request.allow_signature_change else " and parameters (with their defaults)"
    start, end = request.function_start_line, request.function_end_line
    parts = [
        _section(
            f"Function `{request.qualname}` in {request.path}, lines {start}-{end}",
            _fence(request.function_source),
        )
    ]
    if request.docstring:
        parts.append(_section("What it should do (its docstring)", request.docstring))
    for title, items in (("Called by", request.callers), ("Calls", request.callees)):
        if items:
            parts.append(_section(title, "\n\n".join(f"# {name}\n{_fence(src)}" for name, src in items)))
    parts.append(_section(f"Failing test {request.test_nodeid}", _fence(request.test_source)))
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
    if traced and request.trace_text.strip() and not request.instruction:
        # Naming the wrong line first keeps a small model from repeating the function unchanged.
        ask = "First say in one or two sentences which line is wrong, judging by the trace. Then r" + ask[1:]
    if previous:
        ask = "Try a different fix. " + ask
    parts.append(ask)
    return [
        {"role": "system", "content": SYSTEM.format(signature=keep)},
        {"role": "user", "content": redact("\n\n".join(parts))},
    ]
