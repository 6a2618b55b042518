"""The `.tracefix/` SQLite store: parsed file facts, the last-tested snapshot, test results and
what each test used on its last run.

WAL mode so a CLI and a server can use it at once; a corrupt or foreign-version file is moved
aside and rebuilt with a warning, never a crash.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from pathlib import Path

from tracefix import __version__

log = logging.getLogger(__name__)
SCHEMA = 3
UPGRADABLE = {"1", "2"}  # older schemas upgraded in place (`_upgrade`)
GITIGNORE = "# created by tracefix: local state, never commit\n*\n"

_TABLES = """
create table if not exists meta (key text primary key, value text not null);
create table if not exists files (
    path text primary key, mtime_ns integer, size integer, digest text, facts text not null);
create table if not exists snapshot (path text primary key, symbols text not null);
create table if not exists graph (part text primary key, data blob not null);
create table if not exists results (
    nodeid text primary key, outcome text not null, duration real, data text not null, run_at real);
create table if not exists kv (key text primary key, value text not null);
create table if not exists versions (
    id integer primary key, path text not null, qualname text not null, digest text not null,
    unique (path, qualname, digest));
create table if not exists deps (nodeid text primary key, code blob, files text not null, dists text not null);
create table if not exists green (nodeid text not null, path text not null, qualname text not null, digest text not null);
create index if not exists green_nodeid on green (nodeid);
create index if not exists green_node on green (path, qualname, digest);
create table if not exists green_sources (
    path text not null, qualname text not null, digest text not null,
    text text not null, at real not null, primary key (path, qualname, digest));
"""
# schema 2 kept one row per test and symbol (123k rows, 31 MB for tomlkit's 1,203 tests); schema 3
# interns each symbol version once and keeps a test's code as one blob of version ids
OLD_TABLES = ("test_deps", "test_files", "test_dists")
DepsRow = tuple[bytes | None, str, str]  # (code, files as JSON, dists as JSON); code None: incomplete
FILES = ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm", ".gitignore")  # what the store writes


class StoreError(Exception):
    """The store cannot be kept where it belongs; the message says why and what to do."""


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


class Store:
    def __init__(self, root: Path):
        self.root = root
        self.dir = root / ".tracefix"
        self.path = self.dir / "index.sqlite"
        self.warnings: list[str] = []
        self._file: tuple[int, int] | None = None  # the file the connection has open
        self._db = self._prepare()

    def _prepare(self) -> sqlite3.Connection:
        self._check_place()
        try:
            self.dir.mkdir(exist_ok=True)  # in the workspace folder, never creating it
        except OSError as exc:
            raise StoreError(f"cannot create {self.dir} to keep tracefix's state: {exc.strerror}") from None
        try:  # O_EXCL | O_NOFOLLOW: never written through a link someone put there
            fd = os.open(self.dir / ".gitignore", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(GITIGNORE)
        db = self._open()
        self._file = _identity(self.path)
        return db

    def _check_place(self) -> None:
        """`.tracefix` must be a folder inside the workspace, and the store's files no links: a
        cloned repository could otherwise make tracefix write wherever a link points."""
        how = f"move it away (tracefix keeps its state in a folder {self.dir.name} of the workspace)"
        if self.dir.is_symlink():
            target = os.readlink(self.dir)
            if not self.dir.exists():
                raise StoreError(f"{self.dir} is a symlink to {target}, which does not exist; {how}")
            if not self.dir.resolve().is_relative_to(self.root.resolve()):
                raise StoreError(f"{self.dir} is a symlink to {target}, outside the workspace: not followed; {how}")
        if self.dir.exists() and not self.dir.is_dir():
            raise StoreError(f"{self.dir} is a file, not a folder; {how}")
        for name in FILES:
            if (self.dir / name).is_symlink():
                raise StoreError(f"{self.dir / name} is a symlink: not followed; remove it")

    @property
    def db(self) -> sqlite3.Connection:
        """The open database; reopened (with a warning) if something deleted or replaced the file
        under us, so later writes are not lost into an unlinked file. While the workspace folder
        itself is gone, the old one serves: recreating the folder would leave an empty one holding
        only `.tracefix/` where the user restores theirs."""
        now = _identity(self.path)
        if now != self._file and self.dir.parent.is_dir():
            self._db.close()
            what = (
                "deleted while in use; started a new, empty index"
                if now is None
                else "replaced while in use; opened it"
            )
            message = f"{self.path} was {what}"
            self.warnings.append(message)
            log.warning(message)
            self._db = self._prepare()
        return self._db

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        db.execute("pragma journal_mode=wal")
        db.execute("pragma synchronous=normal")
        db.executescript(_TABLES)
        return db

    def _open(self) -> sqlite3.Connection:
        try:
            db = self._connect()
            row = db.execute("select value from meta where key='schema'").fetchone()
            if row is None:
                self._stamp(db)
                return db
            if row[0] == str(SCHEMA) or row[0] in UPGRADABLE:
                db.execute("pragma quick_check").fetchone()
                if row[0] in UPGRADABLE:
                    self._upgrade(db)
                self._stamp(db)
                return db
            db.close()
            reason = f"it was written by another tracefix version (schema {row[0]})"
        except sqlite3.DatabaseError as exc:
            reason = f"it is corrupt ({exc})"
        aside = self.path.with_name(f"index.sqlite.broken-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                src.replace(Path(str(aside) + suffix))
        self.warnings.append(f"rebuilt the tracefix index: {reason}; the old file is at {aside.name}")
        db = self._connect()
        self._stamp(db)
        return db

    def _upgrade(self, db: sqlite3.Connection) -> None:
        """What each test used was stored per row, against symbols outlined another way: drop it;
        the next run of each test records it again. Results, settings and the snapshot stay."""
        with db:
            db.execute("begin")
            for table in OLD_TABLES:
                db.execute(f"drop table if exists {table}")
        self.warnings.append("upgraded the tracefix index: what each test used is recorded again on its next run")

    def _stamp(self, db: sqlite3.Connection) -> None:
        db.executemany(
            "insert or replace into meta values (?, ?)",
            [("schema", str(SCHEMA)), ("version", __version__)],
        )

    def close(self) -> None:
        self._db.close()

    # file facts
    def load_files(self) -> dict[str, tuple[int, int, str, str]]:
        """path → (mtime_ns, size, digest, facts as JSON text: decoded by the index as needed)."""
        rows = self.db.execute("select path, mtime_ns, size, digest, facts from files")
        return {p: (m, s, d, f) for p, m, s, d, f in rows}

    def save_files(self, rows: list[tuple[str, int, int, str, str]], removed: list[str]) -> None:
        with self.db:
            self.db.execute("begin")
            self.db.executemany("insert or replace into files values (?, ?, ?, ?, ?)", rows)
            self.db.executemany("delete from files where path = ?", [(p,) for p in removed])

    # the static graph, saved whole: reused while it holds for the files (ProjectIndex.restore)
    def load_graph(self) -> dict[str, bytes]:
        return {part: bytes(data) for part, data in self.db.execute("select part, data from graph")}

    def save_graph(self, parts: dict[str, bytes]) -> None:
        with self.db:
            self.db.execute("begin")
            self.db.execute("delete from graph")
            self.db.executemany("insert into graph values (?, ?)", list(parts.items()))

    # the symbols as they were when their tests last ran
    def snapshot(self) -> dict[str, list]:
        return {p: json.loads(s) for p, s in self.db.execute("select path, symbols from snapshot")}

    def save_snapshot(self, symbols: dict[str, list]) -> None:
        with self.db:
            self.db.execute("begin")
            self.db.executemany(
                "insert or replace into snapshot values (?, ?)",
                [(p, json.dumps(s)) for p, s in symbols.items()],
            )

    def has_snapshot(self) -> bool:
        return self.db.execute("select 1 from snapshot limit 1").fetchone() is not None

    # test results
    def save_results(self, results: list[dict]) -> None:
        now = time.time()
        with self.db:
            self.db.execute("begin")
            self.db.executemany(
                "insert or replace into results values (?, ?, ?, ?, ?)",
                [(r["nodeid"], r["outcome"], r.get("duration", 0.0), json.dumps(r), now) for r in results],
            )

    def outcomes(self) -> dict[str, str]:
        """nodeid → outcome of its last run."""
        return dict(self.db.execute("select nodeid, outcome from results"))

    def results(self) -> dict[str, dict]:
        return {n: json.loads(d) for n, d in self.db.execute("select nodeid, data from results")}

    def forget_results(self, nodeids: list[str]) -> None:
        with self.db:
            self.db.execute("begin")
            self.db.executemany("delete from results where nodeid = ?", [(n,) for n in nodeids])

    # what each test used on its last run (nodeid "": at collection; IMPORT + path: at a module's import)
    def deps(self) -> tuple[list[tuple[int, str, str, str]], list[tuple[str, bytes | None, str, str]], int]:
        """(versions, deps rows, generation), read in one transaction."""
        with self.db:
            self.db.execute("begin")
            versions = self.db.execute("select id, path, qualname, digest from versions").fetchall()
            rows = self.db.execute("select nodeid, code, files, dists from deps").fetchall()
            return versions, rows, self.deps_generation()

    def deps_generation(self) -> int:
        """Counts writes of deps, so a process that keeps them in memory sees another's writes."""
        row = self.db.execute("select value from meta where key = 'deps_generation'").fetchone()
        return int(row[0]) if row else 0

    def intern(self, versions: set[tuple[str, str, str]]) -> list[tuple[int, str, str, str]]:
        """Ids for (path, qualname, digest) versions, added where new."""
        with self.db:
            self.db.execute("begin")
            self.db.executemany("insert or ignore into versions (path, qualname, digest) values (?, ?, ?)", versions)
            find = "select id from versions where path = ? and qualname = ? and digest = ?"
            return [(self.db.execute(find, v).fetchone()[0], *v) for v in versions]

    def save_deps(self, rows: dict[str, DepsRow], removed: list[str]) -> int:
        """Replace each nodeid's row, remove those of `removed`; the new generation."""
        with self.db:
            self.db.execute("begin")
            self.db.executemany("insert or replace into deps values (?, ?, ?, ?)", [(n, *r) for n, r in rows.items()])
            self.db.executemany("delete from deps where nodeid = ?", [(n,) for n in removed])
            generation = self.deps_generation() + 1
            self.db.execute("insert or replace into meta values ('deps_generation', ?)", (str(generation),))
            return generation

    # the functions each test executed when it last passed, and their sources then
    def save_green(
        self, tests: dict[str, list[tuple[str, str, str]]], sources: list[tuple[str, str, str, str]]
    ) -> None:
        """Replace each nodeid's green rows with its (path, qualname, digest) rows; add the sources
        (path, qualname, digest, text) not stored yet; drop those no test refers to."""
        now = time.time()
        with self.db:
            self.db.execute("begin")
            self.db.executemany("delete from green where nodeid = ?", [(n,) for n in tests])
            rows = [(n, *row) for n, found in tests.items() for row in found]
            self.db.executemany("insert into green values (?, ?, ?, ?)", rows)
            self.db.executemany(
                "insert or ignore into green_sources values (?, ?, ?, ?, ?)", [(*row, now) for row in sources]
            )
            if tests:
                self.db.execute(
                    "delete from green_sources where not exists (select 1 from green g where g.path = "
                    "green_sources.path and g.qualname = green_sources.qualname and g.digest = green_sources.digest)"
                )

    def green(self, nodeid: str) -> dict[tuple[str, str], str]:
        """(path, qualname) → digest of what nodeid executed on its last passing run; {} if it never passed."""
        rows = self.db.execute("select path, qualname, digest from green where nodeid = ?", (nodeid,))
        return {(p, q): d for p, q, d in rows}

    def green_source(self, path: str, qualname: str, digest: str) -> tuple[str, float] | None:
        """(text, when stored) of a function as it was when a test last passed with it."""
        row = self.db.execute(
            "select text, at from green_sources where path = ? and qualname = ? and digest = ?",
            (path, qualname, digest),
        ).fetchone()
        return (row[0], row[1]) if row else None

    def get(self, key: str, default=None):
        row = self.db.execute("select value from kv where key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def put(self, key: str, value) -> None:
        self.db.execute("insert or replace into kv values (?, ?)", (key, json.dumps(value)))
