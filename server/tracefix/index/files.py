"""The project's Python files and the facts parsed from each: the base of the index."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from bisect import bisect_right
from functools import cached_property
from pathlib import Path, PurePosixPath

from tracefix.index.pytestconfig import PytestConfig
from tracefix.parsing.document import parse
from tracefix.parsing.symbols import CODE, Facts, Import, Symbol, facts
from tracefix.paths import MAX_FILE_BYTES, is_source_dir, read_bytes

Node = tuple[str, str]  # (path relative to root, qualname)
FACTS_VERSION = 8  # stored facts of another version are parsed again


def _facts_to_json(f: Facts) -> str:
    return json.dumps(
        {
            "version": FACTS_VERSION,  # first: `_current` reads it without decoding the rest
            "symbols": [
                [s.qualname, s.kind, s.start_line, s.end_line, s.name_line, s.digest, s.decorators] for s in f.symbols
            ],
            "imports": [[i.module, i.names, i.level, i.alias] for i in f.imports],
            "uses": f.uses,
            "params": f.params,
            "locals": f.locals,
            "bases": f.bases,
            "mentions": f.mentions,
            "assigned": sorted(f.assigned),
            "values": f.values,
            "made": sorted(f.made),
            "exports": f.exports,
        }
    )


_VERSION_PREFIX = json.dumps({"version": FACTS_VERSION})[:-1] + ","


def _current(stored: str) -> bool:
    """Whether stored facts are of this FACTS_VERSION."""
    return stored.startswith(_VERSION_PREFIX)


def _facts_from_json(text: str) -> Facts:
    d = json.loads(text)
    return Facts(
        symbols=[
            Symbol(sys.intern(q), k, start, end, name, digest, tuple(dec))
            for q, k, start, end, name, digest, dec in d["symbols"]
        ],
        imports=[
            Import(module, tuple((name, bound) for name, bound in names), level, alias)
            for module, names, level, alias in d["imports"]
        ],
        uses=_names(d["uses"]),
        params={k: tuple(v) for k, v in d["params"].items()},
        locals=_names(d["locals"]),
        bases={k: tuple(v) for k, v in d["bases"].items()},
        mentions=_names(d["mentions"]),
        assigned=set(d["assigned"]),
        values=_names(d["values"]),
        made=set(d["made"]),
        exports=None if d["exports"] is None else tuple(d["exports"]),
    )


def _names(stored: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    """Names per symbol as Facts keeps them (parsing.symbols.name_table); stored sorted already."""
    return {sys.intern(k): tuple(map(sys.intern, v)) for k, v in stored.items()}


def digest_bytes(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


class FileEntry:
    """One file: its stat, its digest and its facts; facts read from the store are decoded when
    first needed (a check uses few files' facts once the graph is saved)."""

    def __init__(self, path: str, mtime_ns: int, size: int, digest: str, facts: Facts | str):
        self.path, self.mtime_ns, self.size, self.digest = path, mtime_ns, size, digest
        self._facts = facts  # str: as stored
        self.by_start: dict[tuple[str, ...], list[Symbol]] = {}

    @property
    def facts(self) -> Facts:
        if isinstance(self._facts, str):
            self._facts = _facts_from_json(self._facts)
        return self._facts

    @cached_property
    def symbols(self) -> dict[str, Symbol]:
        """qualname → its first definition."""
        found: dict[str, Symbol] = {}
        for s in self.facts.symbols:
            found.setdefault(s.qualname, s)
        return found

    @cached_property
    def digests(self) -> dict[str, str]:
        """qualname → digest. A name defined twice (a property's getter and setter) is one node:
        its digest covers every definition, so code that ran either one sees a change to the other."""
        found: dict[str, list[str]] = {}
        for s in self.facts.symbols:
            found.setdefault(s.qualname, []).append(s.digest)
        return {q: d[0] if len(d) == 1 else digest_bytes("\n".join(d).encode()) for q, d in found.items()}


class IndexFiles:
    """Every indexable .py file's facts, kept current by load/update/remove."""

    def __init__(self, root: Path, config: PytestConfig):
        self.root = root
        self.config = config
        self.files: dict[str, FileEntry] = {}
        self._graph: dict[Node, set[Node]] | None = None
        self._reverse: dict[Node, set[Node]] | None = None
        self._modules: dict[str, str] | None = None
        self._stale: set[str] = set()  # files whose own edges of the graph are out of date
        self._tests: dict[str, list] = {}  # path → its TestItems (TestDiscovery.tests)

    # building and updating
    def scan(self) -> dict[str, tuple[int, int]]:
        """All indexable .py files on disk: relpath → (mtime_ns, size)."""
        found = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            base = Path(dirpath)
            dirnames[:] = [d for d in dirnames if is_source_dir(base / d)]
            for name in filenames:
                if name.endswith(".py"):
                    path = base / name
                    try:
                        st = path.stat()
                    except OSError:
                        continue
                    if stat.S_ISREG(st.st_mode) and st.st_size <= MAX_FILE_BYTES:
                        found[path.relative_to(self.root).as_posix()] = (st.st_mtime_ns, st.st_size)
        return found

    def load(self, stored: dict[str, tuple[int, int, str, str]]) -> tuple[list, list[str]]:
        """Reuse stored facts for files whose mtime and size match; parse the rest.

        Returns (rows to persist, removed paths)."""
        on_disk = self.scan()
        rows = []
        for path, (mtime, size) in on_disk.items():
            old = stored.get(path)
            if old and old[0] == mtime and old[1] == size and _current(old[3]):
                self.files[path] = FileEntry(path, mtime, size, old[2], old[3])
                continue
            entry = self.update_from_disk(path)
            if entry is not None:
                rows.append(self.row(entry))
        removed = [p for p in stored if p not in on_disk]
        self.invalidate()
        return rows, removed

    def update_from_disk(self, path: str) -> FileEntry | None:
        full = self.root / path
        data = read_bytes(full)
        try:
            st = full.stat()
        except OSError:
            data = None
        if data is None:
            self.remove(path)
            return None
        return self.update(path, data, st.st_mtime_ns, st.st_size)

    def update(self, path: str, data: bytes, mtime_ns: int = 0, size: int = 0) -> FileEntry:
        tree = parse(data)
        entry = FileEntry(path, mtime_ns, size or len(data), digest_bytes(data), facts(tree, data))
        old = self.files.get(path)
        self.files[path] = entry
        self._tests.pop(path, None)  # its tests' lines move with any edit
        if old is None or _bindings(old.facts) != _bindings(entry.facts):
            self.invalidate()
        elif _uses(old.facts) != _uses(entry.facts):
            self._stale.add(path)  # the names every file binds are the same: only this file's edges change
        return entry

    def remove(self, path: str) -> None:
        if self.files.pop(path, None) is not None:
            self.invalidate()

    @staticmethod
    def row(entry: FileEntry) -> tuple[str, int, int, str, str]:
        return (entry.path, entry.mtime_ns, entry.size, entry.digest, _facts_to_json(entry.facts))

    def invalidate(self) -> None:
        self._graph = self._reverse = self._modules = None
        self._stale.clear()
        self._tests = {}

    def is_test_file(self, path: str) -> bool:
        parts = PurePosixPath(path)
        if not self.config.is_test_file(parts.name):
            return False
        if self.config.testpaths:
            return any(path == t or path.startswith(t.rstrip("/") + "/") for t in self.config.testpaths)
        return not any(self.config.skips_dir(p) for p in parts.parts[:-1])

    def conftests_for(self, path: str) -> list[str]:
        parents = [str(p) for p in PurePosixPath(path).parents]
        return [
            ("" if d == "." else d + "/") + "conftest.py"
            for d in parents
            if (("" if d == "." else d + "/") + "conftest.py") in self.files
        ]

    def symbol(self, path: str, qualname: str) -> Symbol | None:
        entry = self.files.get(path)
        return entry.symbols.get(qualname) if entry is not None else None

    def digests(self, path: str) -> dict[str, str]:
        """qualname → digest of the file's symbols (see FileEntry.digests)."""
        entry = self.files.get(path)
        return entry.digests if entry is not None else {}

    def symbol_at(self, path: str, line: int, kinds: tuple[str, ...] = CODE) -> Symbol | None:
        """The innermost symbol of one of `kinds` (by default a function, class or method)
        containing a 1-based line: of those that start by it, the last to start that ends after it."""
        entry = self.files.get(path)
        if entry is None:
            return None
        if kinds not in entry.by_start:
            entry.by_start[kinds] = sorted(
                (s for s in entry.facts.symbols if s.kind in kinds), key=lambda s: s.start_line
            )
        spans = entry.by_start[kinds]
        for i in range(bisect_right(spans, line, key=lambda s: s.start_line) - 1, -1, -1):
            if spans[i].end_line >= line:
                return spans[i]
        return None


def _bindings(f: Facts) -> tuple:
    """What resolving names in any file depends on: a change here rebuilds the whole graph."""
    return (
        tuple((s.qualname, s.kind, s.decorators) for s in f.symbols),
        tuple(f.imports),
        tuple(sorted((k, v) for k, v in f.bases.items())),
        tuple(sorted(f.assigned)),
        f.exports,
    )


def bindings_digest(f: Facts) -> str:
    """A digest of what resolving names in any file depends on (`_bindings`)."""
    return digest_bytes(repr(_bindings(f)).encode())


def uses_digest(f: Facts) -> str:
    """A digest of what only the file's own edges depend on (`_uses`)."""
    return digest_bytes(repr(_uses(f)).encode())


def _uses(f: Facts) -> tuple:
    """What only the file's own edges depend on; a body-only edit that keeps them leaves the graph valid."""
    return tuple(
        tuple(sorted((k, tuple(sorted(v))) for k, v in table.items()))
        for table in (f.uses, f.mentions, f.values, f.locals, f.params)
    ) + (tuple(sorted(f.made)),)
