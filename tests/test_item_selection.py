"""Selection per collected item (each parametrized case), by the module-level names code reads, and
the recorded dependencies kept in memory: real pytest runs on small projects, real SQLite."""

import asyncio
import sqlite3
from pathlib import Path

import pytest
from tests.support.projects import write

from conftest import baselined
from test_dynamic_selection import PYPROJECT, chosen, edit, recorded
from tracefix.index.store import Store
from tracefix.project import Project
from tracefix.selection.recorded import Recorded

CASES = {
    "pyproject.toml": PYPROJECT,
    "app/__init__.py": "",
    "app/codes.py": "def code(n):\n    return n * 2\n\n\ndef name(n):\n    return str(n)\n",
    "tests/conftest.py": (
        "import pytest\n\n\n@pytest.fixture(params=['a', 'b'])\ndef letter(request):\n    return request.param\n"
    ),
    "tests/test_cases.py": (
        "import pytest\nfrom app.codes import code, name\n\n\n"
        "@pytest.mark.parametrize('n, kind', [(1, 'code'), (2, 'name'), ('x/y::z [w]', 'name')])\n"
        "def test_case(n, kind):\n"
        "    if kind == 'code':\n        assert code(n) == 2\n    else:\n        assert name(n) == str(n)\n\n\n"
        "def test_letter(letter):\n    assert name(letter) == letter\n"
    ),
}
CODE_CASE = "tests/test_cases.py::test_case[1-code]"
NAME_CASES = ["tests/test_cases.py::test_case[2-name]", "tests/test_cases.py::test_case[x/y::z [w]-name]"]


@pytest.fixture
def cases(tmp_path: Path, python: str):
    with recorded(tmp_path, python, CASES) as project:
        yield project


def run(project: Project, nodeids: list[str]) -> dict[str, str]:
    report = asyncio.run(project.run(nodeids))
    project.record(report)
    return {r.nodeid: r.outcome for r in report.results}


def test_a_change_one_case_runs_selects_that_case(cases):
    reasons = chosen(cases, edit(cases, "app/codes.py", "return n * 2", "return n * 3"))
    assert reasons == {CODE_CASE: "executed codes.code (changed at app/codes.py:1)"}
    assert run(cases, list(reasons)) == {CODE_CASE: "failed"}


def test_cases_with_special_characters_in_their_ids_run_as_selected(cases):
    reasons = chosen(cases, edit(cases, "app/codes.py", "return str(n)", "return str(n) + ''"))
    assert set(reasons) == {*NAME_CASES, "tests/test_cases.py::test_letter[a]", "tests/test_cases.py::test_letter[b]"}
    assert run(cases, list(reasons)) == dict.fromkeys(reasons, "passed")


def test_a_change_to_the_parametrization_runs_every_case(cases):
    changes = edit(cases, "tests/test_cases.py", "(1, 'code'),", "(1, 'code'), (4, 'name'),")
    assert chosen(cases, changes) == {
        "tests/test_cases.py::test_case": "executed test_cases.test_case (changed at tests/test_cases.py:5); "
        "runs every case: the change can change its parametrization"
    }
    outcomes = run(cases, ["tests/test_cases.py::test_case"])
    assert "tests/test_cases.py::test_case[4-name]" in outcomes and len(outcomes) == 4
    # the cases that ran are what the function has now
    assert sorted(cases.recorded().tests["tests/test_cases.py::test_case"]) == sorted(outcomes)


def test_a_change_to_a_fixture_with_params_runs_every_case(cases):
    changes = edit(cases, "tests/conftest.py", "params=['a', 'b']", "params=['a', 'b', 'c']")
    assert chosen(cases, changes) == {
        "tests/test_cases.py::test_letter": "uses fixture conftest.letter (changed at tests/conftest.py:4); "
        "runs every case: the change can change its parametrization"
    }


def test_a_function_with_an_unrecorded_case_is_selected_whole(cases):
    store = Store(cases.root)  # as if its last run was killed in the middle of one case
    store.save_deps({CODE_CASE: Recorded.row(None)}, [])
    store.close()
    reasons = chosen(cases, edit(cases, "app/codes.py", "return str(n)", "return str(n) + ''"))
    assert "tests/test_cases.py::test_case" in reasons and not set(NAME_CASES) & set(reasons)


def test_a_case_that_is_gone_is_forgotten_after_its_function_ran(cases):
    edit(cases, "tests/test_cases.py", "(1, 'code'), ", "")
    run(cases, ["tests/test_cases.py::test_case"])
    again = Project(cases.root)  # what the store holds
    assert CODE_CASE not in again.recorded().items and set(NAME_CASES) <= set(again.recorded().items)
    again.close()


NAMES = {
    "pyproject.toml": PYPROJECT,
    "app/__init__.py": "",
    "app/limits.py": (
        "import os\n\nLOW = 1\nHIGH = LOW + 10\nNAME = os.sep\n\n\n"
        "def high():\n    return HIGH\n\n\ndef low():\n    return LOW\n\n\ndef unrelated():\n    return 0\n"
    ),
    "app/uses.py": "from app.limits import HIGH\n\n\ndef top():\n    return HIGH\n",
    "tests/test_limits.py": (
        "from app import limits, uses\n\n\n"
        "def test_high():\n    assert limits.high() == 11\n\n\n"
        "def test_low():\n    assert limits.low() == 1\n\n\n"
        "def test_unrelated():\n    assert limits.unrelated() == 0\n\n\n"
        "def test_top():\n    assert uses.top() == 11\n"
    ),
}
LIMITS = [f"tests/test_limits.py::test_{n}" for n in ("high", "low", "unrelated", "top")]


@pytest.fixture
def names(tmp_path: Path, python: str):
    with recorded(tmp_path, python, NAMES) as project:
        yield project


def test_a_module_level_name_selects_the_tests_that_read_it(names):
    reasons = chosen(names, edit(names, "app/limits.py", "LOW = 1", "LOW = 2"))
    assert reasons == {  # HIGH = LOW + 10: reading HIGH reads LOW, here and through `from … import`
        "tests/test_limits.py::test_high": "executed code that reads limits.LOW (changed at app/limits.py:3)",
        "tests/test_limits.py::test_low": "executed code that reads limits.LOW (changed at app/limits.py:3)",
        "tests/test_limits.py::test_top": "executed code that reads limits.LOW (changed at app/limits.py:3)",
    }
    assert run(names, list(reasons)) == dict.fromkeys(reasons, "failed")


def test_static_selection_follows_module_level_names_too(tmp_path):
    write(tmp_path, NAMES)
    with baselined(tmp_path) as project:  # nothing recorded yet
        reasons = chosen(project, edit(project, "app/limits.py", "HIGH = LOW + 10", "HIGH = LOW + 20"))
    assert set(reasons) == {"tests/test_limits.py::test_high", "tests/test_limits.py::test_top"}


def test_module_level_code_that_is_not_a_name_binding_selects_every_test_that_ran_the_module(names):
    reasons = chosen(names, edit(names, "app/limits.py", "import os\n", "import os\nimport sys\n"))
    assert set(reasons) == set(LIMITS)
    assert reasons["tests/test_limits.py::test_unrelated"] == (
        "ran code of limits, whose module-level code changed at app/limits.py:1 "
        "(not a plain name binding: every test that ran the module's code)"
    )


def test_a_name_whose_value_calls_project_code_counts_as_module_code(names):
    reasons = chosen(names, edit(names, "app/limits.py", "NAME = os.sep", "NAME = unrelated()"))
    assert set(reasons) == set(LIMITS)
    assert "not a plain name binding" in reasons["tests/test_limits.py::test_low"]


def test_the_records_in_memory_match_the_store_and_follow_another_process(names):
    first = names.recorded()
    stored = Recorded.load(*names.store.deps())
    assert {n: first.deps(r).code for n, r in first.items.items()} == {
        n: stored.deps(r).code for n, r in stored.items.items()
    }
    other = Project(names.root)  # a `tracefix check` beside the server: it records too
    asyncio.run(other.run(["tests/test_limits.py::test_low"]))
    other.close()
    assert names.recorded() is not first  # read again, once
    assert names.recorded() is names.recorded()


def test_a_store_of_the_old_schema_is_upgraded_keeping_results(tmp_path):
    store = Store(tmp_path)
    store.save_results([{"nodeid": "t.py::test_a", "outcome": "failed"}])
    store.close()
    db = sqlite3.connect(tmp_path / ".tracefix" / "index.sqlite")
    db.execute("update meta set value = '2' where key = 'schema'")
    db.execute("create table test_deps (nodeid text, path text, qualname text, digest text, how text)")
    db.commit()
    db.close()
    store = Store(tmp_path)
    assert store.warnings == ["upgraded the tracefix index: what each test used is recorded again on its next run"]
    assert store.results()["t.py::test_a"]["outcome"] == "failed"
    assert store.db.execute("select count(*) from sqlite_master where name = 'test_deps'").fetchone() == (0,)
    store.close()
