"""Symbols of a module (classes, functions, methods, module-level names and code) and what an
edit changed.

Each symbol's digest covers its own text minus the spans of the symbols nested in it, so
editing a method changes the method and not its class. A top-level statement that only binds
plain names (`X = …`, `X: T = …`, `X += …`, `A, B = …`) is a "variable" symbol per name it
binds; the module symbol covers the rest of the module-level code (imports, calls, blocks), so
changing a constant changes that name, not the module.
"""

from __future__ import annotations

import ast
import hashlib
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tree_sitter import Node, Tree

MODULE = "<module>"
DEFS = ("function_definition", "class_definition")
CODE = ("function", "method", "class")  # the kinds of symbols whose code runs (not module-level names)
_TARGETS = ("pattern_list", "tuple_pattern", "list_pattern", "list_splat_pattern", "parenthesized_expression")


@dataclass(frozen=True, slots=True)
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
    names: tuple[tuple[str, str], ...]  # (name in the module, name bound here); () for `import x`
    level: int = 0  # leading dots of a relative import
    alias: str | None = None  # `import a.b as c` → "c"


STAR = ("*", "*")  # the names of `from m import *`


@dataclass
class Facts:
    """What the index needs from one file: symbols, imports, the names each symbol uses and the
    names the module itself binds. Each collection of names per symbol is a sorted tuple of
    interned strings: a large project's facts stay small in memory."""

    symbols: list[Symbol]
    imports: list[Import]
    # qualname → the names it uses, as written: "x" for a name, "a.b.c" for a chain of attributes
    # of a name (an attribute of anything else is not recorded: `f().x` uses only "f")
    uses: dict[str, tuple[str, ...]] = field(default_factory=dict)
    params: dict[str, tuple[str, ...]] = field(default_factory=dict)  # function → parameter names
    locals: dict[str, tuple[str, ...]] = field(default_factory=dict)  # function → names its body assigns
    bases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # class → base names as written
    # outside class bodies, names whose object's identity alone counts (annotations, isinstance's
    # class, except's type): they run nothing
    mentions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Module-level code: `uses[MODULE]` is what import may run. A name only kept (in a variable, in
    # a literal, as an argument of a call whose result is kept: `f = wrap(g)`, as with decorators)
    # is not run by the import, and goes only into `values` of the variables it ends up in.
    assigned: set[str] = field(default_factory=set)  # module-level names bound other than by def, class, import
    values: dict[str, tuple[str, ...]] = field(default_factory=dict)  # module-level variable → names its values use
    made: set[str] = field(default_factory=set)  # module-level callees whose result is kept: their constructors run
    exports: tuple[str, ...] | None = None  # `__all__` when it is built from string literals only


def name_table(found: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """Names per symbol as Facts keeps them: sorted, once each, interned (the same names recur
    across a project's files)."""
    return {sys.intern(k): tuple(sorted({sys.intern(n) for n in v})) for k, v in found.items()}


@dataclass
class _Found:
    """What the walk of a file finds, in sets while it adds to them (then kept as Facts)."""

    imports: list[Import] = field(default_factory=list)
    params: dict[str, tuple[str, ...]] = field(default_factory=dict)
    locals: dict[str, set[str]] = field(default_factory=dict)
    bases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    mentions: dict[str, set[str]] = field(default_factory=dict)
    assigned: set[str] = field(default_factory=set)
    values: dict[str, set[str]] = field(default_factory=dict)
    made: set[str] = field(default_factory=set)


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
        if not _name_targets(stmt.child_by_field_name("left"), names):
            return None
        stmt = stmt.child_by_field_name("right")  # `a = b = 1` nests the second assignment
    return names or None


def _name_targets(node: Node | None, names: list[Node]) -> bool:
    """Whether every target is a name (`a, (b, c)`), adding the name nodes to `names`."""
    if node is None:
        return False
    if node.type == "identifier":
        names.append(node)
        return True
    return node.type in _TARGETS and all(_name_targets(c, names) for c in node.named_children)


def outline(tree: Tree, source: bytes) -> list[Symbol]:
    """Module symbol first, then module-level names, classes, functions and methods in source order."""
    symbols: list[Symbol] = []
    root = tree.root_node
    top = [c for c in _statements(root.children) if _definition(c) is not None or bound_names(c) is not None]
    symbols.append(Symbol(MODULE, "module", 1, root.end_point[0] + 1, 1, _digest(_own_text(root, source, top))))
    _collect(top, source, "", False, symbols)
    return symbols


# compound statements whose blocks still define at the level they are in: pytest collects a
# `def test_x` under `if sys.version_info >= (3, 10):` or in a `try` as any other
_COMPOUND = {
    "if_statement",
    "elif_clause",
    "else_clause",
    "try_statement",
    "except_clause",
    "finally_clause",
    "with_statement",
}


def _statements(nodes: list[Node]) -> list[Node]:
    """The statements of a body, with those inside its if/try/with blocks, in source order; only
    definitions are taken from the inner ones (see outline)."""
    found: list[Node] = []
    for node in nodes:
        if node.type not in _COMPOUND:
            found.append(node)
            continue
        for child in node.children:
            if child.type == "block":
                found.extend(c for c in _statements(child.children) if _definition(c) is not None)
            elif child.type in _COMPOUND:
                found.extend(c for c in _statements([child]) if _definition(c) is not None)
    return found


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
        name = (name_node.text or b"").decode("utf-8", "replace")
        qualname = prefix + name
        nested: list[Node] = []
        if node.type == "class_definition":
            body = node.child_by_field_name("body")
            nested = [c for c in _statements(body.children if body else []) if _definition(c) is not None]
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
    result = _Found()
    # 1-based line → the innermost symbol holding it: outer spans first, inner ones overwrite
    owners = [MODULE] * (tree.root_node.end_point[0] + 2)
    # (a module-level variable's lines stay the module's: what it reads is in `values`)
    for s in sorted((s for s in symbols if s.kind in CODE), key=lambda s: (s.start_line, -s.end_line)):
        owners[s.start_line : s.end_line + 1] = [s.qualname] * (s.end_line - s.start_line + 1)
    uses: dict[str, set[str]] = {s.qualname: set() for s in symbols}
    exports = _walk_names(tree.root_node, owners, uses, result)
    # a module-level variable reads what its value names (`B = A + 1` reads A)
    for s in symbols:
        if s.kind == "variable":
            uses[s.qualname] |= result.values.get(s.qualname, set())
    return Facts(
        symbols=symbols,
        imports=result.imports,
        uses=name_table(uses),
        params=result.params,
        locals=name_table(result.locals),
        bases=result.bases,
        mentions=name_table(result.mentions),
        assigned=result.assigned,
        values=name_table(result.values),
        made=result.made,
        exports=tuple(dict.fromkeys(exports)) if "__all__" in result.assigned and exports is not None else None,
    )


def _owner(line: int, owners: list[str]) -> str:
    return owners[line] if line < len(owners) else MODULE


# statements that bind names: the field holding what they bind
_BINDERS = {
    "assignment": "left",
    "augmented_assignment": "left",
    "for_statement": "left",
    "as_pattern": "alias",
    "named_expression": "name",
}


def _walk_names(root: Node, owners: list[str], uses: dict[str, set[str]], result: _Found) -> list[str] | None:
    """Fills uses, mentions, imports, params, locals, bases, assigned, values and made. Returns the names `__all__` lists, or None
    when something other than string literals goes into it."""
    exports: list[str] | None = []
    declared: dict[str, set[str]] = {}  # function → names its `global` statements declare
    at = _Context()
    cursor = root.walk()
    visited_children = False
    while (node := cursor.node) is not None:
        descend = not visited_children
        if not visited_children and (kind := node.type) in _WALKED:
            if at.values:
                at.enter(node)
            if kind == "identifier":
                if _is_use(node):
                    _use(node, _dotted(node), owners, at, uses, result)
            elif kind == "attribute":
                chain = _chain(node)
                if chain is not None:
                    _use(node, chain, owners, at, uses, result)
                    descend = False
                    if exports is not None and chain.startswith("__all__.") and node.parent and _all_call(node, owners):
                        exports = _extended(exports, node.parent)
            elif kind in ("import_statement", "import_from_statement"):
                # imported names are bindings, not uses: the graph follows them through imports
                result.imports.extend(_imports(node))
                descend = False
            elif kind in DEFS:
                if kind == "function_definition":
                    _params(node, owners, result)
                else:
                    _bases(node, owners, result)
                # a def in a loop or a function is no symbol (one under if/try/with is): its name
                # is bound like a variable's
                name = _dotted(node.child_by_field_name("name"))
                if _owner(node.start_point[0] + 1, owners).rpartition(".")[2] != name:
                    _bound(node, [name], owners, result)
            elif kind == "global_statement":
                names = [_dotted(c) for c in node.named_children if c.type == "identifier"]
                result.assigned.update(names)
                declared.setdefault(_owner(node.start_point[0] + 1, owners), set()).update(names)
            elif kind in _BINDERS:
                names = _targets(node.child_by_field_name(_BINDERS[kind]))
                _bound(node, names, owners, result)
                if _owner(node.start_point[0] + 1, owners) == MODULE:
                    at.assigning(node, names)
                    if "__all__" in names and exports is not None:
                        exports = _assigned_all(exports, node)
            elif kind == "type":
                owner = _owner(node.start_point[0] + 1, owners)
                if owner == MODULE or owner in result.params:  # not class bodies: dataclass fields
                    at.annotation(node)
        if descend and cursor.goto_first_child():
            visited_children = False
            continue
        if cursor.goto_next_sibling():
            visited_children = False
        elif cursor.goto_parent():
            visited_children = True
        else:
            break
    for owner, globals_ in declared.items():
        result.locals.get(owner, set()).difference_update(globals_)
    return exports


# the node types _walk_names reads; it only descends through the others
_WALKED = frozenset(
    ("identifier", "attribute", "import_statement", "import_from_statement", *DEFS, "global_statement", "type")
) | frozenset(_BINDERS)

# node type → the field naming what it binds or names rather than reads
_NAMING = {
    "attribute": "attribute",
    "keyword_argument": "name",
    "assignment": "left",
    "for_statement": "left",
    "for_in_clause": "left",
    "named_expression": "name",
    "as_pattern": "alias",
    "function_definition": "name",
    "class_definition": "name",
}
_PATTERNS = ("pattern_list", "tuple_pattern", "list_pattern", "tuple", "list", "expression_list")
_GROUPING = frozenset((*_PATTERNS, "parenthesized_expression", "list_splat_pattern"))


def _is_use(identifier: Node) -> bool:
    """Whether an identifier reads a name: not `x.name`'s attribute, `f(name=1)`'s keyword, a name
    an assignment or a def binds, or the names of `del`, `global` and `nonlocal` statements."""
    child, parent = identifier, identifier.parent
    while parent is not None and parent.type in _GROUPING:
        child, parent = parent, parent.parent
    if parent is None:
        return True
    if parent.type in _NAMING:
        return parent.child_by_field_name(_NAMING[parent.type]) != child
    return parent.type not in ("delete_statement", "global_statement", "nonlocal_statement", "as_pattern_target")


def _bound(node: Node, names: list[str], owners: list[str], result: _Found) -> None:
    """Names a statement binds: module-level names, or a function's locals."""
    owner = _owner(node.start_point[0] + 1, owners)
    if owner == MODULE:
        result.assigned.update(names)
    elif owner in result.params:  # a name a function assigns is its own throughout
        result.locals.setdefault(owner, set()).update(names)


class _Context:
    """Where the walk is: in which module-level assignments' values, in which annotation."""

    def __init__(self) -> None:
        self.values: list[tuple[int, int, list[str]]] = []  # (start, end byte of a value, variables)
        self.annotation_end = 0

    def enter(self, node: Node) -> None:
        while self.values and self.values[-1][1] <= node.start_byte:
            self.values.pop()

    def assigning(self, node: Node, names: list[str]) -> None:
        value = node.child_by_field_name("right")
        if value is not None and names and node.type in ("assignment", "augmented_assignment"):
            self.values.append((value.start_byte, value.end_byte, names))

    def annotation(self, node: Node) -> None:
        self.annotation_end = max(self.annotation_end, node.end_byte)

    def assigned_to(self, node: Node) -> list[str]:
        """The variables of the module-level assignments whose value holds `node`."""
        return [n for start, end, names in self.values if start <= node.start_byte < end for n in names]


def _use(node: Node, name: str, owners: list[str], at: _Context, uses: dict[str, set[str]], result: _Found) -> None:
    """Records a use of `name`: as a mention when only the object's identity counts, and at module
    level apart from what import runs (see Facts)."""
    owner = _owner(node.start_point[0] + 1, owners)
    if node.start_byte < at.annotation_end or ((owner == MODULE or owner in result.params) and _mentioned(node)):
        result.mentions.setdefault(owner, set()).add(name)
        return
    if owner != MODULE:
        uses[owner].add(name)
        return
    variables = at.assigned_to(node)
    for variable in variables:
        result.values.setdefault(variable, set()).add(name)
    parent = node.parent
    if parent is not None and parent.type == "call" and parent.child_by_field_name("function") == node:
        (result.made if _stored(parent) else uses[MODULE]).add(name)
    elif not variables and not _stored(node):  # a name a variable's value reads is the variable's
        uses[MODULE].add(name)


_CONTAINERS = ("list", "tuple", "set", "dictionary", "pair", "expression_list", "keyword_argument")


def _stored(node: Node) -> bool:
    """Whether module-level code only keeps `node`'s value: in a variable, in a literal that goes
    into one, or as an argument of a call whose result goes into one (`f = wrap(g)`)."""
    child, parent = node, node.parent
    while parent is not None and parent.type in _CONTAINERS:
        child, parent = parent, parent.parent
    if parent is None:
        return False
    if parent.type == "argument_list":
        return parent.parent is not None and _stored(parent.parent)
    return (
        parent.type in ("assignment", "augmented_assignment")
        and parent.child_by_field_name("right") == child
        and bool(_targets(parent.child_by_field_name("left")))  # not `obj.attr = value`
    )


def _mentioned(node: Node) -> bool:
    """Whether only the identity of `node`'s object counts: as the class argument of isinstance or
    issubclass, as the type of an except clause (annotations: see _Context)."""
    child, parent = node, node.parent
    while parent is not None and parent.type in ("tuple", "parenthesized_expression", "subscript", "generic_type"):
        child, parent = parent, parent.parent
    if parent is None:
        return False
    if parent.type == "argument_list":
        call = parent.parent
        callee = call.child_by_field_name("function") if call is not None else None
        args = parent.named_children
        return (
            callee is not None
            and _dotted(callee) in ("isinstance", "issubclass")
            and len(args) == 2
            and args[1] == child
        )
    if parent.type == "as_pattern":
        child, parent = parent, parent.parent
    return parent is not None and parent.type == "except_clause"


def _chain(node: Node) -> str | None:
    """A dotted name for an attribute chain of a name or of `super()` ("a.b.c", "super().m");
    None when it starts from anything else."""
    if node.type == "identifier":
        return _dotted(node)
    if node.type == "call":
        callee = node.child_by_field_name("function")
        return "super()" if callee is not None and _dotted(callee) == "super" else None
    if node.type != "attribute":
        return None
    obj, attr = node.child_by_field_name("object"), node.child_by_field_name("attribute")
    head = _chain(obj) if obj is not None else None
    return None if head is None or attr is None else f"{head}.{_dotted(attr)}"


def _targets(node: Node | None) -> list[str]:
    """Names an assignment target binds (`a, (b, c)`; not `x.y` or `x[i]`)."""
    if node is None:
        return []
    if node.type == "identifier":
        return [_dotted(node)]
    if node.type in (*_PATTERNS, "list_splat_pattern", "as_pattern_target"):
        return [n for c in node.named_children for n in _targets(c)]
    return []


def _strings(node: Node | None) -> list[str] | None:
    """The values of a string literal or of a list or tuple of them; None for anything else."""
    if node is None:
        return None
    items = node.named_children if node.type in ("list", "tuple") else [node]
    values = []
    for item in items:
        if item.type != "string" or any(c.type == "interpolation" for c in item.named_children):
            return None
        try:
            value = ast.literal_eval(_dotted(item))
        except (ValueError, SyntaxError):
            return None
        values.append(value)
    return values


def _assigned_all(exports: list[str], node: Node) -> list[str] | None:
    """`__all__ = [...]` starts over, `__all__ += [...]` extends; anything else is not literal."""
    value = _strings(node.child_by_field_name("right"))
    if value is None or node.type not in ("assignment", "augmented_assignment"):
        return None
    if node.type == "augmented_assignment":
        operator = node.child_by_field_name("operator")
        return exports + value if operator is not None and operator.type == "+=" else None
    return value


def _all_call(node: Node, owners: list[str]) -> bool:
    """Whether `node` is the callee of a module-level `__all__.<method>(...)`."""
    parent = node.parent
    return (
        parent is not None
        and parent.type == "call"
        and parent.child_by_field_name("function") == node
        and _owner(node.start_point[0] + 1, owners) == MODULE
    )


def _extended(exports: list[str], call: Node) -> list[str] | None:
    """`__all__.extend([...])` and `__all__.append("x")` with literals; any other call: not literal."""
    method = _dotted(call.child_by_field_name("function")).rpartition(".")[2]
    args = call.child_by_field_name("arguments")
    values = args.named_children if args is not None else []
    takes = {"extend": ("list", "tuple"), "append": ("string",)}.get(method, ())
    if len(values) != 1 or values[0].type not in takes:
        return None
    added = _strings(values[0])
    return None if added is None else exports + added


def _params(node: Node, owners: list[str], result: _Found) -> None:
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
            names.append((target.text or b"").decode("utf-8", "replace"))
    # walked outer-first: a nested def's parameters never replace its owner's
    result.params.setdefault(_owner(node.start_point[0] + 1, owners), tuple(names))


def _bases(node: Node, owners: list[str], result: _Found) -> None:
    supers = node.child_by_field_name("superclasses")
    names = tuple(
        _dotted(a) for a in (supers.named_children if supers else ()) if a.type in ("identifier", "attribute")
    )
    name = node.child_by_field_name("name")
    owner = _owner(name.start_point[0] + 1, owners) if name is not None else MODULE
    result.bases.setdefault(owner, names)


def _dotted(node: Node | None) -> str:
    return (node.text or b"").decode("utf-8", "replace") if node is not None else ""


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
        if child.type == "aliased_import":
            name, alias = child.child_by_field_name("name"), child.child_by_field_name("alias")
            names.append((_dotted(name), _dotted(alias) if alias else _dotted(name)))
        else:
            names.append((_dotted(child), _dotted(child)))
    if any(c.type == "wildcard_import" for c in node.children):
        names.append(STAR)
    found.append(Import(module, tuple(names), level))
    return found
