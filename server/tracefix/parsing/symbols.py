"""Symbols of a module (classes, functions, methods, module-level names and code) and what an
edit changed.

Each symbol's digest covers its own text minus the spans of the symbols nested in it, so
editing a method changes the method and not its class. A top-level statement that only binds
plain names (`X = …`, `X: T = …`, `X += …`, `A, B = …`) is a "variable" symbol per name it
binds; the module symbol covers the rest of the module-level code (imports, calls, blocks), so
changing a constant changes that name, not the module.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from tree_sitter import Node, Tree

MODULE = "<module>"
DEFS = ("function_definition", "class_definition")
CODE = ("function", "method", "class")  # the kinds of symbols whose code runs (not module-level names)
_TARGETS = ("pattern_list", "tuple_pattern", "list_pattern", "list_splat_pattern", "parenthesized_expression")


@dataclass(frozen=True)
class Symbol:
    qualname: str  # "Cart.total"; MODULE for module-level statements; "LIMIT" for a module-level name
    kind: str  # module | class | function | method | variable
    start_line: int  # 1-based, including decorators
    end_line: int
    name_line: int  # where the name is, 1-based
    digest: str
    decorators: tuple[str, ...] = ()


@dataclass(frozen=True)
class Import:
    module: str  # as written, without the leading dots
    names: tuple[str, ...]  # () for `import x`; ("*",) for star imports
    level: int = 0  # leading dots of a relative import
    alias: str | None = None  # `import a.b as c` → "c"


@dataclass
class Facts:
    """What the index needs from one file: symbols, imports, and the names each symbol uses."""

    symbols: list[Symbol]
    imports: list[Import]
    uses: dict[str, set[str]] = field(default_factory=dict)  # qualname → identifiers used
    params: dict[str, tuple[str, ...]] = field(default_factory=dict)  # function → parameter names
    bases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # class → base names as written


@dataclass(frozen=True)
class Change:
    qualname: str
    kind: str
    what: str  # changed | added | removed
    line: int  # 1-based, in the new text (old text for removed)


def _digest(parts: list[bytes]) -> str:
    # blank lines and trailing spaces carry no meaning; dropping them keeps a neighbour's
    # insertion or removal from "changing" the enclosing class or module
    h = hashlib.blake2b(digest_size=12)
    for part in parts:
        for line in part.splitlines():
            if line.strip():
                h.update(line.rstrip() + b"\n")
    return h.hexdigest()


def _definition(node: Node) -> Node | None:
    if node.type in DEFS:
        return node
    if node.type == "decorated_definition":
        return node.child_by_field_name("definition")
    return None


def _decorators(node: Node) -> tuple[str, ...]:
    if node.type != "decorated_definition":
        return ()
    return tuple((c.text or b"").decode("utf-8", "replace")[1:].strip() for c in node.children if c.type == "decorator")


def _own_text(node: Node, source: bytes, nested: list[Node]) -> list[bytes]:
    """Bytes of `node` with nested definitions' spans cut out (replaced by their position)."""
    parts, pos = [], node.start_byte
    for child in nested:
        parts.append(source[pos : child.start_byte])
        pos = child.end_byte
    parts.append(source[pos : node.end_byte])
    return parts


def bound_names(node: Node) -> list[Node] | None:
    """The names a top-level statement binds if it is a plain name binding, else None."""
    if node.type != "expression_statement" or node.named_child_count != 1:
        return None
    stmt: Node | None = node.named_children[0]
    names: list[Node] = []
    while stmt is not None and stmt.type in ("assignment", "augmented_assignment"):
        if not _targets(stmt.child_by_field_name("left"), names):
            return None
        stmt = stmt.child_by_field_name("right")  # `a = b = 1` nests the second assignment
    return names or None


def _targets(node: Node | None, names: list[Node]) -> bool:
    if node is None:
        return False
    if node.type == "identifier":
        names.append(node)
        return True
    return node.type in _TARGETS and all(_targets(c, names) for c in node.named_children)


def outline(tree: Tree, source: bytes) -> list[Symbol]:
    """Module symbol first, then module-level names, classes, functions and methods in source order."""
    symbols: list[Symbol] = []
    root = tree.root_node
    top = [c for c in root.children if _definition(c) is not None or bound_names(c) is not None]
    symbols.append(Symbol(MODULE, "module", 1, root.end_point[0] + 1, 1, _digest(_own_text(root, source, top))))
    _collect(top, source, "", False, symbols)
    return symbols


def _collect(nodes: list[Node], source: bytes, prefix: str, in_class: bool, out: list[Symbol]) -> None:
    for outer in nodes:
        node = _definition(outer)
        if node is None:
            digest = _digest([source[outer.start_byte : outer.end_byte]])
            line, end = outer.start_point[0] + 1, outer.end_point[0] + 1
            for name in dict.fromkeys((n.text or b"").decode("utf-8", "replace") for n in bound_names(outer) or ()):
                out.append(Symbol(name, "variable", line, end, line, digest))
            continue
        name_node = node.child_by_field_name("name")
        if name_node is None:
            continue
        name = name_node.text.decode("utf-8", "replace")
        qualname = prefix + name
        nested: list[Node] = []
        if node.type == "class_definition":
            body = node.child_by_field_name("body")
            nested = [c for c in (body.children if body else []) if _definition(c) is not None]
            kind = "class"
        else:
            kind = "method" if in_class else "function"
        out.append(
            Symbol(
                qualname,
                kind,
                outer.start_point[0] + 1,
                outer.end_point[0] + 1,
                name_node.start_point[0] + 1,
                _digest(_own_text(outer, source, nested)),
                _decorators(outer),
            )
        )
        if nested:
            _collect(nested, source, qualname + ".", True, out)


def diff(old: list[Symbol], new: list[Symbol]) -> list[Change]:
    """Symbols added, removed or changed. A name defined twice (a property's getter and setter,
    conditional definitions) is compared as the set of its definitions."""

    def digests(symbols: list[Symbol]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for s in symbols:
            found.setdefault(s.qualname, []).append(s.digest)
        return {q: sorted(d) for q, d in found.items()}

    before, after = digests(old), digests(new)
    changes, seen = [], set()
    for s in new:
        if s.qualname in seen:
            continue
        seen.add(s.qualname)
        if s.qualname not in before:
            changes.append(Change(s.qualname, s.kind, "added", s.start_line))
        elif before[s.qualname] != after[s.qualname]:
            changes.append(Change(s.qualname, s.kind, "changed", s.start_line))
    for s in old:
        if s.qualname not in after and s.qualname not in seen:
            seen.add(s.qualname)
            changes.append(Change(s.qualname, s.kind, "removed", s.start_line))
    return changes


def facts(tree: Tree, source: bytes) -> Facts:
    symbols = outline(tree, source)
    result = Facts(symbols=symbols, imports=[])
    spans = sorted(
        ((s.start_line, s.end_line, s.qualname) for s in symbols if s.kind != "module"), key=lambda t: (t[0], -t[1])
    )
    uses: dict[str, set[str]] = {s.qualname: set() for s in symbols}
    _walk_names(tree.root_node, spans, uses, result)
    # the names one statement binds (`A, B = X, Y`) share what it reads; the walk gave it to one
    statements: dict[tuple[int, int], set[str]] = {}
    for s in symbols:
        if s.kind == "variable":
            statements.setdefault((s.start_line, s.end_line), set()).update(uses[s.qualname])
    for s in symbols:
        if s.kind == "variable":
            uses[s.qualname] |= statements[(s.start_line, s.end_line)]
    result.uses = uses
    return result


def _owner(line: int, spans: list[tuple[int, int, str]]) -> str:
    owner = MODULE
    for start, end, qualname in spans:
        if start > line:
            break
        if start <= line <= end:
            owner = qualname  # spans are sorted outer-first, so the innermost wins
    return owner


def _walk_names(root: Node, spans, uses: dict[str, set[str]], result: Facts) -> None:
    cursor = root.walk()
    visited_children = False
    while True:
        node = cursor.node
        if not visited_children:
            kind = node.type
            if kind == "identifier":
                owner = _owner(node.start_point[0] + 1, spans)
                uses[owner].add(node.text.decode("utf-8", "replace"))
            elif kind in ("import_statement", "import_from_statement"):
                # imported names are bindings, not uses: the graph follows them through imports
                result.imports.extend(_imports(node))
                if cursor.goto_next_sibling():
                    continue
                if not cursor.goto_parent():
                    return
                visited_children = True
                continue
            elif kind == "function_definition":
                _params(node, spans, result)
            elif kind == "class_definition":
                _bases(node, spans, result)
            if cursor.goto_first_child():
                continue
        if cursor.goto_next_sibling():
            visited_children = False
        elif cursor.goto_parent():
            visited_children = True
        else:
            return


def _params(node: Node, spans, result: Facts) -> None:
    params = node.child_by_field_name("parameters")
    if params is None:
        return
    names = []
    for p in params.named_children:
        target = (
            p
            if p.type == "identifier"
            else p.child_by_field_name("name") or (p.named_children[0] if p.named_children else None)
        )
        if target is not None and target.type == "identifier":
            names.append(target.text.decode("utf-8", "replace"))
    # walked outer-first: a nested def's parameters never replace its owner's
    result.params.setdefault(_owner(node.start_point[0] + 1, spans), tuple(names))


def _bases(node: Node, spans, result: Facts) -> None:
    supers = node.child_by_field_name("superclasses")
    names = tuple(
        _dotted(a) for a in (supers.named_children if supers else ()) if a.type in ("identifier", "attribute")
    )
    name = node.child_by_field_name("name")
    owner = _owner(name.start_point[0] + 1, spans) if name is not None else MODULE
    result.bases.setdefault(owner, names)


def _dotted(node: Node) -> str:
    return (node.text or b"").decode("utf-8", "replace")


def _imports(node: Node) -> list[Import]:
    found = []
    if node.type == "import_statement":
        for child in node.named_children:
            if child.type == "dotted_name":
                found.append(Import(_dotted(child), ()))
            elif child.type == "aliased_import":
                name, alias = child.child_by_field_name("name"), child.child_by_field_name("alias")
                found.append(Import(_dotted(name), (), alias=_dotted(alias) if alias else None))
        return found
    module_node = node.child_by_field_name("module_name")
    level, module = 0, ""
    if module_node is not None:
        text = _dotted(module_node)
        level = len(text) - len(text.lstrip("."))
        module = text.lstrip(".")
    names = []
    for child in node.children_by_field_name("name"):
        target = child.child_by_field_name("name") if child.type == "aliased_import" else child
        names.append(_dotted(target))
    if any(c.type == "wildcard_import" for c in node.children):
        names.append("*")
    found.append(Import(module, tuple(names), level))
    return found
