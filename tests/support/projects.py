"""Small projects written to a directory, and what static selection makes of an edit to one."""

from __future__ import annotations

from pathlib import Path

from tracefix.index.graph import ProjectIndex
from tracefix.index.pytestconfig import PytestConfig, load
from tracefix.parsing.symbols import diff
from tracefix.selection.select import Changed, select


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def index_of(root: Path, config: PytestConfig | None = None) -> ProjectIndex:
    idx = ProjectIndex(root, config or load(root)[0])
    idx.load({})
    return idx


def static_selection(root: Path, rel: str, old: str, new: str) -> dict[str, str]:
    """nodeid → reason of the tests static evidence (all a test with no record has) selects once
    `old` is replaced with `new` in `rel`."""
    idx = index_of(root)
    before = idx.files[rel].facts.symbols
    text = (root / rel).read_text()
    assert old in text
    idx.update(rel, text.replace(old, new, 1).encode())
    changes = [Changed(rel, c.qualname, c.kind, c.what, c.line) for c in diff(before, idx.files[rel].facts.symbols)]
    assert changes
    return {s.nodeid: s.reason for s in select(idx, changes)}
