"""The tests pytest would collect, found from the index's facts and the pytest configuration."""

from __future__ import annotations

from dataclasses import dataclass

from tracefix.index.files import Node
from tracefix.index.modules import NODE, ModuleResolution
from tracefix.parsing.symbols import Facts, Symbol


@dataclass(frozen=True)
class TestItem:
    nodeid: str
    path: str
    qualname: str  # "test_x" or "TestCart.test_x", as pytest names it
    line: int  # where its name is, 1-based
    end_line: int  # the last line of its def (of its class, for an inherited test)
    source: Node | None = None  # where an inherited test's code is: (path, "Mixin.test_x")

    @property
    def node(self) -> Node:
        return self.source or (self.path, self.qualname)


class TestDiscovery(ModuleResolution):
    def tests(self, path: str | None = None) -> list[TestItem]:
        """The tests of one file, or of all; kept per file until that file or the graph changes."""
        paths = [path] if path else sorted(self.files)
        items: list[TestItem] = []
        for p in paths:
            if p not in self._tests:
                entry = self.files.get(p)
                self._tests[p] = self._tests_in(p, entry.facts) if entry is not None and self.is_test_file(p) else []
            items.extend(self._tests[p])
        return items

    def _tests_in(self, path: str, f: Facts) -> list[TestItem]:
        cfg = self.config
        items = [
            TestItem(f"{path}::{s.qualname}", path, s.qualname, s.name_line, s.end_line)
            for s in f.symbols
            if s.kind == "function" and cfg.is_test_function(s.qualname) and not is_fixture(s)
        ]
        for cls in (s for s in f.symbols if s.kind == "class" and "." not in s.qualname):
            methods = self.class_methods(path, cls.qualname)  # own and inherited: name → defining node
            unittest = any(q.rpartition(".")[2] == "TestCase" for q in self._ancestors(path, cls.qualname))
            if not unittest and (not cfg.is_test_class(cls.qualname) or "__init__" in methods):
                continue
            for name, (where, qualname) in methods.items():
                if name.startswith("test") if unittest else cfg.is_test_function(name):
                    symbol = self.symbol(where, qualname)
                    inherited = (where, qualname) != (path, f"{cls.qualname}.{name}")
                    own = symbol if symbol is not None and not inherited else cls
                    items.append(
                        TestItem(
                            f"{path}::{cls.qualname}::{name}",
                            path,
                            f"{cls.qualname}.{name}",
                            own.name_line,
                            own.end_line,
                            (where, qualname) if inherited else None,
                        )
                    )
        return sorted(items, key=lambda t: t.line)

    def base_nodes(self, path: str, cls: str) -> list[Node | str]:
        """A class's bases: project classes as nodes, anything else as its written name."""
        cache = self._resolved.bases
        if (path, cls) not in cache:
            cache[(path, cls)] = self._base_nodes(path, cls)
        return cache[(path, cls)]

    def _base_nodes(self, path: str, cls: str) -> list[Node | str]:
        entry = self.files.get(path)
        if entry is None:
            return []
        found: list[Node | str] = []
        for base in entry.facts.bases.get(cls, ()):
            nested = self.symbol(path, base)  # `Outer.Inner`
            classes = [(path, base)] if nested is not None and nested.kind == "class" else []
            for ref in self.resolve(path, base):  # all of them: a name may be bound twice
                symbol = self.symbol(*ref.node) if ref.kind == NODE else None
                if symbol is not None and symbol.kind == "class" and ref.node not in classes:
                    classes.append(ref.node)
            found.extend(classes or [base])
        return found

    def _ancestors(self, path: str, cls: str, seen: set | None = None) -> list[str]:
        """Qualified names of all ancestors (project classes as path::name, others as written)."""
        seen = set() if seen is None else seen
        names = []
        for base in self.base_nodes(path, cls):
            if isinstance(base, str):
                names.append(base)
            elif base not in seen:
                seen.add(base)
                names.append(base[1])
                names += self._ancestors(base[0], base[1], seen)
        return names

    def class_methods(self, path: str, cls: str) -> dict[str, Node]:
        """Method name → the node defining it, following project bases like Python's MRO would."""
        cache = self._resolved.methods
        if (path, cls) not in cache:
            cache[(path, cls)] = {}  # a class that is its own ancestor ends here
            cache[(path, cls)] = self._methods(path, cls)
        return cache[(path, cls)]

    def _methods(self, path: str, cls: str) -> dict[str, Node]:
        entry = self.files.get(path)
        found: dict[str, Node] = {}
        for s in entry.facts.symbols if entry else ():
            if s.kind == "method" and s.qualname.rpartition(".")[0] == cls:
                found[s.qualname.rpartition(".")[2]] = (path, s.qualname)
        for base in self.base_nodes(path, cls):
            if not isinstance(base, str):
                for name, node in self.class_methods(*base).items():
                    found.setdefault(name, node)
        return found

    def test_for(self, nodeid: str) -> TestItem | None:
        base = nodeid.split("[")[0]
        path = base.split("::")[0]
        return next((t for t in self.tests(path) if t.nodeid == base), None)


def is_fixture(s: Symbol) -> bool:
    return any(d.split("(")[0].endswith("fixture") for d in s.decorators)
