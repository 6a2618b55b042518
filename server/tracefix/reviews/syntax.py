"""The little of Python's syntax reviews need: comments, statements and enclosing symbols.

Symbols are the index's (tracefix.parsing.symbols.outline), so a comment's `symbol` is a
qualname the rest of tracefix knows: classes, functions and methods, not functions nested
in functions.
"""

from __future__ import annotations

from functools import cached_property

from tree_sitter import Node, Tree

from tracefix.parsing.document import parse
from tracefix.parsing.symbols import Symbol, outline

_BODIES = ("module", "block")


class Module:
    """One file's text, parsed on first use."""

    def __init__(self, text: str):
        self.text = text
        self.source = text.encode("utf-8", "surrogatepass")
        # Split on "\n" alone, as tree-sitter counts rows; "\r" stays on the line.
        self.lines = text.split("\n")
        if self.lines[-1] == "":
            self.lines.pop()

    @cached_property
    def tree(self) -> Tree:
        return parse(self.source)

    @cached_property
    def symbols(self) -> list[Symbol]:
        return [s for s in outline(self.tree, self.source) if s.kind != "module"]

    def comments(self) -> list[Node]:
        found: list[Node] = []
        stack = [self.tree.root_node]
        while stack:
            node = stack.pop()
            if node.type == "comment":
                found.append(node)
            stack.extend(reversed(node.children))
        return found

    def before(self, row: int, column: int) -> str:
        """Text of 0-based `row` before byte `column` (tree-sitter columns count bytes)."""
        line = self.lines[row].encode("utf-8", "surrogatepass")
        return line[:column].decode("utf-8", "surrogatepass")

    def symbol_at(self, line: int) -> str | None:
        """Qualified name of the innermost symbol spanning 1-based `line`."""
        spanning = [s for s in self.symbols if s.start_line <= line <= s.end_line]
        return max(spanning, key=lambda s: s.start_line).qualname if spanning else None

    def find_symbol(self, name: str, near: int) -> Symbol | None:
        """The symbol called `name` (qualified, or just its last part) closest to line `near`."""
        matches = [s for s in self.symbols if s.qualname == name or s.qualname.endswith("." + name)]
        return min(matches, key=lambda s: abs(s.start_line - near), default=None)

    def statement_at(self, row: int, column: int, *, starting: bool) -> tuple[int, int]:
        """1-based line span of the statement at a 0-based position.

        `starting`: the position is where the statement begins, so climb only through nodes
        that begin there too (a comment above `else:` is about the else clause, not the
        whole if). Otherwise climb to the statement of the enclosing body that holds it.
        """
        node = self.tree.root_node.descendant_for_point_range((row, column), (row, column))
        while node.parent is not None and node.parent.type not in _BODIES:
            if starting and node.parent.start_point != node.start_point:
                break
            node = node.parent
        return node.start_point.row + 1, node.end_point.row + 1
