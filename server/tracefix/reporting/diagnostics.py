"""Test results → diagnostics: at the failing line of the test, and at the line of the code most
likely at fault (the top suspect of tracefix.localizing: a line changed since the test last
passed, else where it raised or made the wrong value); a correct caller on the way gets none."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tracefix.index.graph import ProjectIndex
from tracefix.localizing.rank import Suspect
from tracefix.parsing.symbols import MODULE
from tracefix.running.results import Location, Outcome, RunReport, TestResult, Verdict


@dataclass(frozen=True)
class Related:
    path: str
    line: int
    message: str


@dataclass(frozen=True)
class Diagnostic:
    path: str  # relative to the project root
    line: int  # 1-based
    message: str
    nodeid: str  # RUN for the run's own cause
    # assert | suspect (the code most likely at fault) | frame (where it raised) | crash | collect | run
    kind: str
    severity: str = "error"
    related: tuple[Related, ...] = field(default_factory=tuple)
    lines: tuple[int, ...] = ()  # every line of `path` a fix action is offered on

    def to_dict(self) -> dict:
        return asdict(self)


RUN = ""  # the nodeid of a diagnostic about the run, not one test


def test_name(nodeid: str) -> str:
    return nodeid.split("::", 1)[-1]


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else ""


def _assert_message(r: TestResult) -> str:
    text = f"{test_name(r.nodeid)} failed: {_first_line(r.message)}"
    if r.expected is not None:
        text += f" (expected {r.expected}, got {r.actual})"
    return text


def called_symbol(index: ProjectIndex, r: TestResult, root: Path) -> Location | None:
    """For a failed assert on a returned value: the project function called on that line."""
    if r.location is None:
        return None
    try:
        line = (root / r.location.path).read_text(encoding="utf-8").splitlines()[r.location.line - 1]
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    entry = index.files.get(r.location.path)
    if entry is None:
        return None
    bound, _ = index.bindings(r.location.path, entry.facts)
    for name in re.findall(r"([A-Za-z_]\w*)\s*\(", line):
        for path, qualname in bound.get(name, ()):
            symbol = index.symbol(path, qualname)
            if qualname != MODULE and symbol is not None:
                return Location(path, symbol.name_line, qualname)
    return None


def diagnose(
    results: list[TestResult], index: ProjectIndex, root: Path, suspects: dict[str, list[Suspect]] | None = None
) -> list[Diagnostic]:
    """suspects: nodeid → its ranked suspects; without them the code-side diagnostic goes where
    the test's exception was raised, or to the function the failing assert called."""
    diagnostics: list[Diagnostic] = []
    for r in results:
        if not r.failing:
            continue
        if r.uncollected:  # at the cause (a syntax error in an imported module), not on line 1 of the test file
            where = r.frame or Location(r.path, 1)
            message = f"{r.message} ({r.nodeid} cannot be collected)"
            diagnostics.append(Diagnostic(where.path, where.line, message, r.nodeid, "collect"))
            continue
        if r.outcome in (Outcome.TIMEOUT, Outcome.CRASHED) or r.location is None:
            where = r.location or Location(r.path or r.nodeid.split("::")[0], max(r.line, 1))
            what = {"timeout": "timed out", "crashed": "crashed the test process"}.get(r.outcome, r.outcome)
            message = f"{test_name(r.nodeid)} {what}: {_first_line(r.message) or 'no message'}"
            diagnostics.append(Diagnostic(where.path, where.line, message, r.nodeid, "crash"))
            continue
        top = next(iter((suspects or {}).get(r.nodeid, [])), None)
        code = _blame(r, top) if top is not None else _located(r, index, root)
        related: tuple[Related, ...] = ()
        if code is not None:
            related = (Related(code.path, code.line, f"likely cause: {code.message.split(': ', 1)[0]}"),)
        diagnostics.append(
            Diagnostic(r.location.path, r.location.line, _assert_message(r), r.nodeid, "assert", related=related)
        )
        if code is not None:
            back = (Related(r.location.path, r.location.line, f"failing test: {test_name(r.nodeid)}"), *code.related)
            diagnostics.append(
                Diagnostic(code.path, code.line, code.message, r.nodeid, code.kind, related=back, lines=code.lines)
            )
    return diagnostics


def _got(r: TestResult) -> str:
    return f": got {r.actual}, expected {r.expected}" if r.expected is not None else ""


def _blame(r: TestResult, top: Suspect) -> Diagnostic:
    message = f"{top.qualname}: likely cause of {test_name(r.nodeid)} failing{_got(r)}"
    if top.evidence:
        message += f" ({top.describe()})"
    related: tuple[Related, ...] = ()
    if r.frame is not None and (r.frame.path, r.frame.line) != (top.path, top.line):
        related = (Related(r.frame.path, r.frame.line, f"raised here: {_first_line(r.message)}"),)
    return Diagnostic(top.path, top.line, message, r.nodeid, "suspect", related=related, lines=top.lines)


def _located(r: TestResult, index: ProjectIndex, root: Path) -> Diagnostic | None:
    if r.frame is not None:
        message = f"{r.frame.function or r.frame.path}: {test_name(r.nodeid)} fails here: {_first_line(r.message)}"
        return Diagnostic(r.frame.path, r.frame.line, message, r.nodeid, "frame", lines=(r.frame.line,))
    called = called_symbol(index, r, root)
    if called is None:
        return None
    message = f"{called.function}: gives a wrong result in {test_name(r.nodeid)}{_got(r)}"
    return Diagnostic(called.path, called.line, message, r.nodeid, "suspect", lines=(called.line,))


def run_diagnostics(report: RunReport) -> list[Diagnostic]:
    """A run that could not complete for a cause in one place (a conftest's import, a line of the
    pytest configuration): a diagnostic there."""
    where = report.location
    if where is None or report.verdict != Verdict.INCOMPLETE:
        return []
    return [Diagnostic(where.path, where.line, f"tests cannot run: {report.message}", RUN, "run")]
