"""Selection from what each test used on its last run: real pytest runs on small projects."""

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lsprotocol import types
from tests.support.projects import write

from conftest import baselined, session, version_of, wait_until
from tracefix.project import Project
from tracefix.selection.select import explain_skipped

PYPROJECT = "[tool.pytest.ini_options]\ntestpaths = ['tests']\n"

APP = {
    "pyproject.toml": PYPROJECT,
    "app/__init__.py": "",
    "app/handlers.py": ("def on_add(a, b):\n    return a + b\n\n\ndef on_sub(a, b):\n    return a - b\n"),
    "app/dispatch.py": (
        "import importlib\n\n\n"
        "def handle(event, *args):\n"
        "    handlers = importlib.import_module('app.handlers')\n"
        "    return getattr(handlers, 'on_' + event)(*args)\n"
    ),
    "app/rates.py": "RATE = 2\n\n\ndef scaled(x):\n    return x * RATE\n",
    "app/other.py": "def ident(x):\n    return x\n",
    "tests/conftest.py": (
        "import pytest\n\n\n"
        "@pytest.fixture\ndef db():\n    return {'rows': 3}\n\n\n"
        "@pytest.fixture(scope='module')\ndef cache():\n    return {'hits': 0}\n"
    ),
    "tests/test_dispatch.py": (
        "from app.dispatch import handle\n\n\n"
        "def test_add():\n    assert handle('add', 2, 3) == 5\n\n\n"
        "def test_sub():\n    assert handle('sub', 5, 3) == 2\n"
    ),
    "tests/test_mix.py": (
        "from app import other, rates\n\n\n"
        "def test_scaled():\n    assert rates.scaled(3) == 6\n\n\n"
        "def test_ident():\n    assert other.ident(4) == 4\n"
    ),
    "tests/test_fixtures.py": (
        "def test_db(db):\n    assert db['rows'] == 3\n\n\n"
        "def test_cache(cache):\n    assert cache['hits'] == 0\n\n\n"
        "def test_cache_again(cache):\n    assert cache['hits'] == 0\n\n\n"
        "def test_plain():\n    assert True\n"
    ),
    "tests/cases.py": "def make_cases():\n    return [1, 2]\n",
    "tests/test_params.py": (
        "import pytest\nfrom cases import make_cases\n\n\n"
        "@pytest.mark.parametrize('n', make_cases())\ndef test_positive(n):\n    assert n > 0\n"
    ),
    "tests/data/prices.json": '{"apple": 3}\n',
    "tests/test_data.py": (
        "import json\n\n\n"
        "def test_prices():\n"
        "    with open('tests/data/prices.json') as f:\n"
        "        assert json.load(f)['apple'] == 3\n\n\n"
        "def test_without_data():\n    assert 1 + 1 == 2\n"
    ),
}


@pytest.fixture
def app(tmp_path: Path) -> Path:
    write(tmp_path, APP)
    return tmp_path


def run_all(project: Project):
    report = asyncio.run(project.run([t.nodeid for t in project.index.tests()]))
    assert report.status == "ok" and not report.failed, report.output
    project.record(report)
    return report


@contextlib.contextmanager
def recorded(root: Path, python: str, files: dict[str, str]):
    """A Project on `root` with `files` added to it, baselined, after a full run it recorded."""
    write(root, files)
    with baselined(root, python) as project:
        run_all(project)
        yield project


def edit(project: Project, rel: str, old: str, new: str):
    """Save an edit the way the server sees it: changes against the baseline, then the new index."""
    path = project.root / rel
    text = path.read_text()
    assert old in text
    text = text.replace(old, new, 1)
    changes = project.changes_in(rel, text)
    path.write_text(text)
    if rel.endswith(".py"):
        project.index.update_from_disk(rel)
    return changes


def chosen(project: Project, changes) -> dict[str, str]:
    return {s.nodeid: s.reason for s in project.select(changes)}


def used(project: Project) -> dict[str, set]:
    """Each recorded item → the symbols its record holds."""
    recorded = project.recorded()
    return {n: set(recorded.deps(r).code) for n, r in recorded.items.items()}


@pytest.fixture
def project(app: Path, python: str):
    with baselined(app, python) as p:
        yield p


def test_dynamic_dispatch_is_seen_after_a_first_run(project):
    edit_add = ("app/handlers.py", "return a + b", "return b + a")
    static_only = chosen(
        project, project.changes_in(edit_add[0], (project.root / edit_add[0]).read_text().replace(*edit_add[1:]))
    )
    assert "tests/test_dispatch.py::test_add" not in static_only  # getattr on a computed name

    run_all(project)
    assert chosen(project, edit(project, *edit_add)) == {
        "tests/test_dispatch.py::test_add": "executed handlers.on_add (changed at app/handlers.py:1)"
    }


def test_module_level_change_selects_only_tests_that_ran_that_module(project):
    before = chosen(project, project.changes_in("app/rates.py", "RATE = 3\n\n\ndef scaled(x):\n    return x * RATE\n"))
    assert set(before) == {"tests/test_mix.py::test_scaled"}  # static: the one test that reaches RATE

    run_all(project)
    assert chosen(project, edit(project, "app/rates.py", "RATE = 2", "RATE = 3")) == {
        "tests/test_mix.py::test_scaled": "executed code that reads rates.RATE (changed at app/rates.py:1)"
    }


def test_fixture_change_selects_only_its_users(project):
    changes = project.changes_in(
        "tests/conftest.py", (project.root / "tests/conftest.py").read_text().replace("'hits': 0", "'hits': 1")
    )
    assert len(chosen(project, changes)) == len(project.index.tests())  # no record: the conftest's scope

    run_all(project)
    changes = edit(project, "tests/conftest.py", "'hits': 0", "'hits': 1")
    assert chosen(project, changes) == {  # module-scoped: set up in the first test only, used by both
        "tests/test_fixtures.py::test_cache": "uses fixture conftest.cache (changed at tests/conftest.py:9)",
        "tests/test_fixtures.py::test_cache_again": "uses fixture conftest.cache (changed at tests/conftest.py:9)",
    }


IMPORT_TIME = {
    "tests/cases.py": APP["tests/cases.py"] + "\n\ndef known():\n    return {1, 2}\n",
    "tests/test_more_params.py": (
        "import pytest\nfrom cases import make_cases\n\n\n"
        "def sizes():\n    return [3]\n\n\n"
        "@pytest.mark.parametrize('n', make_cases())\ndef test_small(n):\n    assert n < 10\n\n\n"
        "@pytest.mark.parametrize('n', sizes())\ndef test_size(n):\n    assert n\n"
    ),
    "tests/registry.py": "from cases import known\n\nKNOWN = known()\n",
    # a class made from a template string, as namedtuple does: the template calls back into cases.py
    "tests/records.py": (
        "def record(name):\n    def getter(i):\n        return lambda self: self[i]\n\n"
        "    space = {'getter': getter}\n"
        "    exec(f'class {name}(tuple):\\n    first = property(getter(0))\\n', space)\n"
        "    return space[name]\n"
    ),
    "tests/test_records.py": (
        "from records import record\n\nPair = record('Pair')\n\n\n"
        "def test_pair():\n    assert Pair((1, 2)).first == 1\n"
    ),
    "tests/test_registry.py": "from registry import KNOWN\n\n\ndef test_known():\n    assert 1 in KNOWN\n",
}


@pytest.fixture
def import_time(app: Path, python: str):
    with recorded(app, python, IMPORT_TIME) as p:
        asyncio.run(p.run(["tests/test_mix.py::test_ident"]))  # collects one module: keeps what the full run saw
        yield p


def test_code_a_test_module_runs_at_import_selects_that_modules_tests(import_time):
    # both modules call make_cases at import: the second call must be seen too
    reasons = chosen(import_time, edit(import_time, "tests/cases.py", "[1, 2]", "[1, 2, 0]"))
    assert reasons == {
        "tests/test_params.py::test_positive": "at import of tests/test_params.py, executed cases.make_cases (changed at tests/cases.py:1)",
        **{
            f"tests/test_more_params.py::{name}":  # the module's tests share its import
            "at import of tests/test_more_params.py, executed cases.make_cases (changed at tests/cases.py:1)"
            for name in ("test_small", "test_size")
        },
    }
    everything = {t.nodeid for t in import_time.index.tests()}
    assert set(chosen_in(import_time, "conservative", "tests/cases.py")) == everything


def test_a_test_modules_own_helper_run_at_import_selects_that_modules_tests(import_time):
    reasons = chosen(import_time, edit(import_time, "tests/test_more_params.py", "[3]", "[4]"))
    why = "at import of tests/test_more_params.py, executed test_more_params.sizes (changed at tests/test_more_params.py:5)"
    assert reasons == {"tests/test_more_params.py::test_small": why, "tests/test_more_params.py::test_size": why}


def test_code_a_template_string_runs_at_import_belongs_to_the_module_that_ran_it(import_time):
    reasons = chosen(import_time, edit(import_time, "tests/records.py", "self[i]", "self[i + 0]"))
    assert set(reasons) == {"tests/test_records.py::test_pair"}


def test_code_another_module_runs_at_import_selects_every_test(import_time):
    reasons = chosen(import_time, edit(import_time, "tests/cases.py", "{1, 2}", "{2}"))
    assert set(reasons) == {t.nodeid for t in import_time.index.tests()}
    assert reasons["tests/test_mix.py::test_ident"] == (
        "at import of tests/registry.py, executed cases.known (changed at tests/cases.py:5)"
    )


def chosen_in(project: Project, mode: str, rel: str) -> list[str]:
    """What `mode` selects for the edits to `rel` since the last run."""
    return [s.nodeid for s in project.select(project.changes_in(rel, (project.root / rel).read_text()), mode)]


PROPERTY = {
    "app/box.py": (
        "class Box:\n    def __init__(self):\n        self._v = 1\n\n"
        "    @property\n    def v(self):\n        return self._v\n\n"
        "    @v.setter\n    def v(self, value):\n        self._v = value\n"
    ),
    "tests/test_box.py": "from app.box import Box\n\n\ndef test_v():\n    assert Box().v == 1\n",
}


def test_a_name_defined_twice_is_one_node(app, python):
    with recorded(app, python, PROPERTY) as project:
        assert chosen(project, []) == {}  # the getter ran; the setter's digest must not count as a change

        path = app / "app/box.py"
        path.write_text(path.read_text().replace("self._v = value", "self._v = value * 2"))  # not seen as an edit
        project.index.update_from_disk("app/box.py")
        reasons = chosen(project, [])
        assert list(reasons) == ["tests/test_box.py::test_v"]
        assert reasons["tests/test_box.py::test_v"].startswith("executed box.Box.v, changed since the test last ran")


def test_data_file_read_selects_only_its_reader(project):
    run_all(project)
    changes = edit(project, "tests/data/prices.json", '"apple": 3', '"apple": 4')
    assert chosen(project, changes) == {"tests/test_data.py::test_prices": "read tests/data/prices.json (changed)"}
    # without a file event (`tracefix check` sees only Python changes) the recorded content says so
    assert chosen(project, []) == {
        "tests/test_data.py::test_prices": "read tests/data/prices.json, which changed since the test last ran"
    }


def test_code_changed_outside_the_editor_is_caught_by_its_digest(project):
    run_all(project)
    edit(project, "app/other.py", "return x", "return -x")
    assert chosen(project, []) == {
        "tests/test_mix.py::test_ident": "executed other.ident, changed since the test last ran (app/other.py:1)"
    }


def test_new_function_selects_tests_that_use_its_module(project):
    run_all(project)
    changes = edit(project, "app/other.py", "    return x\n", "    return x\n\n\ndef twice(x):\n    return 2 * x\n")
    assert chosen(project, changes) == {
        "tests/test_mix.py::test_ident": "ran code of other, where twice was added (app/other.py:5)"
    }


THREADS = {
    "tests/test_threads.py": (
        "import threading\nfrom app import other, rates\n\n\n"
        "class Worker(threading.Thread):\n    def run(self):\n        self.result = rates.scaled(2)\n\n\n"
        "def test_in_a_thread():\n    found = []\n"
        "    t = threading.Thread(target=lambda: found.append(other.ident(5)))\n    t.start()\n    t.join()\n"
        "    assert found == [5]\n\n\n"
        "def test_in_a_thread_subclass():\n    w = Worker()\n    w.start()\n    w.join()\n    assert w.result == 4\n"
    )
}


def test_code_a_test_runs_in_threads_it_starts_is_recorded(app, python):
    with recorded(app, python, THREADS) as project:
        assert "tests/test_threads.py::test_in_a_thread" in chosen(
            project, edit(project, "app/other.py", "return x", "return +x")
        )
        assert "tests/test_threads.py::test_in_a_thread_subclass" in chosen(
            project, edit(project, "app/rates.py", "return x * RATE", "return RATE * x")
        )


def test_a_second_run_records_the_same_and_selects_the_same(project):
    run_all(project)
    first = used(project)
    run_all(project)  # in another order (fastest first): a lazy import runs in another test
    assert used(project) == first
    changes = edit(project, "app/handlers.py", "return a - b", "return a - b - 0")
    assert set(chosen(project, changes)) == {"tests/test_dispatch.py::test_sub"}
    skipped = {
        s.nodeid: s.reason for s in explain_skipped(project.index, project.select(changes), project.recorded().tests)
    }
    assert skipped["tests/test_dispatch.py::test_add"] == "skipped: its last run used none of the changes"


def test_upgraded_distribution_selects_the_tests_that_ran_it(project, monkeypatch):
    run_all(project)
    recorded = project.recorded()
    assert all("pytest" in record.dists for record in recorded.items.values())
    installed = {d: v for record in recorded.items.values() for d, v in record.dists.items()}
    asked = []
    monkeypatch.setattr(
        "tracefix.selection.environment.installed_versions", lambda python: asked.append(python) or installed
    )
    assert (chosen(project, []), asked) == ({}, [])  # site-packages untouched: the interpreter is not asked
    env = project.store.get("environment")
    project.store.put("environment", dict(env, paths={p: m + 1 for p, m in env["paths"].items()}))
    assert chosen(project, []) == {}  # something was installed, but nothing the tests ran changed
    assert chosen(project, []) == {} and len(asked) == 1

    installed["pytest"] = "0"
    upgraded = Project(project.root)  # a new state of site-packages is asked about once
    reasons = chosen(upgraded, [])
    upgraded.close()
    assert set(reasons) == set(recorded.items)  # each case of test_positive on its own
    assert (
        reasons["tests/test_mix.py::test_ident"]
        == f"ran pytest {recorded.items['tests/test_mix.py::test_ident'].dists['pytest']}, now 0"
    )


def test_a_test_that_replaces_the_tracer_is_left_to_static_evidence(project, python):
    write(
        project.root,
        {
            "tests/test_tracer.py": (
                "import sys\nfrom app import other\n\n\n"
                "def test_own_tracer():\n    sys.settrace(None)\n    sys.setprofile(None)\n    assert other.ident(1) == 1\n"
            )
        },
    )
    project.index.update_from_disk("tests/test_tracer.py")
    run_all(project)
    reasons = chosen(project, edit(project, "app/other.py", "return x", "return x * 1"))
    if version_of(python) >= (3, 12):  # sys.monitoring: settrace and setprofile do not touch it
        assert reasons["tests/test_tracer.py::test_own_tracer"].startswith("executed other.ident")
    else:
        assert "tests/test_tracer.py::test_own_tracer" not in project.recorded().tests
        assert reasons["tests/test_tracer.py::test_own_tracer"].startswith("reaches ident")


def test_audit_counts_a_failure_selection_skipped(project):
    run_all(project)
    edit(project, "app/handlers.py", "return a - b", "return a - b + 1")
    audit = asyncio.run(project.audit([]))  # a selection that chose nothing
    assert audit.missed == ["tests/test_dispatch.py::test_sub"] and audit.missed_so_far == 1
    project.record(audit.report)
    again = asyncio.run(project.audit([]))  # it failed before: not a new miss
    assert (again.missed, again.missed_so_far) == ([], 1)


def tracefix_check(root: Path, *args: str):
    proc = subprocess.run(
        [sys.executable, "-m", "tracefix", "check", str(root), "--no-trace", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return proc


FLAG = {  # a test that looks at a file without opening it: no dependency is recorded
    "pyproject.toml": PYPROJECT,
    "tests/test_flag.py": "import os\n\n\ndef test_no_flag():\n    assert not os.path.exists('tests/flag')\n",
    "tests/test_other.py": "def test_other():\n    assert True\n",
}


def test_check_audit_reports_and_persists_misses(tmp_path):
    write(tmp_path, FLAG)
    tracefix_check(tmp_path)  # first run: everything, recorded
    (tmp_path / "tests" / "flag").write_text("")
    assert json.loads(tracefix_check(tmp_path, "--format", "json").stdout)["selected"] == []
    proc = tracefix_check(tmp_path, "--audit")
    assert proc.returncode == 1
    assert "selection audit: 1 missed failure(s) in this run, 1 so far (selection chose 0 test(s))" in proc.stdout
    assert "missed tests/test_flag.py::test_no_flag" in proc.stdout
    data = json.loads(tracefix_check(tmp_path, "--audit", "--format", "json").stdout)
    assert data["audit"] == {"missed": [], "missed_so_far": 1}  # still failing: counted once


async def test_server_audits_when_idle(tmp_path, monkeypatch):
    write(tmp_path, FLAG)
    monkeypatch.setenv("TRACEFIX_AUDIT_IDLE", "0.5")
    async with session(tmp_path) as client:
        await client.workspace_execute_command_async(types.ExecuteCommandParams(command="tracefix.runAll"))
        await wait_until(lambda: any(n["done"] for n in client.tracefix_results))
        flag = tmp_path / "tests" / "flag"
        flag.write_text("")
        client.workspace_did_change_watched_files(
            types.DidChangeWatchedFilesParams(
                changes=[types.FileEvent(uri=flag.as_uri(), type=types.FileChangeType.Created)]
            )
        )
        await wait_until(lambda: any("idle audit" in m.message for m in client.log_messages))
        audit = next(m for m in client.log_messages if "idle audit" in m.message)
        assert audit.message.endswith(
            "found by the idle audit, failing in no run you started: tests/test_flag.py::test_no_flag; "
            "selection skipped 1 test(s) that passed before and fail now: tests/test_flag.py::test_no_flag "
            "(1 missed so far)"
        )
        assert audit.type == types.MessageType.Warning


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
def test_xdist_workers_record_what_one_process_records(app):
    pytest.importorskip("xdist")

    def recorded(settings):
        project = Project(app, settings)
        project.baseline_everything()
        report = run_all(project)
        got = (
            used(project),
            set(project.recorded().deps(project.recorded().session).code),
            {r.nodeid: r.outcome for r in report.results},
        )
        project.close()
        return got

    assert recorded({"parallel": 2}) == recorded({"parallel": 0})


def test_parallel_auto_starts_workers_only_for_long_runs(app, monkeypatch):
    pytest.importorskip("xdist")
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    project = Project(app)
    ids = [t.nodeid for t in project.index.tests()]
    workers = lambda nodeids: project._workers(nodeids, project.store.results())  # noqa: E731
    assert workers(ids) == 0  # the interpreter's xdist is unknown before a first run
    run_all(project)
    assert project.store.get("xdist") is True  # this suite's interpreter has it
    assert workers(ids) == 0  # these tests took milliseconds
    project.store.save_results([{"nodeid": n, "outcome": "passed", "duration": 1.0} for n in ids[:5]])
    assert workers(ids) == 4 and workers(ids[5:]) == 0
    project.reconfigure({"parallel": 0})
    assert workers(ids) == 0
    project.close()
