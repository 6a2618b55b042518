"""The run queue: the latest saved state is always the one that ends up tested, whatever a save
interrupts (a run starting, results streaming, trace capture, the idle audit)."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st
from tests.support.raw_lsp import RawServer

from conftest import baselined, session, wait_until
from test_lsp_e2e import edit_and_save, open_file

CALC = """\
def add(a, b):
    return a + b


def mul(a, b):
    return a * b
"""
FILES = {
    "pkg/__init__.py": "",
    "pkg/calc.py": CALC,
    # slow enough that saves land while results stream
    "tests/test_add.py": """\
        import time

        import pytest

        from pkg.calc import add


        @pytest.mark.parametrize("n", range(3))
        def test_add(n):
            time.sleep(0.2)
            assert add(n, 1) == n + 1
        """,
    "tests/test_mul.py": """\
        import time

        import pytest

        from pkg.calc import mul


        @pytest.mark.parametrize("n", range(3))
        def test_mul(n):
            time.sleep(0.2)
            assert mul(n, 2) == n + n
        """,
}
VARIANTS = {  # what a save of pkg/calc.py holds
    "right": CALC,
    "add broken": CALC.replace("a + b", "a - b"),
    "mul broken": CALC.replace("a * b", "a + b"),  # right for n == 2 only
    "both broken": CALC.replace("a + b", "a - b").replace("a * b", "a + b"),
    "commented": CALC.replace("    return a + b", "    # the sum\n    return a + b"),
}
# after a save: a pause, or until the next result streams in, or until the next run ends
PAUSES = [0.0, 0.05, 0.3, 1.0, "result", "done"]


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def shown(diagnostics: dict) -> set[str]:
    """The tests whose failures the editor shows (diagnostics as dicts: RawServer's)."""
    return {
        d["code"] for ds in diagnostics.values() for d in ds if d.get("source") == "tracefix" and d["code"] != "syntax"
    }


def failing_in_a_fresh_run(root: Path) -> set[str]:
    """What a full pytest run of the files as they are now says fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", "--no-header"],
        cwd=root,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return {line.split()[1] for line in proc.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))}


class Editor:
    """One open pkg/calc.py in a live server: saves, and pauses keyed to what the server sends."""

    def __init__(self, root: Path, audit_idle: str):
        self.root, self.calc = root, root / "pkg" / "calc.py"
        self.server = RawServer(root, env=dict(os.environ, TRACEFIX_AUDIT_IDLE=audit_idle))
        self.server.initialize()
        self.version = 1
        self.server.open(self.calc, version=self.version)

    def save(self, variant: str) -> None:
        text = VARIANTS[variant]
        self.version += 1
        uri = self.calc.as_uri()
        self.server.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": self.version}, "contentChanges": [{"text": text}]},
        )
        self.calc.write_text(text)
        self.server.save(self.calc)

    def pause(self, pause: float | str) -> None:
        if not isinstance(pause, str):
            time.sleep(pause)
            return
        seen = len(self.server.notes("tracefix/testResults"))
        wanted = (lambda n: not n["done"]) if pause == "result" else (lambda n: n["done"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(map(wanted, self.server.notes("tracefix/testResults")[seen:])):
            time.sleep(0.02)  # none may come: nothing selected, or the run had ended

    def settle(self) -> None:
        """Until nothing has come from the server for a while."""
        count, quiet_since = -1, time.monotonic()
        deadline = quiet_since + 60
        while time.monotonic() - quiet_since < 2 and time.monotonic() < deadline:
            if len(self.server.notifications) != count:
                count, quiet_since = len(self.server.notifications), time.monotonic()
            time.sleep(0.1)


steps = st.lists(st.tuples(st.sampled_from(sorted(VARIANTS)), st.sampled_from(PAUSES)), min_size=1, max_size=5)
CASES = [  # (TRACEFIX_AUDIT_IDLE, generated examples): "3600" keeps the audit, which runs every test, out
    pytest.param("3600", 2, id="no audit"),
    pytest.param("0.5", 2, id="audits"),
    pytest.param("0.5", 30, marks=[pytest.mark.slow, pytest.mark.timeout(3600)], id="many"),
]


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
@pytest.mark.parametrize(("audit_idle", "examples"), CASES)
def test_the_last_save_ends_up_tested(tmp_path, audit_idle, examples):
    """Saves interleaved with run events; once the server is quiet again, its diagnostics are
    what a fresh run of every test says of the files as saved."""
    write(tmp_path, FILES)
    editor = Editor(tmp_path, audit_idle)

    def saves_end_tested(sequence: list[tuple[str, float | str]]) -> None:
        for variant, pause in sequence:
            editor.save(variant)
            editor.pause(pause)
        expected = failing_in_a_fresh_run(tmp_path)
        server = editor.server
        server.wait(lambda: shown(server.diagnostics) == expected, 120, f"the editor never showed {expected}")
        editor.settle()
        assert shown(server.diagnostics) == expected

    if audit_idle == "3600":  # where an audit cannot hide a stale diagnostic
        for sequence in (
            [("add broken", "result"), ("right", 0.0)],  # undo as soon as the first failure shows
            [("both broken", "done"), ("right", 0.0)],  # a save while failures are traced
            [("mul broken", 0.05), ("add broken", "result"), ("mul broken", "result"), ("right", "done")],
        ):
            saves_end_tested = example(sequence)(saves_end_tested)
    # a failing example's replays take minutes each: no shrinking
    check = settings(max_examples=examples, deadline=None, database=None, phases=[Phase.explicit, Phase.generate])
    try:
        check(given(steps)(saves_end_tested))()
    finally:
        editor.server.close()


async def test_undo_while_results_stream_is_tested(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACEFIX_AUDIT_IDLE", "3600")  # no audit to run every test meanwhile
    write(tmp_path, FILES)
    calc = tmp_path / "pkg" / "calc.py"

    def failing() -> set[str]:
        return shown(
            {uri: [{"source": d.source, "code": d.code} for d in ds] for uri, ds in client.diagnostics.items()}
        )

    async with session(tmp_path) as client:
        await open_file(client, calc)
        await edit_and_save(client, calc, "return a + b", "return a - b", 2)
        await wait_until(failing)  # the first failure streamed in
        await edit_and_save(client, calc, "return a - b", "return a + b", 3)  # back to the tested text
        await wait_until(lambda: not failing(), 90)


async def test_a_run_moves_the_baseline_only_for_content_it_tested(tmp_path):
    write(tmp_path, FILES)
    with baselined(tmp_path) as project:
        project.file_changed("pkg/calc.py", VARIANTS["add broken"])
        plan = project.plan(["tests/test_add.py::test_add"])
        project.file_changed("pkg/calc.py", VARIANTS["mul broken"])  # saved while the run is under way
        report = await project.execute(plan)
        project.conclude(plan, report)
        project.record(report, ["pkg/calc.py"], plan.started)
        assert [(c.qualname, c.what) for c in project.changes_since_snapshot()] == [("mul", "changed")]
