"""No false green: a run that did not complete is never a pass, causes are named where they are,
and a test that failed stays failing until a run shows it passing. Real `tracefix check`
processes and real server sessions over real pytest runs."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lsprotocol import types

from conftest import session, version_of, wait_until

PYPROJECT = '[project]\nname = "shop"\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'
BROKEN = "        return (5\n"  # line 16 of shop/pricing.py: SyntaxError "'(' was never closed"


def check(root: Path, *args: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "tracefix", "check", str(root), "--format", "json", "--no-trace", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def check_text(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tracefix", "check", str(root), "--no-trace", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def break_pricing(root: Path) -> None:
    pricing = root / "shop" / "pricing.py"
    lines = pricing.read_text().splitlines(keepends=True)
    assert lines[15] == "        return 5\n"
    pricing.write_text("".join(lines[:15] + [BROKEN] + lines[16:]))


# Each set-up of a passing suite stops pytest before it ran every test; the cause and where it is.
INCOMPLETE = {
    "conftest-import": (
        {"tests/conftest.py": "import helpers_not_installed\n"},
        "a conftest.py failed to import: ModuleNotFoundError in tests/conftest.py:1: "
        "No module named 'helpers_not_installed'",
        ("tests/conftest.py", 1),
    ),
    "conftest-os-exit": (
        {"tests/conftest.py": "import os\n\nos._exit(0)\n"},
        "the test process ended with exit status 0 while pytest was starting",
        None,
    ),
    "invalid-toml": (
        {"pyproject.toml": PYPROJECT + 'testpaths = ["again"]\n'},
        "pyproject.toml: Cannot overwrite a value (at line 6, column 22)",
        ("pyproject.toml", 6),
    ),
    "invalid-ini": ({"pytest.ini": "[pytest\n"}, "pytest.ini:1: ", ("pytest.ini", 1)),
    "timeout-in-collection": (  # no test runs: the limit is 5 × the per-test timeout without a record
        {
            "tests/test_slow.py": "import time\n\ntime.sleep(120)\n\n\ndef test_late():\n    pass\n",
            "pyproject.toml": PYPROJECT + "\n[tool.tracefix]\ntimeout = 3\n",
        },
        "the test process sent nothing for 15 s (a hang outside any test, or a test its per-test timeout could "
        "not stop) and was killed while pytest was",
        None,
    ),
    "xdist-missing": (
        {"pyproject.toml": PYPROJECT + 'addopts = "-p no:xdist"\n\n[tool.tracefix]\nparallel = 2\n'},
        "unrecognized arguments: -n (the parallel setting asks for pytest-xdist workers: install pytest-xdist",
        None,
    ),
    "internal-error": (
        {"tests/conftest.py": "def pytest_collection_finish(session):\n    raise RuntimeError('broken plugin')\n"},
        "internal error in tests/conftest.py:2: RuntimeError: broken plugin",
        ("tests/conftest.py", 2),
    ),
    "pytest-exit": (
        {"tests/test_stop.py": "import pytest\n\n\ndef test_stop():\n    pytest.exit('stopping for maintenance')\n"},
        "Exit: stopping for maintenance",
        None,
    ),
}


@pytest.mark.parametrize("files, cause, where", INCOMPLETE.values(), ids=INCOMPLETE.keys())
def test_a_run_that_did_not_complete_exits_3_with_its_cause(fixed_shop, files, cause, where):
    write(fixed_shop, files)
    code, data = check(fixed_shop, "--all")
    assert (code, data["verdict"]) == (3, "incomplete")
    assert cause in data["cause"]
    placed = [(d["path"], d["line"]) for d in data["diagnostics"] if d["kind"] == "run"]
    assert placed == ([where] if where else [])


def test_a_suite_longer_than_the_per_test_timeout_runs_to_the_end(fixed_shop):
    slow = "".join(f"\n\ndef test_slow_{i}():\n    time.sleep(1.5)\n" for i in range(3))
    write(fixed_shop, {"tests/test_slow.py": "import time" + slow, "pyproject.toml": PYPROJECT + TIMEOUT_4})
    code, data = check(fixed_shop, "--all")
    assert (code, data["verdict"]) == (0, "passed")
    assert sum(r["duration"] for r in data["results"] if "test_slow_" in r["nodeid"]) > 4  # more than one test's limit


TIMEOUT_4 = "\n[tool.tracefix]\ntimeout = 4\n"
SLEEPER = "import time\n\n\ndef wait():\n    time.sleep(120)\n\n\ndef test_sleeps():\n    wait()\n"


def test_a_test_past_the_per_test_timeout_is_a_timeout_where_it_was_and_the_run_incomplete(fixed_shop, python):
    write(fixed_shop, {"tests/test_sleep.py": SLEEPER, "pyproject.toml": PYPROJECT + TIMEOUT_4})
    code, data = check(fixed_shop, "--all", "--python", python)
    assert (code, data["verdict"]) == (3, "incomplete")
    assert data["cause"] == (
        "tests/test_sleep.py::test_sleeps ran past the per-test timeout of 4 s (tracefix's timeout setting); "
        "the test process was ended there"
    )
    [result] = [r for r in data["results"] if r["nodeid"] == "tests/test_sleep.py::test_sleeps"]
    assert result["outcome"] == "timeout" and 4 <= result["duration"] < 120
    assert result["location"] == {"path": "tests/test_sleep.py", "line": 5, "function": "wait"}
    [diagnostic] = [d for d in data["diagnostics"] if d["nodeid"] == result["nodeid"]]
    assert (diagnostic["path"], diagnostic["line"]) == ("tests/test_sleep.py", 5)
    assert "test_sleeps timed out: ran past the per-test timeout of 4 s" in diagnostic["message"]
    proc = check_text(fixed_shop, "--all", "--python", python)
    assert proc.returncode == 3
    assert "TIMEOUT tests/test_sleep.py::test_sleeps" in proc.stdout
    assert "tracefix: the run did not complete: tests/test_sleep.py::test_sleeps ran past" in proc.stdout


# a traced run of any test takes two minutes; the tests themselves are quick
SLOW_TRACE = "import os\nimport time\n\nif os.environ.get('TRACEFIX_TRACE_ROOT'):\n    time.sleep(120)\n"
TRACE_BUDGET = "\n[tool.tracefix.trace]\ntimeout = 2\n"
BULK = "tests/test_pricing.py::test_bulk_discount_tiers"


def test_a_trace_out_of_time_comes_after_the_verdict_and_changes_nothing(shop):
    write(shop, {"tests/conftest.py": SLOW_TRACE, "pyproject.toml": PYPROJECT + TRACE_BUDGET})
    command = [sys.executable, "-m", "tracefix", "check", str(shop), "--all"]
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert time.monotonic() - started < 100  # the traced run's sleep was not waited for
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    note = f"No trace of {BULK}: tracing did not finish in 2 s"
    assert lines[-1] == note  # one line, last: after the failure and the summary
    assert lines.index(f"  FAILED {BULK}") < next(i for i, line in enumerate(lines) if " failed, " in line)
    assert "Traceback" not in proc.stdout + proc.stderr

    proc = subprocess.run([*command, "--format", "json"], capture_output=True, text=True, timeout=300)
    data = json.loads(proc.stdout)
    assert (proc.returncode, data["verdict"]) == (1, "failed")
    assert [r["outcome"] for r in data["results"] if r["nodeid"] == BULK] == ["failed"]
    trace = data["traces"][BULK]
    assert trace["outcome"] is None and trace["error"] == "tracing did not finish in 2 s"


def test_the_text_report_says_the_run_did_not_complete(fixed_shop, python):
    write(fixed_shop, INCOMPLETE["conftest-import"][0])
    proc = check_text(fixed_shop, "--all", "--python", python)
    assert proc.returncode == 3
    assert "tracefix: the run did not complete: a conftest.py failed to import: ModuleNotFoundError" in proc.stdout
    assert "tests/conftest.py:1: error: tests cannot run:" in proc.stdout


def test_a_syntax_error_in_an_imported_module_is_named_where_it_is(fixed_shop, python):
    """issue 15: "SyntaxError in shop/pricing.py:16", on that line, not at line 1 of each test
    module that imports it; the tests of other modules still run."""
    break_pricing(fixed_shop)
    code, data = check(fixed_shop, "--all", "--python", python)
    assert (code, data["verdict"]) == (3, "incomplete")
    # Python 3.9 says "invalid syntax" at the line after
    cause = "'(' was never closed" if version_of(python) >= (3, 10) else "invalid syntax"
    line = 16 if version_of(python) >= (3, 10) else 17
    assert data["cause"] == (
        f"could not collect tests/test_cart.py, tests/test_pricing.py: SyntaxError in shop/pricing.py:{line}: {cause}"
    )
    assert {(d["path"], d["line"], d["kind"]) for d in data["diagnostics"]} == {("shop/pricing.py", line, "collect")}
    ran = {r["nodeid"]: r["outcome"] for r in data["results"]}
    assert ran["tests/test_text.py::test_money"] == "passed"


def test_an_import_error_in_a_conftest_or_module_names_module_file_and_line(fixed_shop, python):
    write(
        fixed_shop,
        {"shop/cart.py": "from shop.pricing import no_such_name\n" + (fixed_shop / "shop" / "cart.py").read_text()},
    )
    code, data = check(fixed_shop, "--all", "--python", python)
    assert code == 3
    assert (
        "could not collect tests/test_cart.py: ImportError in shop/cart.py:1: cannot import name 'no_such_name'"
        in (data["cause"])
    )
    assert [(d["path"], d["line"]) for d in data["diagnostics"]] == [("shop/cart.py", 1)]


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
def test_a_known_failure_runs_again_until_it_passes(shop):
    assert check(shop)[0] == 1  # bulk_discount has a bug
    proc = check_text(shop)
    assert proc.returncode == 1
    assert "No changes since the last run.\nRe-running 1 test that failed last time." in proc.stdout
    assert "FAILED tests/test_pricing.py::test_bulk_discount_tiers" in proc.stdout
    code, data = check(shop)
    assert (code, data["selected"], data["verdict"]) == (
        1,
        ["tests/test_pricing.py::test_bulk_discount_tiers"],
        "failed",
    )
    pricing = shop / "shop" / "pricing.py"
    pricing.write_text(pricing.read_text().replace("if quantity > 50:", "if quantity >= 50:"))
    code, data = check(shop)
    assert (code, data["verdict"]) == (0, "passed")
    code, data = check(shop)
    assert (code, data["selected"]) == (0, [])


def test_a_module_that_failed_to_collect_runs_again_and_is_forgotten_once_fixed(fixed_shop):
    check(fixed_shop)
    pricing = fixed_shop / "shop" / "pricing.py"
    good = pricing.read_text()
    break_pricing(fixed_shop)
    assert check(fixed_shop)[0] == 3
    code, data = check(fixed_shop)  # no change: the modules that could not be collected run again
    assert code == 3 and {"tests/test_cart.py", "tests/test_pricing.py"} <= set(data["selected"])
    pricing.write_text(good)
    assert check(fixed_shop)[0] == 0
    code, data = check(fixed_shop)
    assert (code, data["selected"]) == (0, [])


def test_a_known_failure_of_a_deleted_test_is_forgotten(shop):
    assert check(shop)[0] == 1
    (shop / "tests" / "test_pricing.py").unlink()
    code, data = check(shop)
    assert code == 0 and "tests/test_pricing.py::test_bulk_discount_tiers" not in data["selected"]


def test_a_changed_data_file_is_listed_as_a_change(fixed_shop):
    write(
        fixed_shop,
        {
            "tests/rates.json": '{"rate": 1}\n',
            "tests/test_rates.py": "import json\nfrom pathlib import Path\n\n\ndef test_rate():\n"
            "    assert json.loads((Path(__file__).parent / 'rates.json').read_text())['rate'] == 1\n",
        },
    )
    assert check(fixed_shop)[0] == 0
    (fixed_shop / "tests" / "rates.json").write_text('{"rate": 2}\n')
    data = check(fixed_shop, "--no-run")[1]
    assert data["changed"] == [
        {"path": "tests/rates.json", "symbol": "tests/rates.json", "kind": "file", "what": "changed", "line": 1}
    ]
    assert data["selected"] == ["tests/test_rates.py::test_rate"]
    proc = check_text(fixed_shop)
    assert proc.returncode == 1
    assert "No changes" not in proc.stdout
    assert "tests/rates.json:1  tests/rates.json  [changed]" in proc.stdout


def test_a_changed_pytest_configuration_is_a_change(fixed_shop):
    assert check(fixed_shop)[0] == 0
    (fixed_shop / "pyproject.toml").write_text(PYPROJECT + 'addopts = "-p no:randomly"\n')
    data = check(fixed_shop, "--no-run")[1]
    assert [c["path"] for c in data["changed"]] == ["pyproject.toml"]
    assert len(data["selected"]) == 8


# the editor
def diagnostics(client, path: Path) -> list[types.Diagnostic]:
    return [d for d in client.diagnostics.get(path.as_uri(), []) if d.source == "tracefix"]


async def save(client, path: Path, text: str, version: int) -> None:
    """Write and save `text` as the open buffer of `path` (opened at version 1)."""
    path.write_text(text)
    if version == 1:
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                types.TextDocumentItem(uri=path.as_uri(), language_id="python", version=1, text=text)
            )
        )
    else:
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(version=version, uri=path.as_uri()),
                [types.TextDocumentContentChangeWholeDocument(text=text)],
            )
        )
    client.text_document_did_save(types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(uri=path.as_uri())))


def done(client) -> list[dict]:
    return [n for n in client.tracefix_results if n["done"]]


async def test_the_editor_shows_an_incomplete_run_as_an_error_with_its_cause(fixed_shop):
    write(fixed_shop, INCOMPLETE["conftest-import"][0])
    async with session(fixed_shop) as client:
        await client.workspace_execute_command_async(types.ExecuteCommandParams(command="tracefix.runAll"))
        await wait_until(lambda: done(client))
        summary = done(client)[-1]["summary"]
        assert (summary["verdict"], summary["passed"]) == ("incomplete", 0)
        assert "ModuleNotFoundError in tests/conftest.py:1" in summary["message"]
        await wait_until(lambda: client.tracefix_status[-1]["state"] != "running")
        status = client.tracefix_status[-1]
        assert status["state"] == "error" and "did not complete" in status["message"]
        conftest = fixed_shop / "tests" / "conftest.py"
        await wait_until(lambda: diagnostics(client, conftest))
        assert diagnostics(client, conftest)[0].range.start.line == 0


async def test_the_editor_ends_a_run_before_tracing_its_failures(shop):
    write(shop, {"tests/conftest.py": SLOW_TRACE})

    def noted() -> bool:
        return any(m.message.startswith(f"no trace of {BULK}") for m in client.log_messages)

    async with session(shop, settings={"trace": {"timeout": 3}}) as client:
        await client.workspace_execute_command_async(types.ExecuteCommandParams(command="tracefix.runAll"))
        await wait_until(lambda: done(client) and client.tracefix_status[-1]["state"] == "failed")
        assert done(client)[-1]["summary"]["verdict"] == "failed" and not noted()
        await wait_until(noted)  # within its budget, not the test's timeout of 120 s
        [note] = [m.message for m in client.log_messages if m.message.startswith("no trace of")]
        assert note == f"no trace of {BULK}: tracing did not finish in 3 s"
        assert [n for n in client.tracefix_results if n["done"]] == done(client)[:1]  # the trace reported no result


async def test_the_editor_places_a_collection_error_at_its_cause_and_clears_it(fixed_shop):
    pricing = fixed_shop / "shop" / "pricing.py"
    good = pricing.read_text()
    async with session(fixed_shop) as client:
        break_pricing(fixed_shop)
        await save(client, pricing, pricing.read_text(), 1)
        await wait_until(lambda: done(client))
        assert done(client)[-1]["summary"]["verdict"] == "incomplete"
        await wait_until(lambda: diagnostics(client, pricing))
        assert {d.range.start.line for d in diagnostics(client, pricing) if d.code != "syntax"} == {15}
        assert "SyntaxError in shop/pricing.py:16: '(' was never closed" in diagnostics(client, pricing)[-1].message
        assert not diagnostics(client, fixed_shop / "tests" / "test_pricing.py")
        await wait_until(lambda: client.tracefix_status[-1]["state"] == "error")
        client.tracefix_results.clear()
        await save(client, pricing, good, 2)
        await wait_until(lambda: done(client))
        assert done(client)[-1]["summary"]["verdict"] == "passed"
        await wait_until(lambda: not diagnostics(client, pricing))
        await wait_until(lambda: client.tracefix_status[-1]["state"] == "idle")


async def test_the_editor_restores_known_failures_and_reruns_them_on_run_affected(shop):
    assert check(shop)[0] == 1
    tests = shop / "tests" / "test_pricing.py"
    async with session(shop) as client:
        await wait_until(lambda: diagnostics(client, tests))  # restored at start-up, before any run
        assert client.tracefix_status[-1]["failed"] == 1
        answer = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="tracefix.runAffected")
        )
        assert answer == {"changes": 0, "failing": 1}
        await wait_until(lambda: done(client))
        ran = [r["nodeid"] for n in client.tracefix_results for r in n["results"]]
        assert ran == ["tests/test_pricing.py::test_bulk_discount_tiers"]
        assert done(client)[-1]["summary"]["failed"] == 1


async def test_nothing_to_run_ends_with_a_done_notification(fixed_shop):
    extra = fixed_shop / "shop" / "extra.py"
    async with session(fixed_shop) as client:
        await save(client, extra, "def unused():\n    return 1\n", 1)
        await wait_until(lambda: done(client))
        summary = done(client)[-1]["summary"]
        assert (summary["status"], summary["verdict"]) == ("nothing to run", "passed")


async def test_a_deleted_and_restored_folder_is_not_recreated_and_bugs_are_still_reported(fixed_shop, tmp_path):
    backup = tmp_path / "backup"
    shutil.copytree(fixed_shop, backup, ignore=shutil.ignore_patterns(".tracefix"))
    async with session(fixed_shop) as client:  # this client cannot watch files: watchdog does
        shutil.rmtree(fixed_shop)
        await wait_until(lambda: done(client))  # the deletions reached the server and it ran
        await wait_until(lambda: client.tracefix_status[-1]["state"] != "running")
        assert not fixed_shop.exists()
        shutil.copytree(backup, fixed_shop)
        client.tracefix_results.clear()
        pricing = fixed_shop / "shop" / "pricing.py"
        await save(client, pricing, pricing.read_text().replace("if quantity >= 50:", "if quantity > 50:"), 1)
        await wait_until(lambda: diagnostics(client, pricing))
        assert "bulk_discount: gives a wrong result" in diagnostics(client, pricing)[0].message


async def test_the_idle_audit_marks_what_it_found_and_does_not_count_it(shop, monkeypatch):
    monkeypatch.setenv("TRACEFIX_AUDIT_IDLE", "0.5")
    text = shop / "shop" / "text.py"
    pricing, nodeid = shop / "shop" / "pricing.py", "tests/test_pricing.py::test_bulk_discount_tiers"
    async with session(shop) as client:
        await save(client, text, text.read_text().replace('.2f} EUR"', '.2f}" + " EUR"'), 1)  # its tests pass
        await wait_until(lambda: any("idle audit" in m.message for m in client.log_messages))
        audit = next(m.message for m in client.log_messages if "idle audit" in m.message)
        assert f"found by the idle audit, failing in no run you started: {nodeid}" in audit
        assert "selection skipped" not in audit  # it never passed: not a miss of selection
        await wait_until(lambda: diagnostics(client, pricing))
        found = diagnostics(client, pricing)[0]
        assert found.message.startswith("found by the idle audit: ")
        assert found.severity == types.DiagnosticSeverity.Warning
        status = client.tracefix_status[-1]
        assert status["failed"] == 0 and nodeid in status["message"]
        client.tracefix_results.clear()
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="tracefix.rerunTest", arguments=[nodeid])
        )
        await wait_until(lambda: done(client))
        await wait_until(lambda: client.tracefix_status[-1]["failed"] == 1)
        assert not diagnostics(client, pricing)[0].message.startswith("found by the idle audit")
