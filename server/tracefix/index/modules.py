"""Module names of the project's files, and what the names a module binds or imports stand for.

A name resolves through import statements, re-exports (`from .core import f as g` in a package's
`__init__`), star imports (honouring `__all__`) and attributes of modules (`pkg.sub.f`). A name
that should be in a project module and is not (bound by `globals()`, by a star import of a module
the index cannot find, by a module that is not there) resolves to an unresolved `Ref`: the graph
then selects conservatively.
"""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, NamedTuple

from tracefix.index.files import IndexFiles, Node
from tracefix.index.pytestconfig import PytestConfig
from tracefix.parsing.symbols import MODULE, STAR

if TYPE_CHECKING:
    from tracefix.index.graph import Fixtures

NODE, MODULE_OBJECT, UNRESOLVED = "node", "module", "unresolved"
# attributes every module has
_SET_BY_IMPORT = {"__name__", "__file__", "__doc__", "__path__", "__spec__", "__loader__", "__package__", "__cached__"}


class Ref(NamedTuple):
    """What a name stands for: a node of the graph (a symbol, a module-level variable, a module's
    code), a module object (its attributes are its module's names), or a name the index could not
    find: in module `path`, or ("", dotted name) for a project module that is not there."""

    path: str
    name: str
    kind: str = NODE

    @property
    def node(self) -> Node:
        return (self.path, self.name)


class Imports(NamedTuple):
    """One file's import statements by what they bind."""

    bound: dict[str, list[tuple[str, str | None]]]  # name → (module, its attribute; None: the module)
    stars: list[str]  # modules star-imported
    modules: list[str]  # every module the file imports, dotted


class ModuleResolution(IndexFiles):
    def __init__(self, root: Path, config: PytestConfig):
        super().__init__(root, config)
        self._resolved = _Resolved()

    def invalidate(self) -> None:
        super().invalidate()
        self._resolved = _Resolved()

    def test_code(self, path: str) -> bool:
        """A test module or a conftest."""
        cache = self._resolved.test_code
        if path not in cache:
            cache[path] = self.is_test_file(path) or PurePosixPath(path).name == "conftest.py"
        return cache[path]

    def source_roots(self) -> list[str]:
        roots = [""]
        if any(p.startswith("src/") for p in self.files):
            roots.append("src")
        roots.extend(p.strip("/") for p in self.config.pythonpath if p not in (".", ""))
        # pytest's default rootdir-relative import mode puts each test's first package-less
        # directory on sys.path
        for path in self.files:
            if self.is_test_file(path):
                roots.append(self._basedir(path))
        return list(dict.fromkeys(roots))

    def _basedir(self, path: str) -> str:
        parent = PurePosixPath(path).parent
        while str(parent) != "." and f"{parent}/__init__.py" in self.files:
            parent = parent.parent
        return "" if str(parent) == "." else str(parent)

    def modules(self) -> dict[str, str]:
        """Dotted module name → file path; a namespace package (a directory with no __init__.py)
        → the directory's path with a trailing slash."""
        if self._modules is None:
            names: dict[str, str] = {}
            directories: dict[str, str] = {}
            for root in self.source_roots():
                prefix = root + "/" if root else ""
                for path in self.files:
                    if not path.startswith(prefix):
                        continue
                    parts = list(PurePosixPath(path[len(prefix) :]).with_suffix("").parts)
                    if parts[-1] == "__init__":
                        parts.pop()
                    if parts and all(p.isidentifier() for p in parts):
                        names.setdefault(".".join(parts), path)
                        for i in range(1, len(parts)):
                            directories.setdefault(".".join(parts[:i]), prefix + "/".join(parts[:i]) + "/")
            for name, directory in directories.items():
                names.setdefault(name, directory)
            self._modules = names
        return self._modules

    def module_name(self, path: str) -> str | None:
        names = self._resolved.module_names
        if not names:
            for name, p in self.modules().items():
                names.setdefault(p, name)
        return names.get(path)

    def _module_paths(self, dotted: str) -> list[str]:
        """Files of a dotted module name; failing that, of the modules whose name ends with it below a
        directory that is no package (one a test or conftest puts on sys.path)."""
        cache = self._resolved.paths
        if dotted not in cache:
            cache[dotted] = self._find_module(dotted)
        return cache[dotted]

    def _find_module(self, dotted: str) -> list[str]:
        modules = self.modules()
        if dotted in modules:
            return [modules[dotted]]
        if dotted.partition(".")[0] in sys.stdlib_module_names:
            return []
        cache = self._resolved
        if not cache.by_last:
            for name in modules:
                cache.by_last.setdefault(name.rpartition(".")[2], []).append(name)
        # only below a directory that is no package: inside one, `import numpy` is never ./numpy.py
        return [
            modules[n]
            for n in cache.by_last.get(dotted.rpartition(".")[2], ())
            if n.endswith("." + dotted) and modules.get(n[: -len(dotted) - 1], "").endswith("/")
        ]

    def _in_project(self, dotted: str) -> bool:
        """Whether a module that is not found would have been one of the project's."""
        if not self._resolved.tops:
            self._resolved.tops = {name.partition(".")[0] for name in self.modules()}
        return dotted.partition(".")[0] in self._resolved.tops

    def _absolute(self, importer: str, module: str, level: int) -> str:
        if not level:
            return module
        base = PurePosixPath(importer).parent
        for _ in range(level - 1):
            base = base.parent
        package = self.module_name(f"{base}/__init__.py") if str(base) != "." else None
        name = package if package is not None else ".".join(p for p in base.parts if p != ".")
        return ".".join(p for p in (name, module) if p)

    def imports(self, path: str) -> Imports:
        found = self._resolved.imports.get(path)
        if found is None:
            found = Imports({}, [], [])
            entry = self.files.get(path)
            for imp in entry.facts.imports if entry else ():
                module = self._absolute(path, imp.module, imp.level)
                if not imp.names:
                    # `import a.b.c` binds a and imports a, a.b, a.b.c; `import a.b as c` binds c to a.b
                    parts = module.split(".")
                    if imp.alias:
                        found.bound.setdefault(imp.alias, []).append((module, None))
                    else:
                        found.bound.setdefault(parts[0], []).append((parts[0], None))
                    found.modules.extend(".".join(parts[: i + 1]) for i in range(len(parts)))
                    continue
                found.modules.append(module)
                for name, bound in imp.names:
                    if (name, bound) == STAR:
                        found.stars.append(module)
                    else:
                        found.bound.setdefault(bound, []).append((module, name))
                        found.modules.append(f"{module}.{name}")
            self._resolved.imports[path] = found
        return found

    def imported(self, path: str) -> set[str]:
        """Files of the project modules that importing `path` imports."""
        cache = self._resolved.imported
        if path not in cache:
            cache[path] = {p for m in self.imports(path).modules for p in self._module_paths(m)} - {path}
        return cache[path]

    def _module(self, dotted: str) -> list[Ref]:
        """The module object a dotted name stands for: unresolved when it would be the project's."""
        paths = self._module_paths(dotted)
        if paths:
            return [Ref(p, MODULE, MODULE_OBJECT) for p in paths]
        return [Ref("", dotted, UNRESOLVED)] if self._in_project(dotted) else []

    def _from(self, dotted: str, name: str) -> list[Ref]:
        """What `from <dotted> import <name>` binds: the module's attribute, or its submodule."""
        paths = self._module_paths(dotted)
        if not paths:
            return [Ref("", f"{dotted}.{name}", UNRESOLVED)] if self._in_project(dotted) else []
        # the package's own binding wins over its submodule of that name (`from .sympify import
        # sympify` in sympy.core), as it does once both are imported
        found = [r for p in paths for r in self.find(p, name) or self._submodule(p, name)]
        return list(dict.fromkeys(found)) or [r for p in paths for r in self.attribute(p, name)]

    def attribute(self, path: str, name: str) -> list[Ref]:
        """What attribute `name` of the module in `path` stands for."""
        found = self.find(path, name)
        if found:
            return found
        if name == "__dict__":
            return [Ref(path, MODULE, MODULE_OBJECT)]  # the module's names, all of them
        if name in _SET_BY_IMPORT:
            return [Ref(path, MODULE)]
        imports = self.imports(path)
        if name in imports.bound:
            return []  # imported from a module outside the project
        entry = self.files.get(path)
        if entry is not None and "__getattr__" in entry.symbols:
            return [Ref(path, name, UNRESOLVED)]  # its module-level __getattr__ answers: with anything
        if any(not self._module_paths(m) and not self._in_project(m) for m in imports.stars):
            return []  # may come from a module outside the project
        return [Ref(path, name, UNRESOLVED)]

    def find(self, path: str, name: str) -> list[Ref]:
        """What a module's own namespace binds to `name` (empty: nothing the index can see)."""
        key = (path, name)
        cached = self._resolved.found.get(key)
        if cached is not None:
            return cached
        if key in self._resolved.finding:  # an import cycle: what it leads to is found on the way in
            return []
        self._resolved.finding.add(key)
        try:
            found = self._find(path, name)
        finally:
            self._resolved.finding.discard(key)
        self._resolved.found[key] = found
        return found

    def _find(self, path: str, name: str) -> list[Ref]:
        entry = self.files.get(path)
        if entry is None:
            return []
        f = entry.facts
        found: list[Ref] = []
        symbol = entry.symbols.get(name)
        if symbol is not None and symbol.kind != "module":
            found.append(Ref(path, name))
        if name in f.assigned:
            found.append(Ref(path, name))  # a variable: the graph has a node for it
        imports = self.imports(path)
        for module, attr in imports.bound.get(name, ()):
            found.extend(self._module(module) if attr is None else self._from(module, attr))
        for module in imports.stars:
            for source in self._module_paths(module):
                if self._star_exports(source, name):
                    found.extend(self.find(source, name) or self._submodule(source, name))
        if not found:  # `pkg.sub` once something imported pkg.sub
            found.extend(self._submodule(path, name))
        return list(dict.fromkeys(found))

    def _submodule(self, path: str, name: str) -> list[Ref]:
        if not (path.endswith(("/__init__.py", "/")) or path == "__init__.py"):
            return []
        package = self.module_name(path)
        sub = self.modules().get(f"{package}.{name}") if package is not None else None
        return [Ref(sub, MODULE, MODULE_OBJECT)] if sub else []

    def _star_exports(self, path: str, name: str) -> bool:
        """Whether `from <module in path> import *` takes `name`."""
        entry = self.files.get(path)
        if entry is None:
            return False
        if entry.facts.exports is not None:
            return name in entry.facts.exports
        if "__all__" in self.names(path):  # __all__ built at run time: it may hold any name
            return True
        return not name.startswith("_")

    def names(self, path: str) -> set[str]:
        """Every name the module in `path` binds that the index can see."""
        cached = self._resolved.names_of.get(path)
        if cached is None:
            cached = self._resolved.names_of[path] = self._names(path, frozenset())
        return cached

    def _names(self, path: str, within: frozenset[str]) -> set[str]:
        entry = self.files.get(path)
        if entry is None:
            return set()
        within |= {path}
        f = entry.facts
        names = {s.qualname for s in f.symbols if s.kind != "module" and "." not in s.qualname}
        names |= f.assigned
        imports = self.imports(path)
        names |= set(imports.bound)
        for module in imports.stars:
            for source in self._module_paths(module):
                if source in within:  # an import cycle
                    continue
                exports = self.files[source].facts.exports if source in self.files else None
                star = self._names(source, within)
                if exports is not None:
                    names |= set(exports)
                else:
                    names |= star if "__all__" in star else {n for n in star if not n.startswith("_")}
        return names

    def unresolved_stars(self, path: str) -> list[str]:
        """Modules `path` star-imports that would be the project's and are not found."""
        return [m for m in self.imports(path).stars if not self._module_paths(m) and self._in_project(m)]

    def resolve(self, path: str, dotted: str) -> list[Ref]:
        """What a name as used in `path` ("x", or "a.b.c" for attributes) stands for: the modules it
        goes through as module-level code, then what it ends at. Empty for names the module does not
        bind (locals, builtins) and for things outside the project."""
        cache = self._resolved.resolved
        if (path, dotted) not in cache:
            cache[(path, dotted)] = self._resolve(path, dotted)
        return cache[(path, dotted)]

    def _resolve(self, path: str, dotted: str) -> list[Ref]:
        root, *attrs = dotted.split(".")
        found: list[Ref] = []
        refs = self.find(path, root)
        for attr in attrs:
            modules = [r for r in refs if r.kind == MODULE_OBJECT]
            found.extend(r for r in refs if r.kind != MODULE_OBJECT)  # a class's attributes are the class's
            found.extend(Ref(r.path, MODULE) for r in modules)
            refs = list(dict.fromkeys(x for r in modules for x in self.attribute(r.path, attr)))
            if not refs:
                break
        return list(dict.fromkeys(found + refs))


class _Resolved:
    """What is derived from the names the files bind, computed as needed (thrown away when they
    change: IndexFiles.invalidate)."""

    def __init__(self) -> None:
        self.module_names: dict[str, str] = {}  # path → dotted name
        self.test_code: dict[str, bool] = {}  # path → a test module or a conftest
        self.tops: set[str] = set()  # first parts of the project's module names
        self.imports: dict[str, Imports] = {}
        self.found: dict[tuple[str, str], list[Ref]] = {}
        self.finding: set[tuple[str, str]] = set()
        self.names_of: dict[str, set[str]] = {}
        self.bases: dict[Node, list[Node | str]] = {}  # class → its bases
        self.methods: dict[Node, dict[str, Node]] = {}  # class → its methods, own and inherited
        self.below: dict[Node, list[Node]] | None = None  # class → the classes that name it as a base
        self.dunders: dict[Node, list[Node]] = {}  # class → its dunder methods, own and inherited
        self.by_last: dict[str, list[str]] = {}  # last part of a module name → the module names
        self.paths: dict[str, list[str]] = {}  # dotted name → the files of that module
        self.imported: dict[str, set[str]] = {}  # file → the project files it imports
        self.resolved: dict[tuple[str, str], list[Ref]] = {}  # (file, dotted name used there) → what it is
        self.fixtures: Fixtures | None = None  # the project's fixtures, once found
