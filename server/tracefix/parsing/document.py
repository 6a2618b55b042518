"""A Python buffer kept parsed with tree-sitter, re-parsed incrementally on every edit."""

from __future__ import annotations

from bisect import bisect_right

import tree_sitter_python
from tree_sitter import Language, Node, Parser, Tree

from tracefix.parsing import syntax
from tracefix.parsing.symbols import CODE, Symbol, outline
from tracefix.parsing.syntax import SyntaxProblem

PYTHON = Language(tree_sitter_python.language())
_BODIES = ("module", "block")


def parse(source: bytes, old: Tree | None = None) -> Tree:
    # A Parser is cheap and not thread-safe; one per call keeps background indexing safe.
    return Parser(PYTHON).parse(source, old) if old is not None else Parser(PYTHON).parse(source)


class Document:
    """Text + tree, kept parsed as it is edited, and what the text holds: symbols, comments,
    statements. Positions are (line, column) with columns in code points, 0-based, unless a
    method says otherwise."""

    def __init__(self, text: str):
        self.text = text
        self._source: bytes | None = None
        self._tree = parse(self.source)
        self._stale = False  # edited since the tree was parsed
        self._starts: list[int] | None = None
        self._lines: list[str] | None = None
        self._symbols: list[Symbol] | None = None

    def _changed(self) -> None:
        self._starts = self._lines = self._symbols = self._source = None

    @property
    def source(self) -> bytes:
        """The text as UTF-8, as tree-sitter reads it."""
        if self._source is None:
            self._source = self.text.encode("utf-8", "surrogatepass")
        return self._source

    @property
    def tree(self) -> Tree:
        """The tree of the current text. An edit only tells the old tree where it moved; the tree
        is parsed again, incrementally, when next asked for: a keystroke costs no parse, and a
        burst of them costs one (an edit that turns the rest of the file into a string, or ends
        every block below it, re-parses all of it: about as long as a fresh parse)."""
        if self._stale:
            self._tree = parse(self.source, self._tree)
            self._stale = False
        return self._tree

    @property
    def lines(self) -> list[str]:
        """The text split on "\n" alone, as tree-sitter counts rows ("\r" stays on its line)."""
        if self._lines is None:
            lines = self.text.split("\n")
            if lines[-1] == "":
                lines.pop()
            self._lines = lines
        return self._lines

    @property
    def symbols(self) -> list[Symbol]:
        """Classes, functions and methods (not the module or its names), as the index outlines them."""
        if self._symbols is None:
            self._symbols = [s for s in outline(self.tree, self.source) if s.kind in CODE]
        return self._symbols

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
        """The symbol called `name` (qualified, or just its last part) closest to 1-based line `near`."""
        matches = [s for s in self.symbols if s.qualname == name or s.qualname.endswith("." + name)]
        return min(matches, key=lambda s: abs(s.start_line - near), default=None)

    def statement_at(self, row: int, column: int, *, starting: bool) -> tuple[int, int]:
        """1-based line span of the statement at a 0-based position (column in bytes).

        `starting`: the position is where the statement begins, so climb only through nodes
        that begin there too (a comment above `else:` is about the else clause, not the
        whole if). Otherwise climb to the statement of the enclosing body that holds it.
        """
        root = self.tree.root_node
        node = root.descendant_for_point_range((row, column), (row, column)) or root
        while node.parent is not None and node.parent.type not in _BODIES:
            if starting and node.parent.start_point != node.start_point:
                break
            node = node.parent
        return node.start_point.row + 1, node.end_point.row + 1

    def _line_starts(self) -> list[int]:
        # Offsets (in str) where each line begins; rebuilt lazily after an edit.
        if self._starts is None:
            starts = [0]
            find = self.text.find
            i = find("\n")
            while i != -1:
                starts.append(i + 1)
                i = find("\n", i + 1)
            self._starts = starts
        return self._starts

    def offset(self, line: int, column: int) -> int:
        """str offset of a position, clamped into the text (clients send out-of-range positions)."""
        starts = self._line_starts()
        if line < 0:
            return 0
        if line >= len(starts):
            return len(self.text)
        end = starts[line + 1] - 1 if line + 1 < len(starts) else len(self.text)
        return min(starts[line] + max(column, 0), end)

    def position(self, offset: int) -> tuple[int, int]:
        starts = self._line_starts()
        line = bisect_right(starts, offset) - 1
        return line, offset - starts[line]

    def _point(self, offset: int) -> tuple[int, int]:
        line, _ = self.position(offset)
        start = self._line_starts()[line]
        return line, len(self.text[start:offset].encode("utf-8", "surrogatepass"))

    def _byte(self, offset: int) -> int:
        line, column = self._point(offset)
        start = self._line_starts()[line]
        return len(self.text[:start].encode("utf-8", "surrogatepass")) + column

    def edit(self, start: tuple[int, int], end: tuple[int, int], new_text: str) -> None:
        """Replace the range [start, end) and re-parse incrementally."""
        lo, hi = self.offset(*start), self.offset(*end)
        if hi < lo:
            lo, hi = hi, lo
        start_byte, start_point = self._byte(lo), self._point(lo)
        old_end_byte, old_end_point = self._byte(hi), self._point(hi)
        self.text = self.text[:lo] + new_text + self.text[hi:]
        self._changed()
        new_hi = lo + len(new_text)
        new_end_byte, new_end_point = self._byte(new_hi), self._point(new_hi)
        self._tree.edit(start_byte, old_end_byte, new_end_byte, start_point, old_end_point, new_end_point)
        self._stale = True

    def replace(self, text: str) -> None:
        self.text = text
        self._changed()
        self._tree = parse(self.source)
        self._stale = False

    def syntax_problems(self, limit: int = 50) -> list[SyntaxProblem]:
        return syntax.problems(self.tree, self.lines, limit)
