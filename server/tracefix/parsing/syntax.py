"""Syntax errors of a buffer while it is typed: where tree-sitter's parse broke, said the way
CPython would say it.

tree-sitter decides whether there is an error and where: one problem per ERROR node or MISSING
token, placed at the token that broke the parse rather than where error recovery began (that
can be the top of the file). Its parse is lenient about indentation, so misaligned statements
and empty blocks are found from the tree's layout. When the buffer has errors, CPython's parser
is asked too: its message (and position) replace tree-sitter's for the problem whose lines it
falls in. A CPython error outside every tree-sitter problem is left out, since the server's
Python may be older than the project's and reject syntax the buffer may use.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

from tree_sitter import Node, Tree

_OPENERS = {"(": ")", "[": "]", "{": "}"}  # opening bracket -> its closing one
_CLOSERS = {close: open_ for open_, close in _OPENERS.items()}
_DEFINITIONS = ("function_definition", "class_definition", "decorated_definition")
_COMPOUND = {"def", "class", "if", "elif", "else", "for", "while", "with", "try", "except", "finally", "match", "case"}


@dataclass(frozen=True)
class SyntaxProblem:
    line: int  # 0-based
    column: int  # 0-based, code points
    end_line: int
    end_column: int
    message: str


@dataclass(frozen=True)
class _Found:
    """A problem in tree-sitter's terms: points are (row, byte column)."""

    start: tuple[int, int]
    end: tuple[int, int]
    message: str
    rows: tuple[int, int]  # the lines of the broken region, where a CPython error may land


def problems(tree: Tree, lines: list[str], limit: int = 50) -> list[SyntaxProblem]:
    """The buffer's syntax problems in reading order; `lines` is its text split on "\\n"."""
    root = tree.root_node
    found = _independent(sorted(_errors(root, limit) + _layout(root, lines), key=lambda f: f.start), root)[:limit]
    if not found:
        return []
    error = _cpython_error(lines)
    if error is None:  # CPython parses it: a grammar tree-sitter does not know
        return []
    out = [_convert(f, lines) for f in found]
    cpython = _from_cpython(error, lines)
    if cpython is not None:
        match = next((i for i, f in enumerate(found) if f.rows[0] <= cpython.line <= f.rows[1]), None)
        if match is not None:
            out[match] = cpython
    return out


def _independent(found: list[_Found], root: Node) -> list[_Found]:
    """Drops the problems that follow from an earlier one: those before the parse is back on
    track, at a top-level definition (error recovery swallows the `def` lines it skips)."""
    definitions = [c.start_point[0] for c in root.named_children if c.type in _DEFINITIONS and c.start_point[1] == 0]
    kept: list[_Found] = []
    for f in found:
        if not kept or any(kept[-1].rows[1] < row <= f.start[0] for row in definitions):
            kept.append(f)
    return kept


# ---------------------------------------------------------------- ERROR and MISSING nodes


def _errors(root: Node, limit: int) -> list[_Found]:
    found: list[_Found] = []
    stack = [root]
    while stack and len(found) < limit:
        node = stack.pop()
        if node.is_missing:
            found.append(_missing(node))
        elif node.is_error:
            found.append(_explain(node))
        elif node.has_error:
            stack.extend(reversed(node.children))
    return found


def _missing(node: Node) -> _Found:
    at = _point(node.start_point)
    rows = (at[0], at[0])
    opener = _opener_before(node) if node.type in _CLOSERS else None
    if opener is not None:
        return _Found(_point(opener.start_point), _point(opener.end_point), f"'{opener.type}' was never closed", rows)
    what = (
        f"'{node.type}'"
        if not node.is_named
        else "a name"
        if node.type == "identifier"
        else node.type.replace("_", " ")
    )
    return _Found(at, at, f"expected {what}", rows)


def _opener_before(missing: Node) -> Node | None:
    """The bracket a MISSING closing bracket would have closed: the nearest unclosed one before it."""
    depth = 0
    sibling = missing.prev_sibling
    while sibling is not None:
        if sibling.type == missing.type and not sibling.is_missing:
            depth += 1
        elif sibling.type == _CLOSERS[missing.type]:
            if depth == 0:
                return sibling
            depth -= 1
        sibling = sibling.prev_sibling
    return None


def _explain(error: Node) -> _Found:
    rows = (error.start_point[0], error.end_point[0])
    unbalanced = _brackets(error)
    if unbalanced is not None:
        return _Found(*unbalanced, rows)
    # Error recovery may wrap whole statements that parsed fine (from the top of the file, when
    # a `def` lost its colon): the problem is in the first part that did not.
    node = error
    rest = _unparsed(node)
    while rest and rest[0].is_error:
        node = rest[0]
        rest = _unparsed(node)
    start = rest[0].start_byte if rest else node.start_byte
    header = _header([leaf for leaf in _leaves(node) if leaf.start_byte >= start])
    if not header:
        return _Found(_point(node.start_point), _point(node.end_point), "invalid syntax", rows)
    first = header[0]
    if first.type == "string_start":
        triple = "triple-quoted " if first.text and first.text.endswith((b'"""', b"'''")) else ""
        return _Found(_point(first.start_point), _point(first.end_point), f"unterminated {triple}string literal", rows)
    if first.type in _COMPOUND and not any(leaf.type == ":" for leaf in header):
        after = _point(header[-1].end_point)
        return _Found(after, after, "expected ':'", rows)
    last = header[-1]
    return _Found(_point(last.start_point), _point(last.end_point), "invalid syntax", rows)


def _brackets(error: Node) -> tuple[tuple[int, int], tuple[int, int], str] | None:
    """The first closing bracket that closes nothing or the wrong thing, else the innermost
    bracket never closed."""
    open_: list[Node] = []
    for leaf in _leaves(error):
        if leaf.type in _OPENERS:
            open_.append(leaf)
        elif leaf.type in _CLOSERS:
            where = _point(leaf.start_point), _point(leaf.end_point)
            if not open_:
                return (*where, f"unmatched '{leaf.type}'")
            if open_[-1].type != _CLOSERS[leaf.type]:
                message = f"closing parenthesis '{leaf.type}' does not match opening parenthesis '{open_[-1].type}'"
                return (*where, message)
            open_.pop()
    if open_:
        leaf = open_[-1]
        return _point(leaf.start_point), _point(leaf.end_point), f"'{leaf.type}' was never closed"
    return None


def _leaves(node: Node) -> Iterator[Node]:
    """The tokens under node in reading order, without MISSING ones (they are not in the text)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if n.child_count == 0 or n.type in ("string_start", "string_end"):
            if not n.is_missing and n.end_byte > n.start_byte:
                yield n
        else:
            stack.extend(reversed(n.children))


def _header(leaves: list[Node]) -> list[Node]:
    """The leaves up to the end of the first logical line: a line break outside brackets."""
    depth = 0
    for i, leaf in enumerate(leaves):
        if i and depth == 0 and leaf.start_point[0] > leaves[i - 1].end_point[0]:
            return leaves[:i]
        depth += (leaf.type in _OPENERS) - (leaf.type in _CLOSERS)
        depth = max(depth, 0)
    return leaves


def _unparsed(node: Node) -> list[Node]:
    """The children of an ERROR node from the first one that is not a whole, valid statement."""
    children = node.children
    skip = 0
    while skip < len(children) and _is_statement(children[skip]) and not children[skip].has_error:
        skip += 1
    return children[skip:]


def _is_statement(node: Node) -> bool:
    return node.is_named and (
        node.type.endswith(("_statement", "_definition")) or node.type in ("decorated_definition", "comment")
    )


# ---------------------------------------------------------------- indentation


def _layout(root: Node, lines: list[str]) -> list[_Found]:
    """Statements that do not line up with the others of their body, and bodies left empty; one
    problem per body, and none right after a syntax error, whose recovery leaves lines astray."""
    found: list[_Found] = []
    bodies = [root]
    while bodies:
        body = bodies.pop()
        if body.type == "block" and not [c for c in body.named_children if c.type != "comment"]:
            if body.parent is not None and not body.parent.has_error:
                found.append(_empty(body, lines))
            continue
        column = 0 if body.type == "module" else None
        previous: Node | None = None
        misaligned = False
        for stmt in body.named_children:
            if stmt.type == "comment":
                continue
            row, col = stmt.start_point
            if lines[row][:col].strip():  # after `;` or a one-line `if x: ...`: not at a line start
                pass
            elif column is None:
                column = col
            elif col != column and not misaligned:
                misaligned = True
                deeper = col > _last_indent(previous) if previous is not None else col > column
                message = "unexpected indent" if deeper else "unindent does not match any outer indentation level"
                found.append(_Found((row, col), (row, len(lines[row].encode())), message, (row, row)))
            previous = stmt
            misaligned = misaligned or stmt.has_error
            if not stmt.is_error:
                bodies.extend(_blocks(stmt))
    return found


def _blocks(node: Node) -> Iterator[Node]:
    """The bodies of a compound statement, its clauses' included."""
    for child in node.children:
        if child.type == "block":
            yield child
        elif child.type.endswith("_clause") or child.type in ("function_definition", "class_definition"):
            yield from _blocks(child)


def _last_indent(stmt: Node) -> int:
    """Indentation of the last statement inside stmt (itself, when it has no body)."""
    while True:
        bodies = [b for b in _blocks(stmt) if b.named_children]
        if not bodies:
            return stmt.start_point[1]
        stmt = bodies[-1].named_children[-1]


def _empty(block: Node, lines: list[str]) -> _Found:
    owner = block.parent
    assert owner is not None  # a block always belongs to a statement or clause
    keyword = next((c.type for c in owner.children if c.type != "async"), "")
    what = {"def": "function definition", "class": "class definition"}.get(keyword, f"'{keyword}' statement")
    message = f"expected an indented block after {what} on line {owner.start_point[0] + 1}"
    header = block.prev_sibling or owner
    row = header.end_point[0] + 1
    while row < len(lines) and not lines[row].strip():
        row += 1
    if row < len(lines):
        indent = len(lines[row]) - len(lines[row].lstrip())
        start, end = (row, len(lines[row][:indent].encode())), (row, len(lines[row].encode()))
    else:
        start = end = _point(header.end_point)
    return _Found(start, end, message, (owner.start_point[0], start[0]))


# ---------------------------------------------------------------- CPython and positions


def _cpython_error(lines: list[str]) -> SyntaxError | None:
    """CPython's first syntax error in the text, None when it parses."""
    try:
        ast.parse("\n".join(line.removesuffix("\r") for line in lines))
    except SyntaxError as error:
        return error
    except (ValueError, RecursionError, MemoryError):  # null bytes, absurd nesting: it cannot say where
        return SyntaxError()
    return None


def _from_cpython(error: SyntaxError, lines: list[str]) -> SyntaxProblem | None:
    """CPython's error placed in the buffer: at its token, or for an indentation error at the
    statement (CPython points into the indentation or past the end of the line)."""
    if not error.lineno or not 1 <= error.lineno <= len(lines) + 1:
        return None
    line = error.lineno - 1
    text = lines[line] if line < len(lines) else ""
    if isinstance(error, IndentationError):
        indent = len(text) - len(text.lstrip())
        return SyntaxProblem(line, indent, line, max(len(text.rstrip()), indent + 1), error.msg)
    column = min(max((error.offset or 1) - 1, 0), len(text))
    end = (line, column + 1)
    if error.end_lineno and error.end_offset and (error.end_lineno - 1, error.end_offset - 1) > (line, column):
        end = (error.end_lineno - 1, error.end_offset - 1)
    return SyntaxProblem(line, column, *end, error.msg)


def _point(point: tuple[int, int]) -> tuple[int, int]:
    return point[0], point[1]


def _convert(found: _Found, lines: list[str]) -> SyntaxProblem:
    """tree-sitter's (row, byte column) → (line, code-point column), at least one character wide."""
    line, column = _column(lines, found.start)
    end_line, end_column = _column(lines, found.end)
    if (end_line, end_column) <= (line, column):
        end_line, end_column = line, column + 1
    return SyntaxProblem(line, column, end_line, end_column, found.message)


def _column(lines: list[str], point: tuple[int, int]) -> tuple[int, int]:
    row, byte_column = point
    if row >= len(lines):
        return row, 0
    return row, len(lines[row].encode("utf-8", "surrogatepass")[:byte_column].decode("utf-8", "ignore"))
