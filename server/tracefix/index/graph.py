"""The static name graph from each test to the project symbols it can reach: the index as a whole.

An edge goes from a symbol to what running it can run: the names it uses (resolved through imports,
re-exports and attributes of modules), its module's code and, for a method, its class's own code.
Using a class reaches its members: (path, "Cls" + MEMBERS) reaches its methods, its nested classes
and what it inherits. A method reaches what it calls on `self`, `cls` and `super()` up the class
hierarchy, and the dunder methods operators may call on `self`; an override in a subclass runs on an
instance of the subclass, and whatever made the instance reached the subclass's members. Classes
that code may get without naming them are reached otherwise: `X.__subclasses__()` reaches every
class below X, and importing a module reaches its classes that a project decorator or a base's
`__init_subclass__` may have put in a registry. A test reaches the fixtures it requests, the autouse fixtures,
conftest code in its scope and its class's non-test methods (setUp, helpers). A name the index
cannot resolve is a node of its own that reaches every symbol of the modules its module imports
(of the whole project when the module itself is missing): tests that reach it are selected
conservatively.
"""

from __future__ import annotations

import json
import re
import sys
from array import array
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path, PurePosixPath

import tree_sitter

from tracefix import __version__
from tracefix.index.discovery import TestDiscovery, is_fixture
from tracefix.index.files import FACTS_VERSION, Node, bindings_digest, uses_digest
from tracefix.index.modules import MODULE_OBJECT, UNRESOLVED, Ref
from tracefix.index.pytestconfig import PytestConfig
from tracefix.parsing.document import PYTHON
from tracefix.parsing.symbols import MODULE

MEMBERS = ".*"  # qualname suffix: (path, "Cls.*") stands for every member of a class
MISSING = "<unresolved>"  # qualname prefix of (module path, MISSING + name): a name not found there
ANY = "<any>"  # (path, ANY) reaches every symbol of the file
ANY_NAME = "*"  # (path, MISSING + ANY_NAME): whichever name of a module code gets by getattr
USE, MENTION, MAKE = "use", "mention", "make"  # how a symbol uses a name (see Facts)
_FIXTURE_NAME = re.compile(r"""\bname\s*=\s*["']([^"']+)["']""")
GRAPH_VERSION = 1  # a saved graph of another version is built again (ProjectIndex._key)


def missing_name(node: Node) -> str | None:
    """The name an unresolved node stands for; None for any other node."""
    return node[1][len(MISSING) :] if node[1].startswith(MISSING) else None


def members(cls: Node) -> Node:
    return (cls[0], cls[1] + MEMBERS)


class ProjectIndex(TestDiscovery):
    def __init__(self, root: Path, config: PytestConfig):
        super().__init__(root, config)
        self._saved: Saved | None = None  # the graph as last saved, while it holds for the files
        self._built = False  # graph() built the whole graph since unsaved() last returned it

    def invalidate(self) -> None:
        super().invalidate()
        self._saved = None

    def graph(self) -> dict[Node, set[Node]]:
        if self._graph is None and self._saved is not None:
            self._graph, self._reverse = self._saved.forward(), self._saved.backward()
            self._saved = None  # the dictionaries take over, _stale files included
        if self._graph is None:
            fixtures = self._fixtures()
            graph: dict[Node, set[Node]] = {}
            for path in self.files:
                self._add_file(graph, path, fixtures)
            self._add_missing(graph, set())
            reverse: dict[Node, set[Node]] = {}
            for src, dsts in graph.items():
                for dst in dsts:
                    reverse.setdefault(dst, set()).add(src)
            self._graph, self._reverse = graph, reverse
            self._stale.clear()
            self._built = True
        elif self._stale:
            self._refresh()
        return self._graph

    def file_edges(self, path: str) -> dict[Node, set[Node]]:
        """The edges from one file's own nodes, as graph() has them, without building the rest:
        a file's own edges depend on no other file's."""
        edges: dict[Node, set[Node]] = {}
        if path in self.files:
            self._add_file(edges, path, self._fixtures())
        return edges

    def reverse(self) -> dict[Node, set[Node]]:
        self.graph()
        assert self._reverse is not None  # graph() builds both
        return self._reverse

    def _refresh(self) -> None:
        """After edits that changed only what code in some files uses (the names every file binds
        are the same): only those files' own nodes get new edges."""
        graph, reverse = self._graph, self._reverse
        assert graph is not None and reverse is not None
        for node in [n for n in graph if n[0] in self._stale and not derived(n)]:
            for dst in graph.pop(node):
                reverse[dst].discard(node)
        fresh: dict[Node, set[Node]] = {}
        fixtures = self._fixtures()
        for path in self._stale:
            self._add_file(fresh, path, fixtures)
        self._add_missing(fresh, graph.keys())
        for src, dsts in fresh.items():
            graph.setdefault(src, set()).update(dsts)
            for dst in dsts:
                reverse.setdefault(dst, set()).add(src)
        # unresolved names nothing uses any more, then the files' symbol sets only they led to
        for kind in (missing_name, lambda n: n[1] == ANY or None):
            for node in [n for n in graph if kind(n) is not None and not reverse.get(n)]:
                for dst in graph.pop(node):
                    reverse[dst].discard(node)
        for dst in [n for n, srcs in reverse.items() if not srcs]:
            del reverse[dst]
        self._stale.clear()

    def _add_file(self, graph: dict[Node, set[Node]], path: str, fixtures: Fixtures) -> None:
        """The edges from a file's own nodes: its symbols, its classes' members, its variables."""
        f = self.files[path].facts
        module_node = (path, MODULE)
        stars = [Ref("", f"{m}.*", UNRESOLVED) for m in self.unresolved_stars(path)]
        for s in f.symbols:
            node = (path, s.qualname)
            edges = graph.setdefault(node, set())
            if s.kind != "module":
                edges.add(module_node)  # using a symbol imports its module
                parent = s.qualname.rpartition(".")[0]
                if parent:
                    edges.add((path, parent))  # the enclosing class's own code
            # a function's parameters and the names it assigns hide the module's names
            local = set(f.params.get(s.qualname, ())).union(f.locals.get(s.qualname, ()))
            header = set(f.bases.get(s.qualname, ())) if s.kind == "class" else set()
            for how, names in (
                (USE, f.uses.get(s.qualname, ())),
                (MENTION, f.mentions.get(s.qualname, ())),
                (MAKE, f.made if s.kind == "module" else ()),
            ):
                for use in names:
                    if use.partition(".")[0] not in local and use not in header:
                        edges.update(n for ref in self.resolve(path, use) for n in self._reached(ref, how))
            for ref in stars:  # any name here may come from a module the index cannot find
                edges.update(self._reached(ref))
            if s.kind == "function" and (
                s.qualname in ("__getattr__", "__dir__") or self._registered(path, s.qualname)
            ):
                # a registry may hand it to code that never names it; anyone probing the
                # module's attributes (hasattr, pickle, inspect) calls its __getattr__
                graph[module_node].add(node)
            if s.kind == "class":
                self._add_class(graph, path, s.qualname)
            elif s.kind == "method":
                edges.update(self._called_on_self(path, s.qualname))
            edges.update(self._subclasses_used(path, s.qualname))
        for name in f.assigned:  # a module-level variable: the module's code and what its values use
            variable = graph.setdefault((path, name), set())
            variable.add(module_node)
            variable.update(
                n for use in f.values.get(name, ()) for r in self.resolve(path, use) for n in self._reached(r)
            )
        # importing a module runs the modules it imports
        graph[module_node].update((p, MODULE) for p in self.imported(path))
        self._add_fixtures(graph, path, fixtures)

    def _add_class(self, graph: dict[Node, set[Node]], path: str, cls: str) -> None:
        """A class's own code runs its bases' __init_subclass__; its members are its methods, its
        nested classes' members and its bases' members. A test class's own code stands for what the
        test framework calls on it (setUp, fixtures) and its helpers: every non-test method."""
        node = (path, cls)
        bases = [b for b in self.base_nodes(path, cls) if not isinstance(b, str)]
        hooks = [n for b in bases if (n := self.class_methods(*b).get("__init_subclass__"))]
        graph[node].update(bases + hooks)
        if hooks or self._registered(path, cls):
            # a registry may hand out instances to code that never names the class
            graph[(path, MODULE)].add(members(node))
        inside = [s for s in self.files[path].facts.symbols if s.qualname.rpartition(".")[0] == cls]
        graph.setdefault(members(node), set()).update(
            [node]
            + [(path, s.qualname) if s.kind == "method" else members((path, s.qualname)) for s in inside]
            + [members(b) for b in bases]
        )
        if self.is_test_file(path):
            graph[node].update(
                n for name, n in self.class_methods(path, cls).items() if not self.config.is_test_function(name)
            )

    def _registered(self, path: str, qualname: str) -> bool:
        """Whether one of the project's decorators (`@register`, `@registry.add`) wraps a class or
        function."""
        symbol = self.symbol(path, qualname)
        decorators = symbol.decorators if symbol is not None else ()
        return any(self.resolve(path, d.split("(")[0].strip()) for d in decorators)

    def _reached(self, ref: Ref, how: str = USE) -> set[Node]:
        """The nodes a use of `ref` reaches: a class's members (an instance may get any method
        called); for a class made by module-level code into a variable, its constructors (the
        variable's users reach the rest); for a mention, the class's own code."""
        if ref.kind == UNRESOLVED:
            return {(ref.path, MISSING + ref.name)}
        if ref.kind == MODULE_OBJECT:  # a module passed around or read with getattr: any of its names
            return {(ref.path, MODULE)} if how == MENTION else {(ref.path, MISSING + ANY_NAME)}
        if how == USE or not self._is_class(ref.node):
            return {self._used(ref.node)}
        if how == MENTION:
            return {ref.node}
        methods = self.class_methods(*ref.node)
        return {ref.node} | {methods[n] for n in ("__new__", "__init__", "__post_init__") if n in methods}

    def _used(self, node: Node) -> Node:
        return members(node) if self._is_class(node) else node

    def _is_class(self, node: Node) -> bool:
        symbol = self.symbol(*node)
        return symbol is not None and symbol.kind == "class"

    def _everything(self, path: str) -> set[Node]:
        """What a module object gives access to: all its names, its submodules' names too."""
        found: set[Node] = set()
        todo, seen = [path], set()
        while todo:
            module = todo.pop()
            if module in seen:
                continue
            seen.add(module)
            found.add((module, MODULE))
            for name in self.names(module) | {"__getattr__"}:
                for ref in self.find(module, name):
                    if ref.kind == MODULE_OBJECT:
                        todo.append(ref.path)
                    elif ref.kind != UNRESOLVED:
                        found.add(self._used(ref.node))
        return found

    def _subclasses_used(self, path: str, qualname: str) -> set[Node]:
        """`X.__subclasses__()` reaches the members of every class below X."""
        found: set[Node] = set()
        for use in self.files[path].facts.uses.get(qualname, ()):
            if not use.endswith(".__subclasses__"):
                continue
            root = use.partition(".")[0]
            if root in ("self", "cls"):
                classes = [(path, qualname.rpartition(".")[0])]
            else:
                classes = [r.node for r in self.resolve(path, root) if self._is_class(r.node)]
            found.update(members(sub) for c in classes for sub in self._subclasses(*c))
        return found

    def _called_on_self(self, path: str, method: str) -> set[Node]:
        """What `self.name`, `cls.name` and `super().name` in a method can run."""
        cls = method.rpartition(".")[0]
        own = self.class_methods(path, cls)
        found = set(self._dunders(path, cls))  # what operators on self call
        for use in self.files[path].facts.uses.get(method, ()):
            head, _, rest = use.partition(".")
            name = rest.partition(".")[0]
            if head in ("self", "cls") and name:
                # an override in a subclass runs on an instance of that subclass, and whatever made
                # the instance reached the subclass's members
                if name in own:
                    found.add(own[name])
                if self._is_class((path, f"{cls}.{name}")):  # a nested class
                    found.add(members((path, f"{cls}.{name}")))
            elif head == "super()" and name:
                for base in self.base_nodes(path, cls):
                    inherited = None if isinstance(base, str) else self.class_methods(*base).get(name)
                    if inherited is not None:
                        found.add(inherited)
        return found

    def _dunders(self, path: str, cls: str) -> list[Node]:
        cache = self._resolved.dunders
        if (path, cls) not in cache:
            methods = self.class_methods(path, cls).items()
            cache[(path, cls)] = [n for name, n in methods if name.startswith("__") and name.endswith("__")]
        return cache[(path, cls)]

    def _subclasses(self, path: str, cls: str) -> set[Node]:
        """Every project class below a class."""
        below = self._resolved.below
        if below is None:
            below = self._resolved.below = {}
            for p, entry in self.files.items():
                for s in entry.facts.symbols:
                    if s.kind == "class":
                        for base in self.base_nodes(p, s.qualname):
                            if not isinstance(base, str):
                                below.setdefault(base, []).append((p, s.qualname))
        found: set[Node] = set()
        todo = list(below.get((path, cls), ()))
        while todo:
            sub = todo.pop()
            if sub not in found:
                found.add(sub)
                todo.extend(below.get(sub, ()))
        return found

    def _fixtures(self) -> Fixtures:
        """Every fixture of the project by the name tests request it by, and the autouse ones."""
        if self._resolved.fixtures is None:  # from the symbols and decorators: bindings
            self._resolved.fixtures = self._find_fixtures()
        return self._resolved.fixtures

    def _find_fixtures(self) -> Fixtures:
        found = Fixtures({}, [], set())
        for path, entry in self.files.items():
            for s in entry.facts.symbols:
                if s.kind in ("function", "method") and is_fixture(s):
                    node = (path, s.qualname)
                    named = next((m.group(1) for d in s.decorators if (m := _FIXTURE_NAME.search(d))), None)
                    found.by_name.setdefault(named or s.qualname.rpartition(".")[2], []).append(node)
                    found.nodes.add(node)
                    if any("autouse=True" in d.replace(" ", "") for d in s.decorators):
                        found.autouse.append(node)
        return found

    def _add_fixtures(self, graph: dict[Node, set[Node]], path: str, fixtures: Fixtures) -> None:
        """pytest passes fixtures by parameter name: a test or fixture reaches every fixture of the
        name it can see. Tests reach the autouse fixtures, the module-level code and the pytest_*
        hooks of the conftests above them."""
        test_code = self.test_code(path)
        sees = self._sees(path)
        for qualname, params in self.files[path].facts.params.items():
            if test_code or (path, qualname) in fixtures.nodes:
                found = [n for p in params for n in fixtures.by_name.get(p, ()) if sees(n[0])]
                graph.setdefault((path, qualname), set()).update(found)
        if self.is_test_file(path):
            edges = graph.setdefault((path, MODULE), set())
            edges.update(n for n in fixtures.autouse if sees(n[0]))
            for conftest in self.conftests_for(path):
                edges.add((conftest, MODULE))
                edges.update(
                    (conftest, s.qualname)
                    for s in self.files[conftest].facts.symbols
                    if s.qualname.startswith("pytest_")
                )

    def _sees(self, path: str) -> Callable[[str], bool]:
        """Whether a fixture in a file can be requested from `path`."""
        scope = [path, *self.conftests_for(path)]
        files = set(scope).union(*(self.imported(p) for p in scope))
        below = _directory(path) if _is_conftest(path) else None

        def sees(fixture_file: str) -> bool:
            return (
                fixture_file in files
                # fixtures outside tests and conftests are plugins: anyone may see them
                or not self.test_code(fixture_file)
                # a conftest's fixture may request one that a test module below overrides
                or (below is not None and fixture_file.startswith(below))
            )

        return sees

    def _add_missing(self, graph: dict[Node, set[Node]], done: Collection[Node]) -> None:
        """What each unresolved name `graph` leads to and `done` has no edges for may be. A name
        missing from a module: anything the module's imports lead to, and for a package any of its
        modules (a lazy import); a module that is not there: anything in the project but tests; a
        module used as a value: any of its names."""
        missing = {n for edges in graph.values() for n in edges if missing_name(n) is not None} - set(done)
        sources = {p for p in self.files if not self.test_code(p)}
        for node in missing:
            path = node[0]
            if missing_name(node) == ANY_NAME:
                graph[node] = set(self._everything(path))
            else:  # tests and conftests are no module's names
                graph[node] = {(p, ANY) for p in (self._scope(path) & sources if path else sources)}
        for path in {p for node in missing for p, q in graph[node] if q == ANY and (p, ANY) not in done}:
            graph[(path, ANY)] = {self._used((path, s.qualname)) for s in self.files[path].facts.symbols}

    def _scope(self, path: str) -> set[str]:
        """The files a module can get a name from: those it imports, through their imports too, and
        a package's own modules."""
        found: set[str] = set()
        todo = [path]
        if PurePosixPath(path).name == "__init__.py":
            todo += [p for p in self.files if p.startswith(_directory(path))]
        while todo:
            p = todo.pop()
            if p not in found:
                found.add(p)
                todo.extend(self.imported(p))
        return found

    def restore(self, parts: dict[str, bytes]) -> None:
        """Take a graph the store kept (`unsaved`) if it holds for the files now: every file is the
        same or was edited without changing the names it binds; the edges of files that now use
        other names are built again (as after update()). Saved parts that do not fit are ignored."""
        saved = Saved.load(parts)
        if saved is None or saved.key != self._key() or saved.files.keys() != self.files.keys():
            return
        stale = set()
        for path, (digest, binds, uses) in saved.files.items():
            entry = self.files[path]
            if entry.digest == digest:
                continue
            if bindings_digest(entry.facts) != binds:
                return
            if uses_digest(entry.facts) != uses:
                stale.add(path)
        self.invalidate()
        self._saved, self._stale = saved, stale

    def unsaved(self) -> dict[str, bytes] | None:
        """The graph in the store's form (for `restore`), built whole if need be, unless the store
        has one that holds (restored, or returned here since it was last built): then None."""
        if self._saved is not None or (self._graph is not None and not self._built):
            return None
        graph = self.graph()
        self._built = False
        return Saved.of(self._key(), self.files, graph, self.reverse()).dump()

    def _key(self) -> str:
        # facts of the same bytes are the same for the same tracefix, parser and grammar
        parser = (tree_sitter.__version__, PYTHON.semantic_version, FACTS_VERSION)
        layout = (sys.byteorder, array("I").itemsize)
        return repr((__version__, GRAPH_VERSION, parser, sys.version_info[:2], layout, self.config))

    def _sources(self) -> Callable[[Node], Iterable[Node]]:
        """The nodes with an edge to a node: from a saved graph that holds, without building one."""
        if self._saved is not None and not self._stale:
            return self._saved.sources
        reverse = self.reverse()
        return lambda node: reverse.get(node, ())

    def tests_reaching(self, targets: set[Node]) -> dict[str, list[Node]]:
        """nodeid → a path of nodes from the test to one of `targets` (for explanations)."""
        sources = self._sources()
        parent: dict[Node, Node | None] = dict.fromkeys(targets)
        queue = deque(targets)
        while queue:
            node = queue.popleft()
            for src in sources(node):
                if src not in parent:
                    parent[src] = node
                    queue.append(src)
        found: dict[str, list[Node]] = {}
        for test in self.tests():
            # an inherited test runs the mixin's method on its own class (its setUp, its fixtures)
            owners = [test.node] + ([(test.path, test.qualname.rpartition(".")[0])] if test.source else [])
            start = next((n for n in owners if n in parent), None)
            if start is not None:
                chain = [start]
                while (step := parent[chain[-1]]) is not None:
                    chain.append(step)
                found[test.nodeid] = chain
        return found


class Saved:
    """The graph as the store keeps it: each node once, in order, and its edges both ways as
    compressed sparse rows of node numbers; `files`: path → (digest, bindings_digest, uses_digest)
    of each file it was built from."""

    def __init__(self, key: str, files: dict[str, list[str]], nodes: list[Node], rows: dict[str, array]):
        self.key, self.files, self.nodes, self.rows = key, files, nodes, rows
        self._numbers: dict[Node, int] | None = None

    @classmethod
    def of(cls, key: str, files: dict, graph: dict[Node, set[Node]], reverse: dict[Node, set[Node]]) -> Saved:
        numbers = {n: i for i, n in enumerate(graph)}  # first the nodes graph() made entries for
        forward = [[numbers.setdefault(d, len(numbers)) for d in dsts] for dsts in graph.values()]
        nodes = list(numbers)
        backward = [[numbers[s] for s in reverse.get(n, ())] for n in nodes]
        stamps = {p: [e.digest, bindings_digest(e.facts), uses_digest(e.facts)] for p, e in files.items()}
        return cls(key, stamps, nodes, {**_rows("forward", forward), **_rows("backward", backward)})

    def dump(self) -> dict[str, bytes]:
        paths = list(dict.fromkeys(p for p, _ in self.nodes))
        number = {p: i for i, p in enumerate(paths)}
        head = {
            "key": self.key,
            "files": self.files,
            "paths": paths,
            "nodes": [[number[p], q] for p, q in self.nodes],
        }
        return {"head": json.dumps(head).encode(), **{k: v.tobytes() for k, v in self.rows.items()}}

    @classmethod
    def load(cls, parts: dict[str, bytes]) -> Saved | None:
        try:
            head = json.loads(parts["head"])
            key, paths = head["key"], head["paths"]
            nodes = [(paths[p], q) for p, q in head["nodes"]]
            files = {p: list(v) for p, v in head["files"].items()}
            rows = {}
            for name in ROWS:
                rows[name] = array("I")
                rows[name].frombytes(parts[name])
        except (KeyError, ValueError, TypeError, IndexError, AttributeError):
            return None
        texts = [key, *(t for node in nodes for t in node), *files, *(x for v in files.values() for x in v)]
        if not all(isinstance(t, str) for t in texts) or any(len(v) != 3 for v in files.values()):
            return None
        for way in ("forward", "backward"):
            ends, targets = rows[f"{way}_ends"], rows[way]
            if not (
                0 < len(ends) <= len(nodes) + 1
                and ends[0] == 0
                and ends[-1] == len(targets)
                and all(a <= b for a, b in pairwise(ends))
                and max(targets, default=0) < len(nodes)
            ):
                return None  # not one this code wrote
        if len(rows["backward_ends"]) != len(nodes) + 1:
            return None
        return cls(key, files, nodes, rows)

    def sources(self, node: Node) -> list[Node]:
        return self._edges("backward", node)

    def forward(self) -> dict[Node, set[Node]]:
        return self._dict("forward")

    def backward(self) -> dict[Node, set[Node]]:
        return self._dict("backward")

    def _edges(self, way: str, node: Node) -> list[Node]:
        if self._numbers is None:
            self._numbers = {n: i for i, n in enumerate(self.nodes)}
        i = self._numbers.get(node)
        if i is None:
            return []
        ends, targets = self.rows[f"{way}_ends"], self.rows[way]
        if i + 1 >= len(ends):  # a node with no entry of that way
            return []
        return [self.nodes[j] for j in targets[ends[i] : ends[i + 1]]]

    def _dict(self, way: str) -> dict[Node, set[Node]]:
        ends, targets, nodes = self.rows[f"{way}_ends"], self.rows[way], self.nodes
        # as graph() builds them: a forward entry for each node it made (the first ones), a
        # backward one for each node with sources
        return {
            nodes[i]: {nodes[j] for j in targets[ends[i] : ends[i + 1]]}
            for i in range(len(ends) - 1)
            if way == "forward" or ends[i + 1] > ends[i]
        }


ROWS = ("forward_ends", "forward", "backward_ends", "backward")


def _rows(way: str, lists: list[list[int]]) -> dict[str, array]:
    ends = array("I", [0])
    targets = array("I")
    for items in lists:
        targets.extend(items)
        ends.append(len(targets))
    return {f"{way}_ends": ends, way: targets}


@dataclass
class Fixtures:
    by_name: dict[str, list[Node]]  # the name tests request it by → fixtures
    autouse: list[Node]
    nodes: set[Node]


def derived(node: Node) -> bool:
    """A node the graph makes (an unresolved name, every symbol of a file), not one of a file's own."""
    return node[1] == ANY or node[1].startswith(MISSING)


def _is_conftest(path: str) -> bool:
    return PurePosixPath(path).name == "conftest.py"


def _directory(path: str) -> str:
    """ "a/b/" for "a/b/c.py"; "" at the root."""
    parent = str(PurePosixPath(path).parent)
    return "" if parent == "." else parent + "/"
