"""Which interpreter runs a workspace's tests, and whether it can."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

NO_PYTEST = "pytest is not installed in"


def no_pytest(python: str) -> str:
    return f"{NO_PYTEST} {python} (run: {python} -m pip install pytest)"


class InterpreterError(Exception):
    """The configured or discovered interpreter cannot run tests."""


def find_python(root: Path, configured: str | None = None) -> str:
    """setting, else .venv/venv in the workspace, else $VIRTUAL_ENV, else our own interpreter."""
    if configured:
        path = Path(os.path.expanduser(configured))
        if not path.is_absolute() and os.sep not in configured:
            found = shutil.which(configured)
            if found:
                return found
        path = path if path.is_absolute() else root / path
        if not path.exists():
            raise InterpreterError(f"tracefix.python is set to {configured!r}, which does not exist")
        return str(path)
    bindir = "Scripts" if os.name == "nt" else "bin"
    candidates = [root / name / bindir / "python" for name in (".venv", "venv")]
    if os.environ.get("VIRTUAL_ENV"):
        candidates.append(Path(os.environ["VIRTUAL_ENV"]) / bindir / "python")
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    return sys.executable


def check_python(python: str) -> str | None:
    """None if `python` can import pytest, else a message that says what to do."""
    try:
        proc = subprocess.run([python, "-c", "import pytest"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot start the test interpreter {python}: {exc}"
    if proc.returncode != 0:
        return no_pytest(python)
    return None
