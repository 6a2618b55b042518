"""Which files of a workspace are the project's own, and how to read them safely.

One rule for the index, review collection, file watching and the shadow copy. The plugins that
run in the user's test process keep their own copies of the directory names (they may import
nothing of tracefix); a test holds those copies to this module.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# Tool state, caches and version control: never the project's code, never needed to run its tests.
CACHE_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        ".tracefix",
        "node_modules",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".venv",
        "venv",
        "site-packages",
    }
)
# Build output holds copies of the project's modules; pytest does not collect there either.
BUILD_DIRS = frozenset({"build", "dist"})
NOT_DATA = (".md", ".rst", ".pyc", ".orig", ".rej", ".swp")  # files whose change cannot change a test outcome
MAX_FILE_BYTES = 2_000_000  # larger files are generated data, not code worth reading


def is_venv(path: Path) -> bool:
    return (path / "pyvenv.cfg").is_file()


def is_source_dir(path: Path) -> bool:
    """Whether a directory may hold the project's own code (the index and reviews walk these)."""
    name = path.name
    return not (
        name in CACHE_DIRS or name in BUILD_DIRS or name.startswith(".") or name.endswith(".egg-info") or is_venv(path)
    )


def is_copied_dir(path: Path) -> bool:
    """Whether a shadow copy of the workspace needs this directory (hidden data directories do)."""
    return not (path.name in CACHE_DIRS or path.name.endswith(".egg-info") or is_venv(path))


def is_relevant_file(rel: str) -> bool:
    """A workspace file (posix path relative to the root) whose change can change test outcomes."""
    parts = rel.split("/")
    if any(p in CACHE_DIRS or p in BUILD_DIRS or p.startswith(".") or p.endswith(".egg-info") for p in parts[:-1]):
        return False
    return not rel.endswith(NOT_DATA) and not parts[-1].startswith(".")


def read_text(path: Path, limit: int = MAX_FILE_BYTES) -> str | None:
    """The text of a regular file of at most `limit` bytes; None for anything else.

    A workspace may hold a FIFO, a device or a link to one (reading would block or never end), or
    a huge generated file: none of those is code to read."""
    data = read_bytes(path, limit)
    return None if data is None else data.decode("utf-8", "replace")


def read_bytes(path: Path, limit: int = MAX_FILE_BYTES) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)  # of what was opened, so a swap between stat and open changes nothing
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
        return None if len(data) > limit else data
    except OSError:
        return None
    finally:
        os.close(fd)
