"""What each test used on its last run (recorded by the tracefix_deps pytest plugin) as selection
evidence: the code it executed, the fixtures it requested, the data files it read and the
installed distributions it ran.

Code is stored per symbol with the symbol's content digest at run time, so a test is also chosen
when code it ran changed since (a cancelled run, an edit outside the editor), not only for the
changes at hand. A test with no complete record is unknown: only static evidence speaks for it.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tracefix.index.graph import Node, ProjectIndex, digest_bytes
from tracefix.index.pytestconfig import CONFIG_FILES
from tracefix.parsing.symbols import MODULE, Symbol
from tracefix.selection.select import (
    DEFAULT_EVIDENCE,
    Changed,
    ConftestScope,
    Evidence,
    StaticNames,
    node_name,
)

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
        return ([(p, q, d, how) for (p, q), (d, how) in self.code.items()],
                [(p, *state) for p, state in self.files.items()],
                list(self.dists.items()))


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
        imports = {n[len(IMPORT):]: tests.pop(n) for n in list(tests) if n.startswith(IMPORT)}
        # file and distribution rows alone are no record
        known = {n: d for n, d in tests.items() if n not in unknown and d.code}
        return cls(known, session, imports)


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


def deps_from_records(index: ProjectIndex, root: Path, records: list[dict], started: dict[str, str],
                      session: Deps | None) -> dict[str, tuple[list, list, list]]:
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
        return [(node, self.digest(node), EXECUTED)] + [(n, self.digest(n), CONTEXT) for n in _context(self.index, node)]

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


def installed_versions(python: str) -> dict[str, str] | None:
    """Distribution → version in the test interpreter; None if it cannot say."""
    code = ("import importlib.metadata as m, json, sys; "
            "json.dump({d.metadata['Name']: d.version for d in m.distributions()}, sys.stdout)")
    try:
        proc = subprocess.run([python, "-c", code], check=False, capture_output=True, text=True, timeout=60)
        return json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None


def path_times(env: dict) -> tuple:
    """The current mtimes of the sys.path directories recorded in `env` (None: gone)."""
    times = []
    for path in env.get("paths", {}):
        try:
            times.append(os.stat(path).st_mtime_ns)
        except OSError:
            times.append(None)
    return tuple(times)


def environment_changed(env: dict, python: str) -> bool:
    """Whether the interpreter or any of its sys.path directories changed since the run in `env`."""
    return env.get("executable") != python or path_times(env) != tuple(env.get("paths", {}).values())


# evidence
def _phrase(node: Node, how: str, kind: str) -> str:
    if how == FIXTURE:
        return f"uses fixture {node_name(node)}"
    if how == EXECUTED:
        return f"executed {node_name(node)}"
    what = f"{PurePosixPath(node[0]).stem}'s module-level code" if node[1] == MODULE else f"{kind} {node_name(node)}"
    return f"executed code that uses {what}"


class Executed:
    """Tests that ran (or used as a fixture, or depend on the class or module of) changed code.

    Code run at collection decides which tests exist and what they get (decorators, parametrize
    arguments). What a test module's own body ran selects that module's tests and the tests that
    use the module; what anything else ran at collection selects every test. `per_module` False
    does not trust test modules to keep their import-time effects to themselves."""

    def __init__(self, recorded: Recorded, per_module: bool = True):
        self.recorded = recorded
        self.per_module = per_module

    def select(self, index: ProjectIndex, changes: list[Changed]) -> dict[str, str]:
        exact = {(c.path, c.qualname): c for c in changes if c.kind != "file" and c.what != "added"}
        # a name added to or removed from a module or class changes what that namespace holds
        holders = {(c.path, c.qualname.rpartition(".")[0] or MODULE): c
                   for c in changes if c.kind != "file" and c.what != "changed"}
        current = {}  # node → (a symbol of that name, the digest of all its definitions)
        for path, entry in index.files.items():
            digests = index.digests(path)
            current.update(((path, s.qualname), (s, digests[s.qualname])) for s in entry.facts.symbols)
        tests = {t.nodeid for t in index.tests()}

        def first_reason(deps: Deps) -> str | None:
            return next((r for node, (digest, how) in deps.code.items()
                         if (r := self._reason(node, digest, how, exact, holders, current))), None)

        reason = first_reason(self.recorded.session)
        if reason:
            return {nodeid: f"at collection, {reason}" for nodeid in tests}
        reasons: dict[str, str] = {}
        for path, deps in self.recorded.imports.items():
            reason = first_reason(deps) if path in index.files else None
            if reason is None:
                continue
            reason = f"at import of {path}, {reason}"
            own = [t.nodeid for t in index.tests(path)]
            if not own or not self.per_module:
                return {nodeid: reason for nodeid in tests}
            users = set(own) | set(index.tests_reaching({(path, MODULE)}))
            users |= {n for n, d in self.recorded.tests.items() if any(node[0] == path for node in d.code)}
            for nodeid in users & tests:
                reasons.setdefault(nodeid, reason)
        for nodeid, deps in self.recorded.tests.items():
            if nodeid in tests and nodeid not in reasons:
                reason = first_reason(deps)
                if reason:
                    reasons[nodeid] = reason
        return reasons

    @staticmethod
    def _reason(node, digest, how, exact, holders, current) -> str | None:
        now, digest_now = current.get(node, (None, None))
        kind = now.kind if now else "symbol"
        if node in exact:
            c = exact[node]
            return f"{_phrase(node, how, kind)} ({c.what} at {c.path}:{c.line})"
        if node in holders:
            c = holders[node]
            return f"{_phrase(node, how, kind)}, where {c.qualname} was {c.what} ({c.path}:{c.line})"
        if now is None:
            return f"{_phrase(node, how, kind)}, which is gone since the test last ran ({node[0]})"
        if digest_now != digest:
            return f"{_phrase(node, how, kind)}, changed since the test last ran ({node[0]}:{now.start_line})"
        return None


class DataFiles:
    """Tests that read a changed data file or listed a directory whose entries changed."""

    def __init__(self, recorded: Recorded, root: Path):
        self.recorded = recorded
        self.root = root

    def select(self, index: ProjectIndex, changes: list[Changed]) -> dict[str, str]:
        changed = {c.path: c for c in changes if c.kind == "file"}
        for c in list(changed.values()):
            changed.setdefault(str(PurePosixPath(c.path).parent) + "/", c)  # its directory's listing
        states: dict[str, str | None] = {}

        def reason(rel: str, was: FileState) -> str | None:
            if rel not in states:
                states[rel] = self._reason(rel, was, changed)
            return states[rel]

        for rel, was in self.recorded.session.files.items():
            why = reason(rel, was)
            if why:
                return {t.nodeid: f"{why}, at import or collection" for t in index.tests()}
        tests = {t.nodeid for t in index.tests()}
        found: dict[str, str] = {}
        for nodeid, deps in self.recorded.tests.items():
            if nodeid not in tests:
                continue
            why = next((r for rel, was in deps.files.items() if (r := reason(rel, was))), None)
            if why:
                found[nodeid] = why
        return found

    def _reason(self, rel: str, was: FileState, changed: dict[str, Changed]) -> str | None:
        verb = "listed" if rel.endswith("/") else "read"
        name = rel.rstrip("/") or "."
        if rel in changed:
            c = changed[rel]
            return f"{verb} {name}, where {c.path} was {c.what}" if verb == "listed" else f"read {name} ({c.what})"
        try:
            st = (self.root / rel).stat()
            if (st.st_size, st.st_mtime_ns) == was[:2]:
                return None
        except OSError:
            if was == MISSING:
                return None
        if file_state(self.root, rel)[2] != was[2]:
            return f"{verb} {name}, which changed since the test last ran"
        return None


class Distributions:
    """Tests that ran code of an installed distribution whose version changed since."""

    def __init__(self, recorded: Recorded, installed: Callable[[], dict[str, str] | None]):
        self.recorded = recorded
        self.installed = installed  # current versions, or None when nothing can have changed

    def select(self, index: ProjectIndex, changes: list[Changed]) -> dict[str, str]:
        now = self.installed()
        if now is None:
            return {}
        tests = {t.nodeid for t in index.tests()}
        found: dict[str, str] = {}
        for nodeid, deps in self.recorded.tests.items():
            moved = next((d for d, v in deps.dists.items() if now.get(d) != v), None)
            if nodeid in tests and moved:
                found[nodeid] = f"ran {moved} {deps.dists[moved]}, now {now.get(moved) or 'not installed'}"
        return found


class ConfigFiles:
    """pytest reads its configuration before any plugin can watch: a change can affect every test."""

    def select(self, index: ProjectIndex, changes: list[Changed]) -> dict[str, str]:
        config = next((c for c in changes if c.kind == "file" and PurePosixPath(c.path).name in CONFIG_FILES), None)
        if config is None:
            return {}
        return {t.nodeid: f"{config.path} configures pytest and {config.what}" for t in index.tests()}


class Unrecorded:
    """Another source's choices, kept only for tests with no record of what they used."""

    def __init__(self, source: Evidence, recorded: Recorded):
        self.source = source
        self.recorded = recorded

    def select(self, index: ProjectIndex, changes: list[Changed]) -> dict[str, str]:
        return {n: r for n, r in self.source.select(index, changes).items() if n not in self.recorded.tests}


def evidence_for(mode: str, recorded: Recorded, root: Path,
                 installed: Callable[[], dict[str, str] | None]) -> tuple[Evidence, ...]:
    """precise: what each recorded test used, plus static evidence for new names and for tests
    with no record; conservative: every source for every test."""
    dynamic = (Executed(recorded, per_module=mode != "conservative"), DataFiles(recorded, root),
               Distributions(recorded, installed), ConfigFiles())
    if mode == "conservative":
        return dynamic + DEFAULT_EVIDENCE
    return dynamic + (StaticNames(("added",)), ConftestScope(outside_tests=True)) + tuple(
        Unrecorded(source, recorded) for source in DEFAULT_EVIDENCE)
