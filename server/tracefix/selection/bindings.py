"""Changes to module-level names: a plain name binding (`LIMIT = 3`) selects what reads the name;
one whose value mentions the project's own functions or classes (`REGISTRY = build()`) runs
project code at import, which may do more than bind the name, so it counts as a change to the
module's code, as every change to module-level code that is not a plain name binding does."""

from __future__ import annotations

from tracefix.index.graph import ProjectIndex
from tracefix.parsing.symbols import CODE, MODULE
from tracefix.selection.select import Changed


def with_fallbacks(index: ProjectIndex, changes: list[Changed]) -> list[Changed]:
    """`changes`, plus a change to the module's code for each changed name whose value mentions
    the project's code."""
    edges: dict[str, dict] = {}  # path → its own nodes' edges
    added = []
    for c in changes:
        if c.kind != "variable" or c.what != "changed":
            continue
        if c.path not in edges:
            edges[c.path] = index.file_edges(c.path)
        targets = edges[c.path].get((c.path, c.qualname), ())
        if any((s := index.symbol(*t)) is not None and s.kind in CODE for t in targets if t[1] != MODULE):
            added.append(Changed(c.path, MODULE, "module", "changed", c.line))
    return changes + [c for c in dict.fromkeys(added) if c not in changes]
