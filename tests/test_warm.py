"""The warm runner: runs forked from a pre-started pytest worker give what a new interpreter gives."""

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import interpreters, session, wait_until
from test_lsp_e2e import edit_and_save, errors, open_file
from tracefix.project import Project
from tracefix.running import warm
from tracefix.running.plugin.tracefix_warm import CHANGED, PULLED
from tracefix.running.process import plugin_env
from tracefix.running.results import TestResult

pytestmark = pytest.mark.skipif(not warm.supported(), reason="the warm runner needs fork and fd passing")

FILES = {
    "pkg/__init__.py": "",
    "pkg/state.py": """\
        CALLS = []
        LIMIT = 3


        def record(value):
            CALLS.append(value)
            return len(CALLS)
        """,
    "conftest.py": """\
        import os

        import pytest


        @pytest.fixture(scope="session")
        def session_log():
            with open("sessions.txt", "a") as f:
                f.write("session\\n")
            return {"seen": []}
        """,
    "tests/test_state.py": """\
        import json
        import os

        from pkg.state import LIMIT, record


        def test_module_state_is_fresh():
            assert record("x") == 1


        def test_limit():
            assert LIMIT == 3


        def test_preloaded_module_is_fresh():
            # json is imported ahead of runs in the worker: a change must not outlive the run
            assert not hasattr(json, "tracefix_mark")
            json.tracefix_mark = True


        def test_session_fixture_is_fresh(session_log):
            session_log["seen"].append(1)
            assert session_log["seen"] == [1]


        def test_parent(session_log):
            with open("parents.txt", "a") as f:
                f.write(f"{os.getppid()}\\n")


        def test_fails():
            assert LIMIT + 1 == 5
        """,
    "tests/test_bad.py": """\
        import os
        import time


        def test_crash():
            os._exit(3)


        def test_hang():
            with open("hang.pid", "w") as f:
                f.write(str(os.getpid()))
            time.sleep(120)
        """,
}
STATE_TESTS = [
    f"tests/test_state.py::{name}"
    for name in (
        "test_module_state_is_fresh",
        "test_limit",
        "test_preloaded_module_is_fresh",
        "test_session_fixture_is_fresh",
        "test_parent",
        "test_fails",
    )
]


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def outcomes(report) -> list[tuple[str, str, str]]:
    def first(r) -> str:
        return r.message.splitlines()[0].removeprefix("AssertionError: ") if r.message else ""

    return sorted((r.nodeid, r.outcome, first(r)) for r in report.results)


def last_parent(root: Path) -> int:
    return int((root / "parents.txt").read_text().split()[-1])


async def warmed(root: Path, python: str, settings: dict | None = None) -> Project:
    """A project whose worker is up: the first run starts cold and starts the worker."""
    project = Project(root, {"python": python, **(settings or {})}, warm=True)
    await project.run(["tests/test_state.py::test_limit"])
    assert await project.pool.ready(), project.pool.worker.dead
    return project


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
async def test_warm_runs_match_cold_runs(tmp_path, python):
    root = tmp_path / "proj"
    write(root, FILES)
    cold = Project(root, {"python": python})
    expected = outcomes(await cold.run(STATE_TESTS))
    cold_parent = last_parent(root)
    assert ("tests/test_state.py::test_fails", "failed", "assert (3 + 1) == 5") in expected
    assert sum(outcome == "passed" for _, outcome, _ in expected) == 5

    project = await warmed(root, python)
    worker = project.pool.worker.process.pid
    for _ in range(3):  # each run starts from fresh modules, fixtures and third-party state
        sessions = (root / "sessions.txt").read_text().count("session")
        assert outcomes(await project.run(STATE_TESTS)) == expected
        assert last_parent(root) == worker != cold_parent  # forked from the worker, not a new interpreter
        assert (root / "sessions.txt").read_text().count("session") == sessions + 1

    # edits to the workspace's code and conftest reach the next warm run
    write(
        root,
        {
            "pkg/state.py": FILES["pkg/state.py"].replace("LIMIT = 3", "LIMIT = 4"),
            "conftest.py": FILES["conftest.py"].replace('"seen": []', '"seen": [0]'),
        },
    )
    changed = outcomes(await cold.run(STATE_TESTS))
    assert ("tests/test_state.py::test_limit", "failed", "assert 4 == 3") in changed
    assert outcomes(await project.run(STATE_TESTS)) == changed
    assert last_parent(root) == worker
    project.close()
    cold.close()


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
async def test_worker_survives_crashes_timeouts_and_cancels(tmp_path):
    root = tmp_path / "proj"
    write(root, FILES)
    project = await warmed(root, interpreters()[0])
    worker = project.pool.worker.process.pid

    crash = await project.run(["tests/test_bad.py::test_crash"])  # forked, then again cold: the same crash
    assert crash.status == "crashed" and "exit status 3" in crash.message
    assert [(r.nodeid, r.outcome) for r in crash.results] == [("tests/test_bad.py::test_crash", "crashed")]

    project.reconfigure({"python": interpreters()[0], "timeout": 5})
    hang = await project.run(["tests/test_bad.py::test_hang"])  # the fork gets the per-test limit too
    assert hang.status == "timeout"
    assert hang.message.startswith("tests/test_bad.py::test_hang ran past the per-test timeout of 5 s")
    assert [(r.nodeid, r.outcome) for r in hang.results] == [("tests/test_bad.py::test_hang", "timeout")]
    await assert_gone(int((root / "hang.pid").read_text()))

    (root / "hang.pid").unlink()
    run = asyncio.ensure_future(project.run(["tests/test_bad.py::test_hang"]))
    while not (root / "hang.pid").exists():
        await asyncio.sleep(0.05)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await assert_gone(int((root / "hang.pid").read_text()))

    project.reconfigure({"python": interpreters()[0]})
    ok = await project.run(["tests/test_state.py::test_parent"])
    assert [r.outcome for r in ok.results] == ["passed"]
    assert last_parent(root) == worker == project.pool.worker.process.pid
    project.close()


async def assert_gone(pid: int) -> None:
    """pid ends: gone, or a zombie (nothing runs; its reaping is up to its parent, maybe an init)."""
    for _ in range(100):
        try:
            os.kill(pid, 0)
            stat = Path(f"/proc/{pid}/stat")
            if stat.parent.parent.joinpath("self").exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except (FileNotFoundError, ProcessLookupError):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"process {pid} outlived its run")


async def test_changed_installed_packages_replace_the_worker(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(site))
    root = tmp_path / "proj"
    write(root, FILES)
    project = await warmed(root, interpreters()[0])
    first = project.pool.worker.process.pid

    (site / "newly_installed.py").write_text("")  # what pip does to a sys.path directory
    stale = await project.run(["tests/test_state.py::test_parent"])
    assert [r.outcome for r in stale.results] == ["passed"]
    assert last_parent(root) != first  # the old worker refused the run: it ran in a new interpreter
    assert await project.pool.ready()
    assert project.pool.worker.process.pid != first
    await project.run(["tests/test_state.py::test_parent"])
    assert last_parent(root) == project.pool.worker.process.pid
    project.close()


async def test_warm_runner_setting_off_runs_cold(tmp_path):
    root = tmp_path / "proj"
    write(root, FILES)
    project = Project(root, {"warmRunner": False}, warm=True)
    for _ in range(2):
        await project.run(["tests/test_state.py::test_parent"])
    assert project.pool.worker is None
    project.close()


def test_worker_ends_its_run_and_itself_when_tracefix_goes_away(tmp_path):
    """The worker alone, over its protocol: the server's end of the socket closes mid-run."""
    root = tmp_path / "proj"
    write(root, FILES)
    ours, theirs = socket.socketpair()
    env = plugin_env()
    worker = subprocess.Popen(
        [sys.executable, "-m", "tracefix_warm"],
        cwd=root,
        start_new_session=True,
        env=dict(env, TRACEFIX_WARM_FD=str(theirs.fileno())),
        pass_fds=(theirs.fileno(),),
    )
    theirs.close()
    replies = ours.makefile("rb")
    assert "ready" in json.loads(replies.readline())
    out_read, out_write = os.pipe()
    report_read, report_write = os.pipe()
    body = json.dumps(
        {
            "args": ["-q", "-p", "tracefix_pytest", "tests/test_bad.py::test_hang"],
            "cwd": str(root),
            "env": env,
            "limits": {},
        }
    ).encode()
    socket.send_fds(ours, [b"%d\n" % len(body)], [out_write, report_write])
    ours.sendall(body)
    for fd in (out_write, report_write):
        os.close(fd)
    run = json.loads(replies.readline())["pid"]
    deadline = time.monotonic() + 60
    while not (root / "hang.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert int((root / "hang.pid").read_text()) == run

    replies.close()
    ours.close()  # as if the server died: nothing is killed from this side
    assert worker.wait(timeout=10) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(run, 0)  # killed and reaped by the worker before it exited
    for fd in (out_read, report_read):
        os.close(fd)


async def test_closing_the_project_mid_run_ends_the_run(tmp_path):
    root = tmp_path / "proj"
    write(root, FILES)
    project = await warmed(root, interpreters()[0])
    run = asyncio.ensure_future(project.run(["tests/test_bad.py::test_hang"]))
    while not (root / "hang.pid").exists():
        await asyncio.sleep(0.05)
    project.pool.close()  # what the server's shutdown does, with a run in flight
    await assert_gone(int((root / "hang.pid").read_text()))
    assert (await run).status == "crashed"
    project.close()


# A test-support library outside the workspace: a plugin (which pytest rewrites, being named by -p),
# helpers that import it, and plain code. The plugins installed beside these tests (pytest-asyncio)
# warn of deprecations at start-up, which no run here is about: those stay warnings.
LIBRARY = {
    "support_plugin.py": """\
        import pytest


        @pytest.fixture
        def unit():
            return 1
        """,
    "support_helpers.py": """\
        import support_plugin  # noqa: F401


        def double(x):
            return 2 * x
        """,
    "units.py": "SCALE = 10\n",
}
STRICT = {
    "filterwarnings": """\
        [tool.pytest.ini_options]
        addopts = "-p support_plugin"
        filterwarnings = ["error", "ignore::DeprecationWarning"]
        """,
    "-W error": """\
        [tool.pytest.ini_options]
        addopts = "-p support_plugin -W error -W ignore::DeprecationWarning"
        """,
}
USERS = {
    "pkg/__init__.py": "",
    "pkg/calc.py": "def half(x):\n    return x / 2\n",
    "tests/test_calc.py": """\
        import os

        from support_helpers import double
        from units import SCALE

        from pkg.calc import half


        def test_double(unit):
            with open("parents.txt", "a") as f:
                f.write(f"{os.getppid()}\\n")
            assert double(unit) == 2


        def test_half():
            assert half(double(SCALE)) == SCALE
        """,
}
EDITS = [  # files to write, in the workspace or ("lib/…") the library, before each run
    {},  # cold: the worker starts
    {},  # forked; then the worker imports units, and support_helpers, which pulls in support_plugin
    {"pkg/calc.py": "def half(x):\n    return x // 3\n"},  # so it quits: cold; its replacement skips them
    {},  # forked; then the worker imports units
    {"lib/units.py": "SCALE = 100\n"},  # edited in place, its directory unchanged: cold, replaced
    {"pkg/calc.py": USERS["pkg/calc.py"]},  # forked
]


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
@pytest.mark.parametrize("strict", sorted(STRICT))
async def test_warm_verdicts_are_cold_verdicts(tmp_path, monkeypatch, caplog, python, strict):
    """The same edits, each run warm and cold: under warnings as errors, with a library that changes
    on disk, and one whose helpers import what pytest rewrites."""
    library = tmp_path / "lib"
    write(library, LIBRARY)
    monkeypatch.setenv("PYTHONPATH", str(library))
    root = tmp_path / "proj"
    write(root, {**USERS, "pyproject.toml": STRICT[strict]})
    warm_project = Project(root, {"python": python}, warm=True)
    cold_project = Project(root, {"python": python})
    nodeids = ["tests/test_calc.py::test_double", "tests/test_calc.py::test_half"]
    caplog.set_level(logging.INFO, "tracefix.project")  # where a Project's runs say why they went cold
    forked, verdicts = 0, []
    for edit in EDITS:
        write(tmp_path, {(name if name.startswith("lib/") else f"proj/{name}"): text for name, text in edit.items()})
        await warm_project.pool.ready()  # a worker that is starting takes this run
        report = await warm_project.run(nodeids)
        worker = warm_project.pool.worker
        forked += worker is not None and last_parent(root) == worker.process.pid
        cold = await cold_project.run(nodeids)
        assert report.status == cold.status == "ok", report.output
        assert outcomes(report) == outcomes(cold), (edit, caplog.messages)
        verdicts.append(outcomes(cold))
    notes = caplog.messages
    assert ("tests/test_calc.py::test_half", "failed", "assert 6 == 10") in verdicts[2]
    assert ("tests/test_calc.py::test_half", "failed", "assert 66 == 100") in verdicts[4]
    assert sum(PULLED in n for n in notes) == 1  # its replacement was told to skip support_helpers
    assert sum(CHANGED in n and "units.py" in n for n in notes) == 1
    assert not any("warm run failed" in n for n in notes), notes
    assert forked == 3
    warm_project.close()
    cold_project.close()


async def test_a_worker_lost_mid_run_falls_back_to_a_cold_run(tmp_path, caplog):
    root = tmp_path / "proj"
    gate = """\
        import os
        import time


        def test_gate():  # passes once the file "go" exists
            with open("gate.pid", "w") as f:
                f.write(str(os.getpid()))
            while not os.path.exists("go"):
                time.sleep(0.05)
        """
    write(root, {**FILES, "tests/test_gate.py": gate})
    project = await warmed(root, interpreters()[0])
    caplog.set_level(logging.INFO, "tracefix.project")
    streamed: list[TestResult] = []
    run = asyncio.ensure_future(project.run(["tests/test_gate.py::test_gate"], streamed.append))
    pid = root / "gate.pid"
    await wait_until(pid.exists)
    forked = pid.read_text()
    pid.unlink()
    os.kill(project.pool.worker.process.pid, signal.SIGKILL)  # the worker dies while its fork runs
    await wait_until(pid.exists)  # the same test again, in a new interpreter
    assert pid.read_text() != forked
    (root / "go").write_text("")
    report = await run
    assert [n for n in caplog.messages if "warm run failed" in n] == [
        "warm run failed (lost during a run: the worker exited); running the same tests in a new interpreter"
    ]
    assert report.status == "ok" and outcomes(report) == [("tests/test_gate.py::test_gate", "passed", "")]
    assert [r.outcome for r in streamed] == ["passed"]  # never the "crashed" the lost fork was reported as
    project.close()


async def test_a_warm_server_reports_every_failure_under_filterwarnings_error(tmp_path, monkeypatch):
    """toolz's set-up: each save after the first runs in the warm worker."""
    library = tmp_path / "lib"
    write(library, LIBRARY)
    monkeypatch.setenv("PYTHONPATH", str(library))
    root = tmp_path / "proj"
    write(root, {**USERS, "pyproject.toml": STRICT["filterwarnings"]})
    calc = root / "pkg" / "calc.py"
    test_file = root / "tests" / "test_calc.py"
    async with session(root) as client:
        await open_file(client, calc)
        for version in range(2, 8, 2):  # break, fix; three times
            await edit_and_save(client, calc, "x / 2", "x / 3", version)
            await wait_until(lambda: errors(client, test_file), 90)
            await edit_and_save(client, calc, "x / 3", "x / 2", version + 1)
            await wait_until(lambda: not errors(client, test_file), 90)
