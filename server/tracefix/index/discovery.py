"""The tests pytest would collect, found from the index's facts and the pytest configuration."""

from __future__ import annotations

from dataclasses import dataclass

from tracefix.index.files import Node
from tracefix.index.modules import ModuleResolution
from tracefix.parsing.symbols import MODULE, Facts, Symbol


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
            if s.kind == "function" and cfg.is_test_function(s.qualname) and not _is_fixture(s)
        ]
        for cls in (s for s in f.symbols if s.kind == "class" and "." not in s.qualname):
            methods = self._methods(path, cls.qualname)  # own and inherited: name → defining node
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

    def _base_nodes(self, path: str, cls: str) -> list[Node | str]:
        """A class's bases: project classes as nodes, anything else as its written name."""
        entry = self.files.get(path)
        if entry is None:
            return []
        bound, _ = self.bindings(path, entry.facts)
        found: list[Node | str] = []
        for base in entry.facts.bases.get(cls, ()):
            head, _, attr = base.rpartition(".")
            if not head and self.symbol(path, base) is not None:
                found.append((path, base))
            elif not head and any(q != MODULE for _, q in bound.get(base, ())):
                found.extend(n for n in bound[base] if n[1] != MODULE)
            elif head and any(q == MODULE for _, q in bound.get(head.split(".")[0], ())):
                modules = [p for p, q in bound[head.split(".")[0]] if q == MODULE]
                found.extend((p, attr) for p in modules if self.symbol(p, attr) is not None)
                found.append(base)
            else:
                found.append(base)
        return found

    def _ancestors(self, path: str, cls: str, seen: set | None = None) -> list[str]:
        """Qualified names of all ancestors (project classes as path::name, others as written)."""
        seen = set() if seen is None else seen
        names = []
        for base in self._base_nodes(path, cls):
            if isinstance(base, str):
                names.append(base)
            elif base not in seen:
                seen.add(base)
                names.append(base[1])
                names += self._ancestors(base[0], base[1], seen)
        return names

    def _methods(self, path: str, cls: str, seen: set | None = None) -> dict[str, Node]:
        """Method name → the node defining it, following project bases like Python's MRO would."""
        seen = set() if seen is None else seen
        seen.add((path, cls))
        entry = self.files.get(path)
        found: dict[str, Node] = {}
        for s in entry.facts.symbols if entry else ():
            if s.kind == "method" and s.qualname.rpartition(".")[0] == cls:
                found[s.qualname.rpartition(".")[2]] = (path, s.qualname)
        for base in self._base_nodes(path, cls):
            if not isinstance(base, str) and base not in seen:
                for name, node in self._methods(base[0], base[1], seen).items():
                    found.setdefault(name, node)
        return found

    def test_for(self, nodeid: str) -> TestItem | None:
        base = nodeid.split("[")[0]
        path = base.split("::")[0]
        return next((t for t in self.tests(path) if t.nodeid == base), None)


def _is_fixture(s: Symbol) -> bool:
    return any(d.split("(")[0].endswith("fixture") for d in s.decorators)
