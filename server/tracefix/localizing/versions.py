"""Versions to compare a failing test's code with: what each test executed when it last passed
(and those functions' sources then), or git HEAD; and the hunks that differ, which localizing
blames and the revert candidate undoes."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from tracefix.index.files import Node
from tracefix.index.graph import ProjectIndex
from tracefix.parsing.symbols import Symbol

FUNCTIONS = ("function", "method")


@dataclass(frozen=True)
class Hunk:
    """Lines start..end of the current file (1-based, inclusive; end = start - 1: lines were only
    removed before start) that read `old` in the baseline."""

    path: str
    start: int
    end: int
    old: tuple[str, ...]  # the baseline's lines, with their line endings

    @property
    def lines(self) -> tuple[int, ...]:
        """The current lines it covers; for a removal, the line after it."""
        return tuple(range(self.start, self.end + 1)) or (self.start,)


@dataclass(frozen=True)
class Version:
    """A function as it was in a baseline, and how it differs from now."""

    node: Node
    since: str  # "since the test last passed" | "since git HEAD"
    source: str  # the whole def as it was
    hunks: tuple[Hunk, ...]
    at: float | None = None  # when it was recorded green (None for git)


def green_rows(index: ProjectIndex, code: dict[str, list]) -> dict[str, list[tuple[str, str, str]]]:
    """nodeid → (path, qualname, digest) of the functions outside test files it executed."""
    found: dict[str, list[tuple[str, str, str]]] = {}
    for nodeid, rows in code.items():
        found[nodeid] = [
            (p, q, d)
            for p, q, d, how in rows
            if how == "executed" and not index.is_test_file(p) and _is_function(index.symbol(p, q))
        ]
    return found


def green_sources(
    index: ProjectIndex, root: Path, wanted: set[tuple[str, str, str]], started: dict[str, str]
) -> list[tuple[str, str, str, str]]:
    """(path, qualname, digest, text) of the wanted functions, from files that did not
    change since the run started (so the text is the version that ran)."""
    sources = []
    texts: dict[str, list[str] | None] = {}
    for path, qualname, digest in sorted(wanted):
        entry = index.files.get(path)
        symbol = index.symbol(path, qualname)
        if entry is None or symbol is None or started.get(path) != entry.digest:
            continue
        if path not in texts:
            try:
                texts[path] = (root / path).read_text(encoding="utf-8").splitlines(keepends=True)
            except (OSError, UnicodeDecodeError):
                texts[path] = None
        lines = texts[path]
        if lines is not None:
            sources.append((path, qualname, digest, "".join(lines[symbol.start_line - 1 : symbol.end_line])))
    return sources


def _is_function(symbol: Symbol | None) -> bool:
    return symbol is not None and symbol.kind in FUNCTIONS


def _significant(lines: list[str] | tuple[str, ...]) -> list[str]:
    return [line.rstrip() for line in lines if line.strip()]


def hunks(path: str, old: list[str], new: list[str], new_start: int) -> tuple[Hunk, ...]:
    """The hunks turning old into new, new's first line being line new_start of the file; a hunk
    that only moves blank lines or trailing spaces is none (digests ignore those too)."""
    found = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal" or _significant(old[i1:i2]) == _significant(new[j1:j2]):
            continue
        found.append(Hunk(path, new_start + j1, new_start + j2 - 1, tuple(old[i1:i2])))
    return tuple(found)


def revert(text: str, reverted: list[Hunk]) -> str:
    """text with each hunk's lines put back as they were (hunks of one file, not overlapping)."""
    lines = text.splitlines(keepends=True)
    for hunk in sorted(reverted, key=lambda h: h.start, reverse=True):
        old = list(hunk.old)
        if old and not old[-1].endswith(("\n", "\r")) and hunk.end < len(lines):
            old[-1] += "\n"
        lines[hunk.start - 1 : hunk.end] = old
    return "".join(lines)
