"""The project index: every Python file's facts, the tests pytest would collect, and a static
name graph from each test to the project symbols it can reach."""

from __future__ import annotations

import hashlib
import os
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from tracefix.index.pytestconfig import PytestConfig
from tracefix.parsing.document import parse
from tracefix.parsing.symbols import MODULE, Facts, Import, Symbol, facts

IGNORED_DIRS = {".git", ".hg", ".svn", "__pycache__", ".tracefix", "node_modules", ".tox", ".nox",
                ".mypy_cache", ".pytest_cache", ".ruff_cache", "site-packages"}
MAX_FILE_BYTES = 2_000_000  # larger files are generated data, not code worth indexing

Node = tuple[str, str]  # (path relative to root, qualname)
FACTS_VERSION = 2  # stored facts of another version are parsed again


@dataclass(frozen=True)
class TestItem:
    nodeid: str
    path: str
    qualname: str  # "test_x" or "TestCart.test_x", as pytest names it
    line: int
    source: Node | None = None  # where an inherited test's code is: (path, "Mixin.test_x")

    @property
    def node(self) -> Node:
        return self.source or (self.path, self.qualname)


def is_ignored_dir(name: str) -> bool:
    return name in IGNORED_DIRS or name.endswith(".egg-info")


def is_venv(path: Path) -> bool:
    return (path / "pyvenv.cfg").exists()


def _facts_to_json(f: Facts) -> dict:
    return {
        "symbols": [asdict(s) for s in f.symbols],
        "imports": [asdict(i) for i in f.imports],
        "uses": {k: sorted(v) for k, v in f.uses.items()},
        "params": {k: list(v) for k, v in f.params.items()},
        "bases": {k: list(v) for k, v in f.bases.items()},
        "version": FACTS_VERSION,
    }


def _facts_from_json(d: dict) -> Facts:
    symbols = [Symbol(**{**s, "decorators": tuple(s["decorators"])}) for s in d["symbols"]]
    imports = [Import(i["module"], tuple(i["names"]), i["level"], i["alias"]) for i in d["imports"]]
    return Facts(symbols, imports, {k: set(v) for k, v in d["uses"].items()},
                 {k: tuple(v) for k, v in d["params"].items()}, {k: tuple(v) for k, v in d["bases"].items()})


def digest_bytes(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


@dataclass
class FileEntry:
    path: str
    mtime_ns: int
    size: int
    digest: str
    facts: Facts


class ProjectIndex:
    def __init__(self, root: Path, config: PytestConfig):
        self.root = root
        self.config = config
        self.files: dict[str, FileEntry] = {}
        self._graph: dict[Node, set[Node]] | None = None
        self._reverse: dict[Node, set[Node]] | None = None
        self._modules: dict[str, str] | None = None

    # building and updating
    def scan(self) -> dict[str, tuple[int, int]]:
        """All indexable .py files on disk: relpath → (mtime_ns, size)."""
        found = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            base = Path(dirpath)
            dirnames[:] = [
                d for d in dirnames
                if not is_ignored_dir(d) and not d.startswith(".") and not is_venv(base / d)
            ]
            for name in filenames:
                if name.endswith(".py"):
                    path = base / name
                    try:
                        st = path.stat()
                    except OSError:
                        continue
                    if st.st_size <= MAX_FILE_BYTES:
                        found[path.relative_to(self.root).as_posix()] = (st.st_mtime_ns, st.st_size)
        return found

    def load(self, stored: dict[str, tuple[int, int, str, dict]]) -> tuple[list, list[str]]:
        """Reuse stored facts for files whose mtime and size match; parse the rest.

        Returns (rows to persist, removed paths)."""
        on_disk = self.scan()
        rows = []
        for path, (mtime, size) in on_disk.items():
            old = stored.get(path)
            if old and old[0] == mtime and old[1] == size and old[3].get("version") == FACTS_VERSION:
                self.files[path] = FileEntry(path, mtime, size, old[2], _facts_from_json(old[3]))
                continue
            entry = self.update_from_disk(path)
            if entry is not None:
                rows.append(self.row(entry))
        removed = [p for p in stored if p not in on_disk]
        self.invalidate()
        return rows, removed

    def update_from_disk(self, path: str) -> FileEntry | None:
        full = self.root / path
        try:
            st = full.stat()
            data = full.read_bytes()
        except OSError:
            self.remove(path)
            return None
        return self.update(path, data, st.st_mtime_ns, st.st_size)

    def update(self, path: str, data: bytes, mtime_ns: int = 0, size: int = 0) -> FileEntry:
        tree = parse(data)
        entry = FileEntry(path, mtime_ns, size or len(data), digest_bytes(data), facts(tree, data))
        old = self.files.get(path)
        self.files[path] = entry
        if old is None or _shape(old.facts) != _shape(entry.facts):
            self.invalidate()
        return entry

    def remove(self, path: str) -> None:
        if self.files.pop(path, None) is not None:
            self.invalidate()

    @staticmethod
    def row(entry: FileEntry) -> tuple[str, int, int, str, dict]:
        return (entry.path, entry.mtime_ns, entry.size, entry.digest, _facts_to_json(entry.facts))

    def invalidate(self) -> None:
        self._graph = self._reverse = self._modules = None

    # tests
    def is_test_file(self, path: str) -> bool:
        parts = PurePosixPath(path)
        if not self.config.is_test_file(parts.name):
            return False
        if self.config.testpaths:
            return any(path == t or path.startswith(t.rstrip("/") + "/") for t in self.config.testpaths)
        return not any(self.config.skips_dir(p) for p in parts.parts[:-1])

    def tests(self, path: str | None = None) -> list[TestItem]:
        paths = [path] if path else sorted(self.files)
        items: list[TestItem] = []
        for p in paths:
            entry = self.files.get(p)
            if entry is None or not self.is_test_file(p):
                continue
            items.extend(self._tests_in(p, entry.facts))
        return items

    def _tests_in(self, path: str, f: Facts) -> list[TestItem]:
        cfg = self.config
        items = [TestItem(f"{path}::{s.qualname}", path, s.qualname, s.name_line) for s in f.symbols
                 if s.kind == "function" and cfg.is_test_function(s.qualname) and not _is_fixture(s)]
        for cls in (s for s in f.symbols if s.kind == "class" and "." not in s.qualname):
            methods = self._methods(path, cls.qualname)  # own and inherited: name → defining node
            unittest = any(q.rpartition(".")[2] == "TestCase" for q in self._ancestors(path, cls.qualname))
            if not unittest and (not cfg.is_test_class(cls.qualname) or "__init__" in methods):
                continue
            for name, (where, qualname) in methods.items():
                if (name.startswith("test") if unittest else cfg.is_test_function(name)):
                    symbol = self.symbol(where, qualname)
                    inherited = (where, qualname) != (path, f"{cls.qualname}.{name}")
                    items.append(TestItem(f"{path}::{cls.qualname}::{name}", path, f"{cls.qualname}.{name}",
                                          symbol.name_line if symbol and not inherited else cls.name_line,
                                          (where, qualname) if inherited else None))
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

    def conftests_for(self, path: str) -> list[str]:
        parents = [str(p) for p in PurePosixPath(path).parents]
        return [
            ("" if d == "." else d + "/") + "conftest.py" for d in parents
            if (("" if d == "." else d + "/") + "conftest.py") in self.files
        ]

    def symbol(self, path: str, qualname: str) -> Symbol | None:
        entry = self.files.get(path)
        if entry is None:
            return None
        return next((s for s in entry.facts.symbols if s.qualname == qualname), None)

    def digests(self, path: str) -> dict[str, str]:
        """qualname → digest of the file's symbols. A name defined twice (a property's getter and
        setter) is one node: its digest covers every definition, so code that ran either one sees a
        change to the other."""
        entry = self.files.get(path)
        found: dict[str, list[str]] = {}
        for s in entry.facts.symbols if entry else ():
            found.setdefault(s.qualname, []).append(s.digest)
        return {q: d[0] if len(d) == 1 else digest_bytes("\n".join(d).encode()) for q, d in found.items()}

    def symbol_at(self, path: str, line: int) -> Symbol | None:
        """The innermost function/class/method containing a 1-based line."""
        entry = self.files.get(path)
        if entry is None:
            return None
        best = None
        for s in entry.facts.symbols:
            if s.kind != "module" and s.start_line <= line <= s.end_line:
                if best is None or s.start_line >= best.start_line:
                    best = s
        return best

    # modules
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
        """Dotted module name → file path."""
        if self._modules is None:
            names: dict[str, str] = {}
            for root in self.source_roots():
                prefix = root + "/" if root else ""
                for path in self.files:
                    if not path.startswith(prefix):
                        continue
                    parts = list(PurePosixPath(path[len(prefix):]).with_suffix("").parts)
                    if parts[-1] == "__init__":
                        parts.pop()
                    if parts and all(p.isidentifier() for p in parts):
                        names.setdefault(".".join(parts), path)
            self._modules = names
        return self._modules

    def module_name(self, path: str) -> str | None:
        return next((name for name, p in self.modules().items() if p == path), None)

    def _resolve_module(self, importer: str, imp: Import) -> str | None:
        if imp.level:
            base = PurePosixPath(importer).parent
            for _ in range(imp.level - 1):
                base = base.parent
            package = self.module_name(f"{base}/__init__.py") if str(base) != "." else None
            if package is None:
                name = ".".join(p for p in base.parts if p != ".")
            else:
                name = package
            full = ".".join(p for p in (name, imp.module) if p)
            return full
        return imp.module

    # the static graph
    def graph(self) -> dict[Node, set[Node]]:
        if self._graph is None:
            self._graph = self._build_graph()
            reverse: dict[Node, set[Node]] = {}
            for src, dsts in self._graph.items():
                for dst in dsts:
                    reverse.setdefault(dst, set()).add(src)
            self._reverse = reverse
        return self._graph

    def reverse(self) -> dict[Node, set[Node]]:
        self.graph()
        return self._reverse

    def bindings(self, path: str, f: Facts) -> tuple[dict[str, list[Node]], set[str]]:
        """Names an import binds in `path` → the nodes they stand for; plus star-imported files."""
        modules = self.modules()
        bound: dict[str, list[Node]] = {}
        stars: set[str] = set()
        for imp in f.imports:
            module = self._resolve_module(path, imp)
            if not imp.names:
                # `import a.b.c` binds `a` and imports a, a.b, a.b.c; `import a.b as c` binds c
                parts = module.split(".")
                target_name = imp.alias or parts[0]
                chain = [".".join(parts[: i + 1]) for i in range(len(parts))]
                targets = [(modules[m], MODULE) for m in chain if m in modules]
                if targets:
                    bound.setdefault(target_name, []).extend(targets)
                continue
            for name in imp.names:
                if name == "*":
                    if module in modules:
                        stars.add(modules[module])
                    continue
                sub = f"{module}.{name}" if module else name
                if sub in modules:
                    bound.setdefault(name, []).append((modules[sub], MODULE))
                elif module in modules:
                    bound.setdefault(name, []).append((modules[module], name))
        return bound, stars

    def _build_graph(self) -> dict[Node, set[Node]]:
        graph: dict[Node, set[Node]] = {}
        tops = {p: {s.qualname for s in e.facts.symbols if s.kind != "module" and "." not in s.qualname}
                for p, e in self.files.items()}
        for path, entry in self.files.items():
            f = entry.facts
            bound, stars = self.bindings(path, f)
            module_node = (path, MODULE)
            imported_files = {n[0] for nodes in bound.values() for n in nodes} | stars
            for s in f.symbols:
                node = (path, s.qualname)
                edges = graph.setdefault(node, set())
                if s.kind != "module":
                    edges.add(module_node)  # using a symbol imports its module
                    parent = s.qualname.rpartition(".")[0]
                    if parent:
                        edges.add((path, parent))
                if s.kind == "class":
                    edges.update((path, m.qualname) for m in f.symbols
                                 if m.qualname.startswith(s.qualname + ".") and m.kind == "method")
                for name in f.uses.get(s.qualname, ()):
                    if name in tops[path] and name != s.qualname:
                        edges.add((path, name))
                    for target in bound.get(name, ()):
                        edges.add(target)
                        if target[1] == MODULE:
                            # `mod.attr`: any top-level name of that module used here
                            edges.update((target[0], n) for n in f.uses[s.qualname] & tops[target[0]])
                    for star in stars:
                        if name in tops[star]:
                            edges.add((star, name))
            # importing a module runs the modules it imports
            graph[module_node].update((p, MODULE) for p in imported_files if p != path)
        return graph

    def tests_reaching(self, targets: set[Node]) -> dict[str, list[Node]]:
        """nodeid → a path of nodes from the test to one of `targets` (for explanations)."""
        reverse = self.reverse()
        parent: dict[Node, Node | None] = {t: None for t in targets}
        queue = deque(targets)
        while queue:
            node = queue.popleft()
            for src in reverse.get(node, ()):
                if src not in parent:
                    parent[src] = node
                    queue.append(src)
        found: dict[str, list[Node]] = {}
        for test in self.tests():
            # an inherited test runs the mixin's method on its own class (its setUp, its fixtures)
            owners = [test.node] + ([(test.path, test.qualname.rpartition(".")[0])] if test.source else [])
            node = next((n for n in owners if n in parent), None)
            if node is not None:
                chain = [node]
                while parent[chain[-1]] is not None:
                    chain.append(parent[chain[-1]])
                found[test.nodeid] = chain
        return found


def _is_fixture(s: Symbol) -> bool:
    return any(d.split("(")[0].endswith("fixture") for d in s.decorators)


def _shape(f: Facts) -> tuple:
    """What the graph depends on; a body-only edit that keeps names and imports leaves it valid."""
    return (
        tuple((s.qualname, s.kind) for s in f.symbols),
        tuple(f.imports),
        tuple(sorted((k, tuple(sorted(v))) for k, v in f.uses.items())),
    )
