"""The runner against real pytest processes: streaming, failures, hangs and crashes."""

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tracefix.running.interpreter import InterpreterError, check_python, find_python
from tracefix.running.process import Limits
from tracefix.running.runner import run_tests

HOSTILE = {
    "test_hostile.py": (
        "import os, time, ctypes\n"
        "def test_ok():\n    assert 1\n"
        "def test_fail():\n    x = {'a': 1}\n    assert x == {'a': 2}\n"
        "def test_hang():\n    time.sleep(600)\n"
        "def test_exit():\n    os._exit(3)\n"
        "def test_segfault():\n    ctypes.string_at(0)\n"
        "def test_noisy():\n    print('x' * 5_000_000)\n"
    ),
}


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    for name, text in HOSTILE.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def run(root, nodeids, timeout=60.0, **kw):
    return asyncio.run(run_tests(root, sys.executable, nodeids, limits=Limits(timeout=timeout), **kw))


def test_results_stream_with_locations(shop):
    seen = []
    report = run(shop, ["tests/test_pricing.py"], on_result=lambda r: seen.append((r.nodeid, r.outcome)))
    assert report.status == "ok"
    assert seen == [
        ("tests/test_pricing.py::test_apply_discount", "passed"),
        ("tests/test_pricing.py::test_bulk_discount_tiers", "failed"),
        ("tests/test_pricing.py::test_line_total_uses_bulk_discount", "passed"),
    ]
    failed = report.failed[0]
    assert (failed.location.path, failed.location.line) == ("tests/test_pricing.py", 11)
    assert (failed.expected, failed.actual) == ("10", "5")
    assert failed.message.startswith("assert 5 == 10")


def test_deepest_workspace_frame(tmp_path):
    (tmp_path / "lib.py").write_text("def inner(x):\n    return 1 / x\n\ndef outer(x):\n    return inner(x)\n")
    (tmp_path / "test_lib.py").write_text("from lib import outer\n\ndef test_zero():\n    outer(0)\n")
    report = run(tmp_path, ["test_lib.py"])
    r = report.failed[0]
    assert (r.location.path, r.location.line) == ("test_lib.py", 4)
    assert (r.frame.path, r.frame.line, r.frame.function) == ("lib.py", 2, "inner")
    assert "ZeroDivisionError" in r.message


def test_fixture_error_and_collection_error(tmp_path):
    (tmp_path / "test_fix.py").write_text(
        "import pytest\n@pytest.fixture\ndef broken():\n    raise RuntimeError('boom')\n"
        "def test_uses(broken):\n    pass\n"
    )
    (tmp_path / "test_bad.py").write_text("import not_a_module_anywhere\n")
    report = run(tmp_path, ["test_fix.py", "test_bad.py"])
    outcomes = {r.nodeid: r.outcome for r in report.results}
    assert outcomes["test_fix.py::test_uses"] == "error"
    assert outcomes["test_bad.py"] == "error"
    assert "not_a_module_anywhere" in next(r.message for r in report.results if r.nodeid == "test_bad.py")


def test_hanging_test_is_killed_and_reported(hostile):
    started = time.monotonic()
    report = run(
        hostile, ["test_hostile.py::test_ok", "test_hostile.py::test_hang", "test_hostile.py::test_fail"], timeout=8
    )
    assert time.monotonic() - started < 30
    outcomes = {r.nodeid: r.outcome for r in report.results}
    assert report.status == "timeout"
    assert outcomes == {
        "test_hostile.py::test_ok": "passed",
        "test_hostile.py::test_hang": "timeout",
        "test_hostile.py::test_fail": "not run",
    }


@pytest.mark.parametrize("test", ["test_exit", "test_segfault"])
def test_crashing_test_is_reported(hostile, test):
    report = run(hostile, [f"test_hostile.py::{test}"])
    assert report.status == "crashed"
    assert report.results[0].outcome == "crashed"
    assert "before pytest finished" in report.message


def test_huge_output_is_capped(hostile):
    report = run(hostile, ["test_hostile.py::test_noisy", "test_hostile.py::test_fail"])
    assert [r.outcome for r in report.results] == ["passed", "failed"]
    assert len(report.output) <= 1_000_000


def test_cancel_kills_the_process_group(tmp_path):
    # a name of its own: pgrep must not see the hang of another test running beside this one
    (tmp_path / "test_cancelled.py").write_text(
        "import time\n\n\ndef test_hang_until_cancelled():\n    time.sleep(600)\n"
    )

    async def scenario():
        task = asyncio.create_task(
            run_tests(
                tmp_path, sys.executable, ["test_cancelled.py::test_hang_until_cancelled"], limits=Limits(timeout=120)
            )
        )
        await asyncio.sleep(3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    leftover = subprocess.run(["pgrep", "-f", "test_hang_until_cancelled"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""


def test_interpreter_discovery(tmp_path, monkeypatch):
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    assert find_python(tmp_path) == sys.executable
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    assert find_python(tmp_path) == str(tmp_path / ".venv" / "bin" / "python")
    assert find_python(tmp_path, sys.executable) == sys.executable
    with pytest.raises(InterpreterError, match="does not exist"):
        find_python(tmp_path, "/nowhere/python")


def test_interpreter_without_pytest_is_explained(tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    message = check_python(str(bare / "bin" / "python"))
    assert "pytest is not installed" in message
    report = asyncio.run(run_tests(tmp_path, str(bare / "bin" / "python"), ["x"], limits=Limits(timeout=30)))
    assert report.status == "error" and "pytest is not installed" in report.message
    missing = asyncio.run(run_tests(tmp_path, "/nowhere/python", ["x"], limits=Limits(timeout=30)))
    assert missing.status == "error" and "not found" in missing.message


def test_an_unknown_test_id_does_not_sink_the_run(shop):
    report = run(shop, ["tests/test_text.py::test_gone", "tests/test_text.py::test_money"])
    outcomes = {r.nodeid: r.outcome for r in report.results}
    assert outcomes == {"tests/test_text.py::test_money": "passed", "tests/test_text.py::test_gone": "skipped"}
    assert "not defined when the module was imported" in report.results[-1].message


def test_a_case_that_is_gone_runs_its_test_function(tmp_path):
    (tmp_path / "test_cases.py").write_text(
        "import pytest\n\n\n@pytest.mark.parametrize('n', [1, 2])\ndef test_n(n):\n    assert n\n\n\ndef test_other():\n    pass\n"
    )
    report = run(tmp_path, ["test_cases.py::test_n[3]", "test_cases.py::test_other"])  # [3] was renamed away
    assert sorted((r.nodeid, r.outcome) for r in report.results) == [
        ("test_cases.py::test_n[1]", "passed"),
        ("test_cases.py::test_n[2]", "passed"),
        ("test_cases.py::test_other", "passed"),
    ]


XDIST_SUITE = {
    "lib.py": "def inner(x):\n    return 1 / x\n\n\ndef outer(x):\n    return inner(x)\n",
    "test_many.py": (
        "import os\nimport pytest\nfrom lib import outer\n\n\n"
        "@pytest.mark.parametrize('n', range(12))\ndef test_ok(n):\n    assert outer(n + 1) > 0\n\n\n"
        "def test_compare():\n    assert {'a': 1} == {'a': 2}\n\n\n"
        "def test_frame():\n    outer(0)\n\n\n"
        "@pytest.mark.skip(reason='not today')\ndef test_skipped():\n    pass\n\n\n"
        "@pytest.mark.xfail\ndef test_xfail():\n    assert False\n\n\n"
        "@pytest.fixture\ndef broken():\n    raise RuntimeError('boom')\n\n\n"
        "def test_setup_error(broken):\n    pass\n\n\n"
        "def test_worker_dies():\n    if os.environ.get('PYTEST_XDIST_WORKER'):\n        os._exit(3)\n"
    ),
}


def test_xdist_workers_stream_what_one_process_streams(tmp_path):
    pytest.importorskip("xdist")
    for name, text in XDIST_SUITE.items():
        (tmp_path / name).write_text(text)

    def results(*extra):
        streamed = []
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}  # this suite's own
        report = run(tmp_path, ["test_many.py"], extra_args=extra, on_result=streamed.append, env=env)
        assert report.status == "ok" and report.xdist is True, report.output
        assert len(streamed) == len(report.results) == 18
        keep = ("outcome", "message", "location", "frame", "expected", "actual", "path", "line")
        return {r.nodeid: {k: getattr(r, k) for k in keep} for r in streamed}

    alone, parallel = results(), results("-n", "2")
    dies = "test_many.py::test_worker_dies"
    assert alone.pop(dies)["outcome"] == "passed"  # it only dies in an xdist worker
    died = parallel.pop(dies)
    assert died["outcome"] == "crashed" and "crashed" in died["message"]
    assert parallel == alone
    assert alone["test_many.py::test_frame"]["frame"].function == "inner"
    assert (alone["test_many.py::test_compare"]["expected"], alone["test_many.py::test_compare"]["actual"]) == (
        "{'a': 2}",
        "{'a': 1}",
    )
    assert {r["outcome"] for r in alone.values()} == {"passed", "failed", "skipped", "xfailed", "error"}
