"""Test results → diagnostics: at the failing line of the test and where the code under test failed."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tracefix.index.graph import ProjectIndex
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
    kind: str  # assert | frame | crash | collect | run
    severity: str = "error"
    related: tuple[Related, ...] = field(default_factory=tuple)

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


def _called_symbol(index: ProjectIndex, r: TestResult, root: Path) -> Location | None:
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


def diagnose(results: list[TestResult], index: ProjectIndex, root: Path) -> list[Diagnostic]:
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
        assert_message = _assert_message(r)
        frame = r.frame
        frame_message = None
        if frame is not None:
            frame_message = f"{test_name(r.nodeid)} fails here: {_first_line(r.message)}"
        else:
            frame = _called_symbol(index, r, root)
            if frame is not None:
                got = f": got {r.actual}, expected {r.expected}" if r.expected is not None else ""
                frame_message = f"{frame.function} gives a wrong result in {test_name(r.nodeid)}{got}"
        related = ()
        if frame is not None:
            related = (Related(frame.path, frame.line, f"failing code: {frame.function or frame.path}"),)
        diagnostics.append(
            Diagnostic(r.location.path, r.location.line, assert_message, r.nodeid, "assert", related=related)
        )
        if frame is not None:
            back = (Related(r.location.path, r.location.line, f"failing test: {test_name(r.nodeid)}"),)
            diagnostics.append(Diagnostic(frame.path, frame.line, frame_message, r.nodeid, "frame", related=back))
    return diagnostics


def run_diagnostics(report: RunReport) -> list[Diagnostic]:
    """A run that could not complete for a cause in one place (a conftest's import, a line of the
    pytest configuration): a diagnostic there."""
    where = report.location
    if where is None or report.verdict != Verdict.INCOMPLETE:
        return []
    return [Diagnostic(where.path, where.line, f"tests cannot run: {report.message}", RUN, "run")]
