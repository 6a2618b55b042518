"""`tracefix check` end to end: a real subprocess, a real git repository, real pytest runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.projects import write

from tracefix.settings import merge


def tracefix(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "tracefix", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def check_json(root: Path, *args):
    proc = tracefix("check", str(root), "--format", "json", "--no-trace", *args)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def git(root: Path, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def repo(fixed_shop: Path) -> Path:
    git(fixed_shop, "init", "-q")
    git(fixed_shop, "add", ".")
    git(fixed_shop, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    return fixed_shop


def test_first_run_without_history_runs_everything_and_reports_the_failure(shop):
    code, data = check_json(shop)
    assert code == 1
    assert len(data["selected"]) == 8
    failed = [r for r in data["results"] if r["outcome"] == "failed"]
    assert [r["nodeid"] for r in failed] == ["tests/test_pricing.py::test_bulk_discount_tiers"]
    assert failed[0]["location"] == {
        "path": "tests/test_pricing.py",
        "line": 11,
        "function": "test_bulk_discount_tiers",
    }
    kinds = {(d["path"], d["line"], d["kind"]) for d in data["diagnostics"]}
    assert kinds == {("tests/test_pricing.py", 11, "assert"), ("shop/pricing.py", 11, "suspect")}
    assert all(d["nodeid"] and d["severity"] == "error" for d in data["diagnostics"])


def test_uncommitted_change_against_git_head(repo):
    pricing = repo / "shop" / "pricing.py"
    pricing.write_text(
        pricing.read_text().replace("return price * (1 - percent / 100)", "return price * (1 + percent / 100)")
    )
    code, data = check_json(repo)
    assert code == 1
    assert data["changed"] == [
        {"path": "shop/pricing.py", "symbol": "apply_discount", "kind": "function", "what": "changed", "line": 6}
    ]
    assert "tests/test_text.py::test_money" not in data["selected"]
    assert "tests/test_pricing.py::test_apply_discount" in data["selected"]
    assert {r["nodeid"] for r in data["results"]} == set(data["selected"])
    failed = sorted(r["nodeid"] for r in data["results"] if r["outcome"] == "failed")
    # the run is recorded: with nothing changed since, only the tests that failed run again
    code, data = check_json(repo)
    assert (code, data["changed"], sorted(data["selected"]), data["verdict"]) == (1, [], failed, "failed")


def test_since_revision_and_explain(repo):
    text = repo / "shop" / "text.py"
    text.write_text(text.read_text().replace('EUR"', 'USD"'))
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "usd")
    code, data = check_json(repo, "--since", "HEAD~1", "--explain")
    assert code == 1
    assert data["selected"] == ["tests/test_text.py::test_money", "tests/test_text.py::test_receipt_line_width"]
    assert data["explain"]["tests/test_text.py::test_money"].startswith("reaches money (changed at shop/text.py:4)")
    assert data["explain"]["tests/test_cart.py::test_cart_total_with_tax"] == "skipped: no path from the change"


def test_no_run_says_what_would_run(shop):
    proc = tracefix("check", str(shop), "--no-run", "--all")
    assert proc.returncode == 0
    assert "would run 8 test(s)" in proc.stdout
    assert not (shop / ".pytest_cache").exists()


def test_text_report(shop):
    proc = tracefix("check", str(shop), "--no-trace")
    assert proc.returncode == 1
    assert "tests/test_pricing.py:11: error: test_bulk_discount_tiers failed: assert 5 == 10" in proc.stdout
    assert "shop/pricing.py:11: error: bulk_discount: likely cause of test_bulk_discount_tiers failing" in proc.stdout
    assert "\033[" not in proc.stdout  # not a terminal: no colour


@pytest.mark.parametrize(
    "args, message",
    [
        (["check", "/no/such/dir"], "is not a directory"),
        (["check", "--since"], "expected one argument"),
        (["check", "--format", "xml"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2(args, message):
    proc = tracefix(*args)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_bad_revision_and_bad_interpreter(repo):
    proc = tracefix("check", str(repo), "--since", "no-such-rev")
    assert proc.returncode == 2 and "not a git revision" in proc.stderr
    (repo / "pyproject.toml").write_text('[tool.tracefix]\ntimeout = "soon"\n')
    proc = tracefix("check", str(repo), "--all", "--python", "/no/python")
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr
    assert "tracefix.timeout = 'soon' is not a number" in proc.stderr


@pytest.mark.parametrize("warm", [True, False])
def test_a_checks_run_forks_from_the_worker_it_started_first(tmp_path, warm):
    """The worker starts while tracefix indexes and selects; warmRunner = false runs a new interpreter."""
    parent = tmp_path / "parent"
    root = write(
        tmp_path / "ws",
        {
            "pyproject.toml": f"[tool.tracefix]\nwarmRunner = {str(warm).lower()}\n",
            "tests/test_where.py": (
                "import os\n\n\ndef test_where():\n"
                f"    with open('/proc/%d/cmdline' % os.getppid(), 'rb') as f, open({str(parent)!r}, 'wb') as out:\n"
                "        out.write(f.read())\n"
            ),
        },
    )
    code, data = check_json(root)
    assert code == 0 and [r["outcome"] for r in data["results"]] == ["passed"]
    argv = parent.read_bytes().split(b"\0")
    assert (b"tracefix_warm" in argv) is warm, argv


def test_an_interpreter_without_pytest_is_a_setup_error_that_records_nothing(shop, tmp_path):
    """Learnt from the run itself (no probe before it): exit 2, the remedy, and no results kept."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    bare = str(tmp_path / "bare" / "bin" / "python")
    proc = tracefix("check", str(shop), "--python", bare, "--no-trace")
    assert proc.returncode == 2
    assert f"pytest is not installed in {bare} (run: {bare} -m pip install pytest)" in proc.stderr
    code, data = check_json(shop)  # the next check with pytest runs everything, as a first run
    assert code == 1 and len(data["selected"]) == 8


def test_a_reader_that_leaves_early_ends_the_check_quietly(shop):
    """`tracefix check --all | head -1`: head leaves after one line; no traceback, and the exit
    status of a program that SIGPIPE ended, as other tools give (141)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracefix", "check", str(shop), "--all", "--no-trace"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before the first write: every write fails
    _, err = proc.communicate(timeout=300)
    assert err.decode() == ""
    assert proc.returncode == 141


def test_version():
    proc = tracefix("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("tracefix ")


@pytest.mark.parametrize(
    "layers, field, value, warned",
    [
        ([{"timeout": 5}], "timeout", 5.0, False),
        ([{"timeout": -1}], "timeout", 120.0, True),
        ([{"selection": "all"}, {"selection": "precise"}], "selection", "precise", False),
        ([{"selection": "some"}], "selection", "precise", True),
        ([{"runOnSave": "yes"}], "run_on_save", True, True),
        ([{"fix": {"offerUnverified": True}}], "offer_unverified", True, False),
        ([{"trace": {"timeout": 3, "server": "verbose"}}], "trace_timeout", 3.0, False),
        ([{"trace.timeout": 0}], "trace_timeout", 10.0, True),
        ([{"trace": {"timeout": "soon"}}], "trace_timeout", 10.0, True),
        ([{"nope": 1}], "timeout", 120.0, True),
        (["not a table"], "timeout", 120.0, True),
    ],
)
def test_settings_validation(layers, field, value, warned):
    settings, warnings = merge(*layers)
    assert getattr(settings, field) == value
    assert bool(warnings) == warned


def test_fresh_clone_finds_a_failure_through_a_re_export_and_explains_a_conservative_choice(tmp_path):
    # nothing recorded: selection is static only, and must still run every test the edit breaks
    write(
        tmp_path,
        {
            "pkg/__init__.py": (
                "import importlib\n\nfrom .core import *\n\ndef __getattr__(name):\n"
                "    return getattr(importlib.import_module('.lazy', __name__), name)\n"
            ),
            "pkg/core.py": "__all__ = ['double']\n\ndef double(x):\n    return 2 * x\n",
            "pkg/lazy.py": "def triple(x):\n    return 3 * x\n",
            "pkg/text.py": "def shout(s):\n    return s.upper()\n",
            "tests/test_core.py": "import pkg\n\ndef test_double():\n    assert pkg.double(2) == 4\n",
            "tests/test_lazy.py": "import pkg\n\ndef test_triple():\n    assert pkg.triple(2) == 6\n",
            "tests/test_text.py": "from pkg.text import shout\n\ndef test_shout():\n    assert shout('a') == 'A'\n",
        },
    )
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    core = tmp_path / "pkg" / "core.py"
    core.write_text(core.read_text().replace("2 * x", "2 + x + 1"))
    code, data = check_json(tmp_path, "--explain")
    assert code == 1
    assert data["selected"] == ["tests/test_core.py::test_double", "tests/test_lazy.py::test_triple"]
    assert {r["nodeid"]: r["outcome"] for r in data["results"]} == {
        "tests/test_core.py::test_double": "failed",
        "tests/test_lazy.py::test_triple": "passed",
    }
    assert data["explain"]["tests/test_core.py::test_double"].startswith("reaches double (changed at pkg/core.py:3)")
    assert data["explain"]["tests/test_lazy.py::test_triple"] == (
        "could not resolve triple in pkg/__init__.py (its module __getattr__ answers): selected conservatively "
        "(double (changed at pkg/core.py:3))"
    )
    assert data["explain"]["tests/test_text.py::test_shout"] == "skipped: no path from the change"
