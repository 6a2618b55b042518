"""Test runs keep compiled bytecode outside the workspace and never run bytecode of an older text.

Python (and pytest before 9.2, for rewritten test modules) trusts cached bytecode while the
source's mtime in whole seconds and its size are unchanged; these edits keep both.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.projects import write

CODE = "def rate():\n    return 2\n"
TEST = "from app import rate\n\n\ndef test_rate():\n    assert rate() == 2\n"


def check(root: Path, cache: Path) -> tuple[int, dict]:
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    proc = subprocess.run(
        [sys.executable, "-m", "tracefix", "check", str(root), "--format", "json", "--no-trace"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def same_second_same_size(path: Path, old: str, new: str) -> None:
    """Replace old with new (as long) and keep the file's mtime in whole seconds."""
    assert len(old) == len(new)
    before = path.stat()
    path.write_text(path.read_text().replace(old, new))
    second, instant = divmod(before.st_mtime_ns, 10**9)
    later = second * 10**9 + (instant + 1_000_000) % 10**9  # another instant of the same second
    os.utime(path, ns=(later, later))


@pytest.mark.parametrize(
    ("rel", "old", "new", "outcome"),
    [
        ("app.py", "return 2", "return 3", "failed"),  # a module Python compiled
        ("tests/test_app.py", "== 2", "!= 2", "failed"),  # a test module pytest rewrote
    ],
)
def test_an_edit_that_keeps_mtime_seconds_and_size_runs_the_new_text(tmp_path, rel, old, new, outcome):
    root = write(tmp_path / "ws", {"app.py": CODE, "tests/test_app.py": TEST})
    cache = tmp_path / "cache"
    code, data = check(root, cache)
    assert code == 0 and [r["outcome"] for r in data["results"]] == ["passed"]
    compiled = list(cache.rglob("*.pyc"))
    assert any(p.name.startswith("app.") for p in compiled) and any("pytest" in p.name for p in compiled)

    same_second_same_size(root / rel, old, new)
    code, data = check(root, cache)
    assert code == 1 and [r["outcome"] for r in data["results"]] == [outcome]

    same_second_same_size(root / rel, new, old)  # and back: the text that passed
    code, data = check(root, cache)
    assert code == 0 and [r["outcome"] for r in data["results"]] == ["passed"]


def test_runs_write_no_bytecode_into_the_workspace(tmp_path):
    root = write(tmp_path / "ws", {"app.py": CODE, "tests/test_app.py": TEST})
    check(root, tmp_path / "cache")
    assert not list(root.rglob("__pycache__")) and not list(root.rglob("*.pyc"))
    assert list((tmp_path / "cache" / "tracefix" / "bytecode").rglob("*.pyc"))
