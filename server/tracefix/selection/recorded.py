"""What each test used on its last run, as the tracefix_deps plugin recorded it: the code it
executed (per symbol, with the symbol's digest at run time), the fixtures it requested, the data
files it read and the installed distributions it ran. A test with no complete record is unknown."""

from __future__ import annotations

import functools
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from tracefix.index.files import Node, digest_bytes
from tracefix.index.graph import ProjectIndex
from tracefix.parsing.symbols import MODULE, Symbol

EXECUTED, FIXTURE, CONTEXT, UNKNOWN = "executed", "fixture", "context", "unknown"
IMPORT = "@import:"  # stored nodeid prefix: what a module's body ran when collection imported it
MISSING = (-1, -1, "")  # (size, mtime_ns, digest) of a file a test tried to read that did not exist

FileState = tuple[int, int, str]
_RANK = {FIXTURE: 0, EXECUTED: 1, CONTEXT: 2}


@dataclass
class Deps:
    """What one test used on its last run."""

    code: dict[Node, tuple[str, str]] = field(default_factory=dict)  # node → (digest at run time, how)
    files: dict[str, FileState] = field(default_factory=dict)  # data files; directories end in "/"
    dists: dict[str, str] = field(default_factory=dict)  # distribution → version

    def add_code(self, node: Node, digest: str, how: str) -> None:
        # a fixture's function also shows up as executed; "uses fixture" is the better reason
        if node not in self.code or _RANK[how] < _RANK[self.code[node][1]]:
            self.code[node] = (digest, how)

    def rows(self) -> tuple[list, list, list]:
        return (
            [(p, q, d, how) for (p, q), (d, how) in self.code.items()],
            [(p, *state) for p, state in self.files.items()],
            list(self.dists.items()),
        )


UNKNOWN_ROWS = ([("", "", "", UNKNOWN)], [], [])


def base_nodeid(nodeid: str) -> str:
    return nodeid.split("[")[0]


@dataclass
class Recorded:
    tests: dict[str, Deps]  # base nodeid → what all its recorded parametrizations used
    session: Deps  # functions run and files read at collection, by no test in particular (nodeid "")
    imports: dict[str, Deps] = field(default_factory=dict)  # module → functions its body ran at collection

    @classmethod
    def from_rows(cls, code_rows, file_rows, dist_rows) -> Recorded:
        tests: dict[str, Deps] = {"": Deps()}
        unknown = set()
        for nodeid, path, qualname, digest, how in code_rows:
            if how == UNKNOWN:
                unknown.add(base_nodeid(nodeid))
            else:
                tests.setdefault(base_nodeid(nodeid), Deps()).add_code((path, qualname), digest, how)
        for nodeid, path, size, mtime, digest in file_rows:
            tests.setdefault(base_nodeid(nodeid), Deps()).files[path] = (size, mtime, digest)
        for nodeid, dist, version in dist_rows:
            tests.setdefault(base_nodeid(nodeid), Deps()).dists[dist] = version
        session = tests.pop("")
        imports = {n[len(IMPORT) :]: tests.pop(n) for n in list(tests) if n.startswith(IMPORT)}
        # file and distribution rows alone are no record
        known = {n: d for n, d in tests.items() if n not in unknown and d.code}
        return cls(known, session, imports)

    @functools.cached_property
    def executed(self) -> dict[str, frozenset[Node]]:
        """base nodeid → the code it executed (not only used as context): the spectrum that
        fault localization compares passing and failing tests by."""
        return {
            n: frozenset(node for node, (_, how) in d.code.items() if how == EXECUTED) for n, d in self.tests.items()
        }

    def changed_files(self, root: Path) -> dict[str, str]:
        """The data files (and directory listings, ending in "/") read on the last runs that are not
        as they were then: path → "added", "removed" or "changed"."""
        found: dict[str, str] = {}
        for deps in (self.session, *self.imports.values(), *self.tests.values()):
            for rel, was in deps.files.items():
                how = None if rel in found else file_change(root, rel, was)
                if how:
                    found[rel] = how
        return found


# reading the plugin's records
def file_state(root: Path, rel: str) -> FileState:
    """(size, mtime_ns, digest) of a file, or of a directory's sorted listing (rel ends in "/")."""
    full = root / rel
    try:
        st = full.stat()
        if stat.S_ISDIR(st.st_mode):
            data = "\n".join(sorted(os.listdir(full))).encode("utf-8", "surrogateescape")
        else:
            data = full.read_bytes()
    except OSError:
        return MISSING
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
    """The innermost definition holding a line of code that ran, else the module's own code."""
    return index.symbol_at(path, line) or index.symbol(path, MODULE)


def _context(index: ProjectIndex, node: Node) -> list[Node]:
    """What executed code depends on without running it: the class bodies and module-level code
    that define it, and the classes and module-level names it refers to."""
    path, qualname = node
    found = []
    parts = qualname.split(".") if qualname != MODULE else []
    for i in range(len(parts) - 1, 0, -1):
        found.append((path, ".".join(parts[:i])))
    found.append((path, MODULE))
    for target_path, name in index.graph().get(node, ()):
        sym = index.symbol(target_path, name) if name != MODULE else None
        if sym is None:  # a module, or a module-level variable
            found.append((target_path, MODULE))
        elif sym.kind == "class":
            found.append((target_path, name))
    return [n for n in found if index.symbol(*n) is not None]


def deps_from_records(
    index: ProjectIndex, root: Path, records: list[dict], started: dict[str, str], session: Deps | None
) -> dict[str, tuple[list, list, list]]:
    """nodeid → rows to store, from the plugin's records of one run.

    `started` holds each file's digest when the run began: a test that ran code in a file that
    changed since cannot be mapped to symbols by line, so it is stored as unknown. `session`:
    what earlier runs saw at collection, to add to (a run of some tests collects only their
    modules); None to replace it (a run of all tests)."""
    mapper = _Mapper(index, root, started)
    tests: dict[str, tuple[list, list, list]] = {}
    for record in records:
        if record.get("kind") == "session":  # one per pytest-xdist worker: together, what all collected
            session = mapper.collection_deps(record["code"], record["files"], session)
            tests[""] = session.rows()
            for path, code in record.get("imports", {}).items():
                tests[IMPORT + path] = mapper.collection_deps(code, [], None).rows()
        elif record.get("kind") == "deps":
            deps = mapper.test_deps(record) if record.get("complete") else None
            tests[record["nodeid"]] = deps.rows() if deps else UNKNOWN_ROWS
    return tests


class _Mapper:
    """Plugin records → symbols with their digests; tests share most code, so answers are cached."""

    def __init__(self, index: ProjectIndex, root: Path, started: dict[str, str]):
        self.index, self.root, self.started = index, root, started
        self.states: dict[str, FileState] = {}
        self.symbols: dict[tuple[str, int], list[tuple[Node, str, str]] | None] = {}
        self.digests: dict[str, dict[str, str]] = {}
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
        return [(node, self.digest(node), EXECUTED)] + [
            (n, self.digest(n), CONTEXT) for n in _context(self.index, node)
        ]

    def digest(self, node: Node) -> str:
        if node[0] not in self.digests:
            self.digests[node[0]] = self.index.digests(node[0])
        return self.digests[node[0]][node[1]]

    def collection_deps(self, code: list, files: list, earlier: Deps | None) -> Deps:
        """Functions run at collection (module and class bodies are every importer's context) and
        files read outside tests, added to what earlier runs saw of functions that still exist."""
        deps = Deps()
        if earlier is not None:
            deps.code = {n: d for n, d in earlier.code.items() if self.index.symbol(*n) is not None}
            deps.files = dict(earlier.files)
        for path, line in code:
            node, digest, _ = (self.code(path, line) or [(None, "", "")])[0]
            if node is not None and self.index.symbol(*node).kind in ("function", "method"):
                deps.code[node] = (digest, EXECUTED)
        deps.files.update((rel, self.state(rel)) for rel in files)
        return deps

    def test_deps(self, record: dict) -> Deps | None:
        deps = Deps()
        used = [(path, line, EXECUTED) for path, line in record["code"]]
        used += [(path, line, FIXTURE) for _, path, line in record["fixtures"]]
        test = self.tests.get(base_nodeid(record["nodeid"]))
        if test is not None:  # a skipped test never runs its function, yet depends on it
            used.append((test.path, test.line, EXECUTED))
        for path, line, how in used:
            found = self.code(path, line)
            if found is None:
                return None
            for i, (node, digest, kind) in enumerate(found):
                deps.add_code(node, digest, how if i == 0 else kind)
        for rel in record["files"]:
            deps.files[rel] = self.state(rel)
        for rel in record["dirs"]:
            deps.files[rel + "/"] = self.state(rel + "/")
        deps.dists = dict(record["dists"])
        return deps if deps.code else None


def read_records(path: Path) -> list[dict]:
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return records
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a torn last line from a killed run
    return records
