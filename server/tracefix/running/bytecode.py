"""Compiled bytecode for test runs: kept outside the workspace, dropped when a file's content changes.

Without it every run compiles the workspace's modules and rewrites the asserts of every test
module it collects again (pytest caches rewritten modules as bytecode only where bytecode may be
written): on toolz that is most of a two-test run. tracefix never writes into a workspace, so runs
write bytecode under PYTHONPYCACHEPREFIX, a cache folder of tracefix's own (pytest >= 6 puts its
rewritten modules there too).

Python and pytest trust cached bytecode while the source's mtime in whole seconds and its size
are unchanged, so a save in the same second as the last one, at the same size (an undo, `<` for
`>`), would run the old code. Before each run, the cached bytecode of every workspace file whose
content, size or mtime in nanoseconds changed since the last run was prepared is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

STAMPS = "tracefix-stamps.json"  # beside the workspace's bytecode: each file's state when it was last run


def folder() -> Path:
    """tracefix's bytecode cache: $XDG_CACHE_HOME/tracefix/bytecode, else ~/.cache/tracefix/bytecode."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "tracefix" / "bytecode"


def prepare(root: Path, digests: dict[str, str]) -> Path | None:
    """The cache folder for a run of root's tests, with the bytecode of changed files removed;
    None if it cannot be used (then the run writes no bytecode)."""
    prefix = folder()
    mirror = prefix / root.resolve().relative_to(root.anchor)  # where Python puts root's bytecode
    try:
        old = json.loads((mirror / STAMPS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    now = {}
    for rel, digest in digests.items():
        try:
            st = os.stat(root / rel)
        except OSError:
            continue
        now[rel] = [digest, st.st_mtime_ns, st.st_size]
    try:
        for rel in set(old) | set(now):
            if old.get(rel) != now.get(rel):
                _remove(mirror / rel)
        mirror.mkdir(parents=True, exist_ok=True)
        fresh = mirror / f".{STAMPS}.{os.getpid()}"
        fresh.write_text(json.dumps(now), encoding="utf-8")
        os.replace(fresh, mirror / STAMPS)
    except OSError:
        return None
    return prefix


def _remove(source: Path) -> None:
    """Every cached compilation of source: Python's (name.cpython-311.pyc) and pytest's rewrite
    (name.cpython-311-pytest-8.3.2.pyc)."""
    with contextlib.suppress(OSError):
        for path in source.parent.iterdir():
            if path.name.startswith(source.stem + ".") and path.suffix == ".pyc":
                path.unlink(missing_ok=True)
