"""What each test used on its last run, as the tracefix_deps plugin recorded it: the code it
executed (per symbol, with the symbol's digest at run time), the fixtures it requested, the data
files it read and the installed distributions it ran. A test with no complete record is unknown."""

from __future__ import annotations

import json
import os
import stat
import sys
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from tracefix.index.files import Node, digest_bytes
from tracefix.index.graph import ProjectIndex
from tracefix.index.modules import NODE
from tracefix.parsing.symbols import MODULE, Symbol
from tracefix.paths import read_bytes, read_text
from tracefix.running.plugin import tracefix_records as records
from tracefix.running.results import (
    RecordError,
    asked_for,
    checked_nodeid,
    checked_number,
    checked_text,
    workspace_path,
)

EXECUTED, FIXTURE, CONTEXT = "executed", "fixture", "context"
HOWS = (FIXTURE, EXECUTED, CONTEXT)  # in this order of preference: "uses fixture f" says most
IMPORT = "@import:"  # stored nodeid prefix: what a module's body ran when collection imported it
MISSING = (-1, -1, "")  # (size, mtime_ns, digest) of a file a test tried to read that did not exist
DATA_BYTES = 64 << 20  # a data file up to this size is known by its digest; a larger one by size and mtime
RECORDS_BYTES = 1 << 30  # the records file of one run

FileState = tuple[int, int, str]
Version = tuple[str, str, str]  # (path, qualname, digest): a symbol as it was when a test ran it


@dataclass
class Deps:
    """What one test used on its last run, as the mapper builds it."""

    code: dict[Node, tuple[str, str]] = field(default_factory=dict)  # node → (digest at run time, how)
    # nodes that decide which cases a test has: its own code and its fixtures, and what they read
    shapes: set[Node] = field(default_factory=set)
    files: dict[str, FileState] = field(default_factory=dict)  # data files; directories end in "/"
    dists: dict[str, str] = field(default_factory=dict)  # distribution → version

    def add_code(self, node: Node, digest: str, how: str, shapes: bool = False) -> None:
        # a fixture's function also shows up as executed; "uses fixture" is the better reason
        if node not in self.code or HOWS.index(how) < HOWS.index(self.code[node][1]):
            self.code[node] = (digest, how)
        if shapes:
            self.shapes.add(node)


class Record:
    """What one test (or collection) used, compact: the code as interned versions, each entry
    `version << 3 | shapes << 2 | how`, in the order the mapper found them."""

    __slots__ = ("code", "dists", "files")

    def __init__(self, code: array, files: dict[str, FileState], dists: dict[str, str]):
        self.code, self.files, self.dists = code, files, dists

    def entries(self) -> Iterator[tuple[int, str, bool]]:
        """(version, how, shapes) of each entry."""
        for value in self.code:
            yield value >> 3, HOWS[value & 3], bool(value & 4)

    def blob(self) -> bytes:
        return self.code.tobytes()

    @classmethod
    def from_blob(cls, blob: bytes, files: dict[str, FileState], dists: dict[str, str]) -> Record:
        code = array("I")
        code.frombytes(blob)
        return cls(code, files, dists)


EMPTY = Record(array("I"), {}, {})


def base_nodeid(nodeid: str) -> str:
    """The test function of a collected item: `t.py::test_x[case-1]` → `t.py::test_x`."""
    return nodeid.split("[")[0]


class Recorded:
    """What every test used on its last run, kept in memory and updated from each run's records.

    Records are per collected item (each parametrized case); a test function counts as recorded
    when each of its cases that ran last has a complete record."""

    def __init__(self) -> None:
        self.versions: list[tuple[Node, str] | None] = []  # version → (node, digest)
        self.ids: dict[Version, int] = {}
        self.by_node: dict[Node, list[int]] = {}
        self.items: dict[str, Record] = {}  # item nodeid → its complete record
        self.unknown: set[str] = set()  # item nodeids whose last record is incomplete
        self.session = EMPTY  # functions run and files read at collection, by no test in particular
        self.imports: dict[str, Record] = {}  # module → functions its body ran at collection
        self.generation = 0  # the store's deps generation this matches
        self._tests: dict[str, list[str]] | None = None
        self._executed: dict[str, frozenset[Node]] | None = None
        self._shared: dict[tuple, dict] = {}

    @property
    def tests(self) -> dict[str, list[str]]:
        """Recorded test functions (base nodeids) → their items with a record; a function with an
        incomplete record for any case is not recorded."""
        if self._tests is None:
            found: dict[str, list[str]] = {}
            for nodeid in self.items:
                found.setdefault(base_nodeid(nodeid), []).append(nodeid)
            for nodeid in self.unknown:
                found.pop(base_nodeid(nodeid), None)
            self._tests = found
        return self._tests

    @property
    def executed(self) -> dict[str, frozenset[Node]]:
        """Recorded test functions → the code their cases executed (not only used as context): the
        spectrum that fault localization compares passing and failing tests by."""
        if self._executed is None:
            found: dict[str, frozenset[Node]] = {}
            for base, items in self.tests.items():
                nodes = set()
                for item in items:
                    for version, how, _ in self.items[item].entries():
                        known = self.versions[version]
                        if how == EXECUTED and known is not None:
                            nodes.add(known[0])
                found[base] = frozenset(nodes)
            self._executed = found
        return self._executed

    @classmethod
    def load(
        cls, versions: list[tuple[int, str, str, str]], rows: list[tuple[str, bytes | None, str, str]], generation: int
    ) -> Recorded:
        """From the store's rows (Store.deps)."""
        recorded = cls()
        recorded.add_versions(versions)
        for nodeid, blob, files, dists in rows:
            record = None
            if blob is not None:
                record = Record.from_blob(
                    blob, recorded.shared(_file_states(files)), recorded.shared(json.loads(dists))
                )
                if record.code and max(record.code) >> 3 >= len(recorded.versions):
                    record = None  # a version the store lost: nothing to compare with
            recorded.set(nodeid, record)
        recorded.generation = generation
        return recorded

    @staticmethod
    def row(record: Record | None) -> tuple[bytes | None, str, str]:
        """A record as the store keeps it (Store.save_deps)."""
        if record is None:
            return None, "{}", "{}"
        return record.code.tobytes(), json.dumps(record.files), json.dumps(record.dists)

    def update(self, deps: dict[str, Deps | None], ids: list[tuple[int, str, str, str]]) -> dict[str, Record | None]:
        """Take a run's records (with the ids of their new versions): the compact records to store."""
        self.add_versions(ids)
        records = {n: self.pack(d) if d is not None else None for n, d in deps.items()}
        for nodeid, record in records.items():
            self.set(nodeid, record)
        return records

    def changed_files(self, root: Path) -> dict[str, str]:
        """The data files (and directory listings, ending in "/") read on the last runs that are not
        as they were then: path → "added", "removed" or "changed"."""
        found: dict[str, str] = {}
        for record in (self.session, *self.imports.values(), *self.items.values()):
            for rel, was in record.files.items():
                how = None if rel in found else file_change(root, rel, was)
                if how:
                    found[rel] = how
        return found

    def current(self, index: ProjectIndex) -> Iterator[tuple[str, Record]]:
        """(item nodeid, record) of each recorded test function the index still lists."""
        listed = {t.nodeid for t in index.tests()}
        for base, items in self.tests.items():
            if base in listed:
                for nodeid in items:
                    yield nodeid, self.items[nodeid]

    def add_versions(self, rows: Iterable[tuple[int, str, str, str]]) -> None:
        for vid, path, qualname, digest in rows:
            node = (sys.intern(path), sys.intern(qualname))
            if vid >= len(self.versions):
                self.versions.extend([None] * (vid + 1 - len(self.versions)))
            self.versions[vid] = (node, digest)
            self.ids[(*node, digest)] = vid
            self.by_node.setdefault(node, []).append(vid)

    def missing(self, deps: Iterable[Deps | None]) -> set[Version]:
        """Versions these records use that are not interned yet."""
        return {
            (*node, digest)
            for d in deps
            if d is not None
            for node, (digest, _) in d.code.items()
            if (*node, digest) not in self.ids
        }

    def pack(self, deps: Deps) -> Record:
        code = array(
            "I",
            (self.ids[(*n, d)] << 3 | (n in deps.shapes) << 2 | HOWS.index(how) for n, (d, how) in deps.code.items()),
        )
        return Record(code, self.shared(deps.files), self.shared(deps.dists))

    def shared(self, d: dict) -> dict:
        """Many tests read the same files and run the same distributions: one dict for all of them."""
        return self._shared.setdefault(tuple(d.items()), d)

    def set(self, nodeid: str, record: Record | None) -> None:
        """Replace what `nodeid` used (None: its record is incomplete)."""
        self._tests = self._executed = None
        if nodeid == "":
            self.session = record or EMPTY
        elif nodeid.startswith(IMPORT):
            if record is None:
                self.imports.pop(nodeid[len(IMPORT) :], None)
            else:
                self.imports[nodeid[len(IMPORT) :]] = record
        elif record is None:
            self.items.pop(nodeid, None)
            self.unknown.add(nodeid)
        else:
            self.items[nodeid] = record
            self.unknown.discard(nodeid)

    def remove(self, nodeid: str) -> None:
        self._tests = self._executed = None
        self.items.pop(nodeid, None)
        self.unknown.discard(nodeid)

    def deps(self, record: Record) -> Deps:
        """A record in the mapper's form (to add to it)."""
        deps = Deps(files=dict(record.files), dists=dict(record.dists))
        for vid, how, shapes in record.entries():
            version = self.versions[vid]
            if version is not None:
                deps.add_code(*version, how, shapes)
        return deps


def _file_states(text: str) -> dict[str, FileState]:
    return {rel: (size, mtime, digest) for rel, (size, mtime, digest) in json.loads(text).items()}


# reading the plugin's records
def file_state(root: Path, rel: str) -> FileState:
    """(size, mtime_ns, digest) of a file, or of a directory's sorted listing (rel ends in "/")."""
    full = root / rel
    try:
        st = full.stat()
        if stat.S_ISDIR(st.st_mode):
            data: bytes | None = "\n".join(sorted(os.listdir(full))).encode("utf-8", "surrogateescape")
        else:
            data = read_bytes(full, DATA_BYTES)  # a FIFO or a device is no data to digest
    except OSError:
        return MISSING
    if data is None:
        return (st.st_size, st.st_mtime_ns, f"{stat.S_IFMT(st.st_mode)}:{st.st_size}:{st.st_mtime_ns}")
    return (st.st_size, st.st_mtime_ns, digest_bytes(data))


def file_change(root: Path, rel: str, was: FileState) -> str | None:
    """How a file (or a directory's listing) differs from its recorded state: "added", "removed" or
    "changed"; None when it is as recorded."""
    try:
        st = (root / rel).stat()
        if (st.st_size, st.st_mtime_ns) == was[:2]:
            return None
    except OSError:
        return None if was == MISSING else "removed"
    now = file_state(root, rel)
    if now[2] == was[2]:
        return None
    return "added" if was == MISSING else "removed" if now == MISSING else "changed"


def _symbol_for(index: ProjectIndex, path: str, line: int) -> Symbol | None:
    """The innermost definition holding a line of code that ran, else the module-level name whose
    statement holds it (a lambda's), else the module's own code."""
    return index.symbol_at(path, line) or index.symbol_at(path, line, ("variable",)) or index.symbol(path, MODULE)


def deps_from_records(
    index: ProjectIndex, root: Path, recorded: list[records.Recorded], started: dict[str, str], session: Deps | None
) -> dict[str, Deps | None]:
    """nodeid → what it used (None: its record is incomplete), from the plugin's records of one run.

    `started` holds each file's digest when the run began: a test that ran code in a file that
    changed since cannot be mapped to symbols by line, so it is stored as unknown. `session`:
    what earlier runs saw at collection, to add to (a run of some tests collects only their
    modules); None to replace it (a run of all tests)."""
    mapper = _Mapper(index, root, started)
    tests: dict[str, Deps | None] = {}
    for record in recorded:
        if record["kind"] == records.SESSION:  # one per pytest-xdist worker: together, what all collected
            session = mapper.collection_deps(record["code"], record["files"], record.get("dirs", []), session)
            tests[""] = session
            for path, code in record.get("imports", {}).items():
                tests[IMPORT + path] = mapper.collection_deps(code, [], [], None)
        elif record["kind"] == records.DEPS:
            tests[record["nodeid"]] = mapper.test_deps(record) if record["complete"] else None
    return tests


class _Mapper:
    """Plugin records → symbols with their digests; tests share most code, so answers are cached."""

    def __init__(self, index: ProjectIndex, root: Path, started: dict[str, str]):
        self.index, self.root, self.started = index, root, started
        self.reads = Reads(index)
        self.states: dict[str, FileState] = {}
        self.symbols: dict[tuple[str, int], list[tuple[Node, str, str]] | None] = {}
        self.tests = {t.nodeid: t for t in index.tests()}  # once: listing a file's tests is not cheap

    def state(self, rel: str) -> FileState:
        if rel not in self.states:
            self.states[rel] = file_state(self.root, rel)
        return self.states[rel]

    def code(self, path: str, line: int) -> list[tuple[Node, str, str]] | None:
        """[(node, digest, how)] for the code that ran at a line, and its context; [] for code the
        index does not hold, None for code whose file changed during the run."""
        key = (path, line)
        if key not in self.symbols:
            self.symbols[key] = self._code(path, line)
        return self.symbols[key]

    def _code(self, path: str, line: int) -> list[tuple[Node, str, str]] | None:
        entry = self.index.files.get(path)
        if entry is None:
            return []  # not indexed: its changes are never seen either way
        if self.started.get(path) != entry.digest:
            return None
        sym = _symbol_for(self.index, path, line)
        if sym is None:
            return []
        node = (path, sym.qualname)
        return [(node, self.digest(node), EXECUTED)] + [(n, self.digest(n), CONTEXT) for n in self.reads.context(node)]

    def digest(self, node: Node) -> str:
        return self.index.digests(node[0])[node[1]]

    def collection_deps(
        self, code: list[tuple[str, int]], files: list[str], dirs: list[str], earlier: Deps | None
    ) -> Deps:
        """Functions run at collection and the module-level names they read (module and class
        bodies are every importer's context), and files read or directories listed outside tests,
        added to what earlier runs saw of functions that still exist."""
        deps = Deps()
        if earlier is not None:
            deps.code = {n: d for n, d in earlier.code.items() if self.index.symbol(*n) is not None}
            deps.files = dict(earlier.files)
        for path, line in code:
            found = self.code(path, line) or []
            if found and self.reads.kind(found[0][0]) in ("function", "method"):
                deps.add_code(*found[0])
                for node, digest, how in found[1:]:
                    if self.reads.kind(node) == "variable":
                        deps.add_code(node, digest, how)
        deps.files.update((rel, self.state(rel)) for rel in files)
        deps.files.update((rel + "/", self.state(rel + "/")) for rel in dirs)
        return deps

    def test_deps(self, record: records.Deps) -> Deps | None:
        deps = Deps()
        # (path, line, how, whether it decides the test's cases: its own code and its fixtures)
        used = [(path, line, EXECUTED, False) for path, line in record.get("code", [])]
        used += [(path, line, FIXTURE, True) for _, path, line in record.get("fixtures", [])]
        test = self.tests.get(base_nodeid(record["nodeid"]))
        if test is not None:  # a skipped test never runs its function, yet depends on it
            used.append((test.path, test.line, EXECUTED, True))
        for path, line, how, shapes in used:
            found = self.code(path, line)
            if found is None:
                return None
            for i, (node, digest, kind) in enumerate(found):
                deps.add_code(node, digest, how if i == 0 else kind, shapes)
        for rel in record.get("files", []):
            deps.files[rel] = self.state(rel)
        for rel in record.get("dirs", []):
            deps.files[rel + "/"] = self.state(rel + "/")
        deps.dists = dict(record.get("dists", {}))
        return deps if deps.code else None


class Reads:
    """What code depends on without running it: the class bodies and module-level code that define
    it, the classes and modules it refers to, and the module-level names it reads, through the
    names their own statements read (`B = A + 1`: reading B reads A)."""

    def __init__(self, index: ProjectIndex):
        self.index = index
        self.graph = index.graph()
        self.cache: dict[Node, list[Node]] = {}

    def context(self, node: Node) -> list[Node]:
        if node not in self.cache:
            self.cache[node] = self._context(node)
        return self.cache[node]

    def _context(self, node: Node) -> list[Node]:
        path, qualname = node
        parts = qualname.split(".") if qualname != MODULE else []
        seeds = [(path, ".".join(parts[:i])) for i in range(len(parts) - 1, 0, -1)] + [(path, MODULE)]
        found = dict.fromkeys(n for n in seeds if n != node)
        # (node, whole): a whole expansion takes the classes and modules it refers to too; a module
        # body's or a class's own names are all that is taken from those
        queue = deque([(node, True)] + [(n, n[1] != MODULE) for n in seeds])
        while queue:
            source, whole = queue.popleft()
            for target in self._targets(source):
                kind = self.kind(target)
                if target == node or target in found or kind is None:
                    continue
                if kind == "variable":
                    found[target] = None
                    queue.append((target, True))
                elif whole and kind in ("class", "module"):
                    found[target] = None
                    queue.append((target, False))
        return [n for n in found if self.index.symbol(*n) is not None]

    def _targets(self, source: Node) -> Iterator[Node]:
        entry = self.index.files.get(source[0])
        if entry is None:
            return
        uses = entry.facts.uses.get(source[1], ())
        if "globals" in uses or "vars" in uses:  # reads its module's names by string
            yield from ((source[0], s.qualname) for s in entry.facts.symbols if s.kind == "variable")
        for target in self.graph.get(source, ()):
            yield from self._resolve(target)

    def _resolve(self, target: Node) -> Iterator[Node]:
        """A name imported from a module that imports it from elsewhere (a package's __init__)
        stands for the definition; one that resolves to nothing for its module's code."""
        path, name = target
        if name == MODULE or self.index.symbol(path, name) is not None:
            yield target
            return
        found = [r.node for r in self.index.find(path, name) if r.kind == NODE and r.node != target]
        yield from found or [(path, MODULE)]

    def kind(self, node: Node) -> str | None:
        if node[1] == MODULE:
            return "module" if node[0] in self.index.files else None
        symbol = self.index.symbol(*node)
        return symbol.kind if symbol is not None else None


def read_records(path: Path, nodeids: list[str] | None = None) -> list[records.Recorded]:
    """The tracefix_deps plugin's records of one run, each checked: test code can write anything to
    the file. `nodeids`: what the run asked for; a record of another test is dropped."""
    checked = []
    for line in (read_text(path, RECORDS_BYTES) or "").splitlines():
        try:
            checked.append(_checked(json.loads(line), nodeids))
        except (ValueError, RecordError):  # a torn last line from a killed run, or a forged record
            continue
    return checked


def _checked(record: object, nodeids: list[str] | None) -> records.Recorded:
    """The record, checked against its declared shape (tracefix_records). Raises RecordError."""
    if not isinstance(record, dict):
        raise RecordError("not an object")
    kind = record.get("kind")
    if kind == records.ENV:
        checked_text(record.get("executable"), "executable")
        paths = record.get("paths")
        if not isinstance(paths, dict) or not all(isinstance(p, str) and isinstance(t, int) for p, t in paths.items()):
            raise RecordError("paths is not a map of folders to times")
    elif kind == records.DEPS:
        nodeid = checked_nodeid(record.get("nodeid"))
        if nodeids is not None and not asked_for(nodeid, nodeids):
            raise RecordError(f"a record of {nodeid!r}, which the run did not ask for")
        if record.get("complete") is not True:
            return records.Deps(kind=records.DEPS, nodeid=nodeid, complete=False)
        _code(record.get("code"))
        _list(record.get("fixtures"), _fixture)
        _list(record.get("files"), workspace_path)
        _list(record.get("dirs"), workspace_path)
        dists = record.get("dists")
        if not isinstance(dists, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in dists.items()):
            raise RecordError("dists is not a map of names to versions")
    elif kind == records.SESSION:
        _code(record.get("code"))
        _list(record.get("files"), workspace_path)
        _list(record.get("dirs", []), workspace_path)
        imports = record.get("imports", {})
        if not isinstance(imports, dict):
            raise RecordError("imports is not a map")
        for path, code in imports.items():
            workspace_path(path)
            _code(code)
    else:
        raise RecordError(f"unknown kind of record: {kind!r:.80}")
    return cast(records.Recorded, record)


def _list(value: object, check: Callable[[object], object]) -> None:
    if not isinstance(value, list):
        raise RecordError(f"not a list: {value!r:.80}")
    for item in value:
        check(item)


def _pair(item: object) -> None:
    """[path, line] of code that ran (line 0: a module's start)."""
    if not isinstance(item, list) or len(item) != 2:
        raise RecordError(f"not [path, line]: {item!r:.80}")
    workspace_path(item[0])
    checked_number(item[1], least=0)


def _fixture(item: object) -> None:
    """[name, path, line] of a fixture's function."""
    if not isinstance(item, list) or len(item) != 3:
        raise RecordError(f"not [name, path, line]: {item!r:.80}")
    checked_text(item[0], "fixture")
    _pair(item[1:])


def _code(value: object) -> None:
    _list(value, _pair)
