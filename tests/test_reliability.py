"""Hostile input, hostile tests, hostile models: the server keeps serving, runs stay bounded and
are reported as such, model code stays in its copy, secrets stay out of logs and prompts, and
the `.tracefix` store survives. docs/reliability.md maps each fault class to its test here."""

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.io_ import StdoutWriter
from tests.support.projects import ROOT_ON_PATH, write
from tests.support.raw_lsp import RawServer

from conftest import run_all, session, wait_until
from test_fixing import RIGHT
from test_lsp_e2e import edit_and_save, errors, open_file
from test_lsp_fixes import actions_at
from tracefix.index.store import Store
from tracefix.lsp.server import create_server
from tracefix.running.process import CPU_GRACE, FILE_BYTES, Limits
from tracefix.running.runner import run_tests

BULK = "tests/test_pricing.py::test_bulk_discount_tiers"


def fs_uri(path: Path) -> dict:
    return {"uri": path.as_uri()}


def live_commands(marker: str) -> list[str]:
    """Command lines of live processes that contain marker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(cmdline)
    return found


# --- the protocol: whatever a client sends, the server answers what it can and keeps serving


def test_malformed_frames_are_skipped_and_requests_answered(fixed_shop):
    server = RawServer(fixed_shop)
    body = b'{"jsonrpc": "2.0", "method": "$/junk"}'
    cases = {
        "invalid JSON": lambda: server.frame(b"{not json"),
        "JSON that is not JSON-RPC": lambda: server.frame(b"[1, 2, 3]"),
        "a header without a length": lambda: server.send_bytes(b"Content-Length: many\r\n\r\n" + body),
        "a length too short": lambda: server.frame(body, length=5),
        # too long: swallows what follows up to its length, then the reader finds the next header
        "a length too long": lambda: (
            [server.frame(body, length=len(body) + 200)]
            + [server.notify("$/pad", {"pad": "x" * 100}) for _ in range(3)]
        ),
        "an absurd length": lambda: server.frame(body, length=10**12),
        "a notification of an unknown method": lambda: server.notify("$/unknown", {"a": 1}),
        "params of the wrong types": lambda: server.notify("textDocument/didOpen", {"textDocument": 5}),
    }
    try:
        server.initialize()
        for name, send in cases.items():
            send()
            assert server.alive(), name
        assert server.request("textDocument/hover", {"textDocument": 5, "position": "x"})["error"]["code"] == -32602
        assert server.request("tracefix/noSuchMethod", {})["error"]["code"] == -32601
        assert server.alive()
    finally:
        assert server.close() == 0


def test_odd_documents_keep_the_loop_working(fixed_shop):
    server = RawServer(fixed_shop)
    odd, pricing = fixed_shop / "shop" / "odd.py", fixed_shop / "shop" / "pricing.py"
    odd.write_text("x = 1\n")
    odd_text = "def f(:\r\n\x00 \ud800 \U0001f600 \udcff\r\n\tif if if\n" * 50  # never valid Python

    def change(path: Path, version: int, *edits) -> None:
        server.notify(
            "textDocument/didChange",
            {"textDocument": {**fs_uri(path), "version": version}, "contentChanges": list(edits)},
        )

    def span(a, b, c, d) -> dict:
        return {"start": {"line": a, "character": b}, "end": {"line": c, "character": d}}

    try:
        server.initialize()
        change(odd, 2, {"range": span(0, 0, 0, 0), "text": "x"})  # never opened
        server.notify("textDocument/didClose", {"textDocument": fs_uri(fixed_shop / "never.py")})
        server.open(odd, odd_text)
        change(
            odd,
            2,
            {"range": span(999, 5, 1000, 99), "text": "past the end"},
            {"range": span(3, 0, 1, 0), "text": "\U0001f600 inverted"},
            {"range": span(1, 10**6, 2, 3), "text": "\x00"},
        )
        assert "result" in server.hover(odd, 10**6, 10**6)
        assert "result" in server.request(
            "textDocument/codeAction",
            {"textDocument": fs_uri(odd), "range": span(0, 0, 10**6, 0), "context": {"diagnostics": []}},
        )
        server.save(odd)
        server.wait(lambda: server.diagnostics.get(odd.as_uri()), what="no syntax errors for the odd file")
        big = fixed_shop / "shop" / "big.py"
        big.write_text("x = 1\n")
        server.open(big, "x = 1  # " + "é" * 5_000_000 + "\n")  # 10 MB of UTF-8
        change(big, 2, {"range": span(0, 4, 0, 5), "text": "2"})
        server.save(big)
        server.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": "untitled:Untitled-1", "languageId": "python", "version": 1, "text": "def f(:"}},
        )
        assert server.alive()

        # and the save loop still reports a failing test
        broken = pricing.read_text().replace("return 0\n", "return 1\n")
        server.open(pricing)
        change(pricing, 2, {"text": broken})
        pricing.write_text(broken)
        server.save(pricing)
        test_uri = (fixed_shop / "tests" / "test_pricing.py").as_uri()
        server.wait(lambda: server.diagnostics.get(test_uri), 60, "no diagnostic for the broken function")
    finally:
        assert server.close() == 0


def test_the_server_exits_when_its_editor_goes_away(fixed_shop):
    server = RawServer(fixed_shop)
    server.initialize()
    server.proc.stdin.close()
    assert server.proc.wait(15) == 0


# --- hostile test suites: each run is bounded and reported, the server and its store unharmed

HOSTILE = """\
import ctypes, os, shutil, subprocess, sys, time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def stuck():
    time.sleep(3600)


def test_hangs_in_a_fixture(stuck):
    pass


def test_forks_200():
    children = [subprocess.Popen(["sleep", "3601"]) for _ in range(200)]
    assert all(child.poll() is None for child in children)


def test_exits():
    os._exit(3)


def test_segfaults():
    ctypes.string_at(0)


def test_prints_100_mb():
    sys.stdout.write("x" * 100_000_000)
    assert False


def test_raises_20_mb():
    raise ValueError("x" * 20_000_000)


def test_deletes_the_store():
    shutil.rmtree(ROOT / ".tracefix")
"""


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    files = {
        "calc.py": "def add(a, b):\n    return a + b\n",
        "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n",
        "tests/test_hostile.py": HOSTILE,
    }
    return write(tmp_path / "hostile", {**files, **ROOT_ON_PATH})


async def rerun(client, nodeid: str) -> tuple[dict, dict]:
    """Rerun one test through the server: (its result, the run's summary)."""
    client.tracefix_results.clear()
    await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="tracefix.rerunTest", arguments=[nodeid])
    )
    await wait_until(lambda: any(n["done"] for n in client.tracefix_results))
    [result] = [r for n in client.tracefix_results for r in n["results"] if r["nodeid"] == nodeid]
    [summary] = [n["summary"] for n in client.tracefix_results if n["done"]]
    return result, summary


async def break_and_wait(client, root: Path, path: str, old: str, new: str, test_file: str) -> None:
    """The save loop still works: break a function, save, and its test's diagnostic arrives."""
    await open_file(client, root / path)
    await edit_and_save(client, root / path, old, new, 2)
    await wait_until(lambda: errors(client, root / test_file))


# (test, outcome, run status, words in the run's message); a hanging test is in test_runner.py
HOSTILE_CASES = [
    ("test_hangs_in_a_fixture", "timeout", "timeout", "test_hangs_in_a_fixture ran past the per-test timeout of 8 s"),
    ("test_forks_200", "passed", "ok", ""),
    ("test_exits", "crashed", "crashed", "exit status 3 before pytest finished"),
    ("test_segfaults", "crashed", "crashed", "signal 11 (SIGSEGV)"),
    ("test_prints_100_mb", "failed", "ok", ""),
    ("test_raises_20_mb", "failed", "ok", ""),  # its message is cut to 20,000 characters
    ("test_deletes_the_store", "passed", "ok", ""),
]


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
async def test_hostile_tests_are_bounded_and_the_server_unharmed(hostile):
    async with session(hostile, settings={"timeout": 8}) as client:
        for test, outcome, status, words in HOSTILE_CASES:
            started = time.monotonic()
            result, summary = await rerun(client, f"tests/test_hostile.py::{test}")
            assert (result["outcome"], summary["status"]) == (outcome, status), (test, result, summary)
            assert words in summary["message"]
            assert time.monotonic() - started < 30, test
        await wait_until(lambda: not live_commands("sleep 3601"), 10)  # the group kill reaped all 200
        assert (hostile / ".tracefix" / "index.sqlite").exists()  # the store noticed and recreated it
        await break_and_wait(client, hostile, "calc.py", "a + b", "a - b", "tests/test_calc.py")
    store = Store(hostile)  # the next session opens the recreated store without complaint
    assert store.warnings == []
    store.close()


def test_quitting_during_a_run_is_prompt(hostile):
    server = RawServer(hostile, settings={"timeout": 60})
    server.initialize()
    server.request(
        "workspace/executeCommand",
        {"command": "tracefix.rerunTest", "arguments": ["tests/test_hostile.py::test_hangs_in_a_fixture"]},
    )
    server.wait(lambda: any(s["state"] == "running" for s in server.notes("tracefix/status")))
    started = time.monotonic()
    server.send({"id": "bye", "method": "shutdown"})  # and exit at once, as editors do when they quit
    server.notify("exit")
    assert server.proc.wait(30) == 0
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 10  # SIGKILL is sent; the child may take a moment to go
    while live_commands("test_hangs_in_a_fixture"):
        assert time.monotonic() < deadline, "the run outlived the server"
        time.sleep(0.1)


def test_a_closed_stream_ends_error_reporting():
    """Reporting an error sends a message; when sending fails, that is reported once, not again
    and again (it was a recursion that logged for seconds when the editor quit mid-run)."""
    ls = create_server()
    stream = io.BytesIO()
    stream.close()
    ls.protocol.set_writer(StdoutWriter(stream))
    reports = []
    report = ls.report_server_error
    ls.report_server_error = lambda error, source: (reports.append(error), report(error, source))
    ls.log("a run was cancelled")
    assert len(reports) <= 2


@pytest.mark.parametrize(
    "limits, body, outcome, words",
    [
        (Limits(timeout=60, file_bytes=1 << 20), "open('big', 'wb').write(bytes(2 << 20))", "failed", "File too large"),
        (Limits(timeout=60, cpu_seconds=3), "while True: pass", "timeout", "used up its CPU time limit of 3 s"),
    ],
    ids=["file size", "cpu time"],
)
def test_rlimits_stop_a_runaway_test(tmp_path, limits, body, outcome, words):
    (tmp_path / "test_runaway.py").write_text(f"def test_runaway():\n    {body}\n")
    report = asyncio.run(run_tests(tmp_path, sys.executable, ["test_runaway.py"], limits=limits))
    assert report.results[0].outcome == outcome
    assert words in report.results[0].message


def test_every_run_gets_default_limits():
    limits = Limits(timeout=5).bounded()
    assert limits.cpu_seconds == 5 * os.cpu_count() + CPU_GRACE
    assert limits.file_bytes == FILE_BYTES
    assert limits.processes > len(live_commands(""))  # above what runs now: a margin, not a cap on the user
    assert limits.memory_bytes is None


# --- trust: nothing of the project runs before it is trusted (the save loop: test_lsp_features.py)


async def test_no_run_and_an_untrusted_session_run_no_project_code(shop, tmp_path):
    ran = tmp_path / "project-code-ran"
    (shop / "tests" / "conftest.py").write_text(f"from pathlib import Path\nPath({str(ran)!r}).write_text('x')\n")
    cli = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tracefix", "check", str(shop), "--all", "--no-run"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert f"--no-run: would run 8 test(s) with {sys.executable}; ran nothing." in cli.stdout
    store = Store(shop)  # a failure from an earlier, trusted session: something to ask a fix for
    store.save_results([{"nodeid": BULK, "outcome": "failed", "path": "tests/test_pricing.py", "line": 8}])
    store.close()
    async with session(shop, trusted=False) as client:
        await client.workspace_execute_command_async(types.ExecuteCommandParams(command="tracefix.runAll"))
        await wait_until(lambda: client.tracefix_status[-1]["state"] == "untrusted")
        for command in ("tracefix.fixTest", "tracefix.showTrace"):
            with pytest.raises(Exception, match="not trusted"):
                await client.workspace_execute_command_async(
                    types.ExecuteCommandParams(command=command, arguments=[BULK])
                )
    assert not ran.exists()
    await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pytest", "--collect-only", "-q"],
        cwd=shop,
        capture_output=True,
        check=False,
    )
    assert ran.exists()  # the probe works: any pytest run imports it


# --- model code runs only in the shadow copy; secrets stay out of prompts and logs

# a right fix that also writes where it runs: the working directory, HOME, TMPDIR, its module's folder
ESCAPING = RIGHT.replace(
    "    if quantity >= 50:",
    (
        "    import os, pathlib, tempfile\n"
        "    for place in (os.getcwd(), os.path.expanduser('~'), tempfile.gettempdir(), os.path.dirname(__file__)):\n"
        "        pathlib.Path(place, 'tracefix-was-here').write_text('x')\n"
        "    if quantity >= 50:"
    ),
    1,
)


def model(fake, **more) -> dict:
    return {"llm": {"model": "fake-model", "baseUrl": fake.base_url, "candidates": 1, "rounds": 1, **more}}


async def fix(client, nodeid: str = BULK) -> dict:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="tracefix.fixTest", arguments=[nodeid])
    )


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
async def test_model_code_runs_only_in_the_shadow_copy(shop, fake_openai, tmp_path, monkeypatch):
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir(), tmp.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TMPDIR", str(tmp))
    before = {p: p.read_bytes() for p in shop.rglob("*.py")}
    fake = fake_openai([ESCAPING])
    async with session(shop, settings=model(fake)) as client:
        await run_all(client)
        result = await fix(client)
    assert result["status"] == "verified", result  # so the candidate ran, writes and all
    for place in (shop, home, tmp):
        assert not list(place.rglob("tracefix-was-here")), place
    assert {p: p.read_bytes() for p in shop.rglob("*.py")} == before


KEY = "tfx-test-key-5f1c0a77e2"  # no built-in pattern matches it: only the key's own redaction can


async def test_the_api_key_is_never_logged_nor_sent_and_patterns_are_redacted(shop, fake_openai, tmp_path, monkeypatch):
    log = tmp_path / "server.log"
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("TRACEFIX_TEST_LOG", str(log))  # conftest starts the server with --verbose --log-file
    test_file = shop / "tests" / "test_pricing.py"
    test_file.write_text(
        test_file.read_text().replace(
            "def test_bulk_discount_tiers():\n",
            f"def test_bulk_discount_tiers():\n    # pasted by mistake: {KEY}, ticket INTERNAL-424242\n",
        )
    )
    fake = fake_openai([RIGHT])
    # allowRemote false: the loopback server is still allowed
    settings = model(fake, redact=[r"INTERNAL-\d{6}"], allowRemote=False)
    async with session(shop, settings=settings) as client:
        await run_all(client)
        assert (await fix(client))["status"] == "verified"
    [sent] = fake.chat_requests
    assert sent.headers["authorization"] == f"Bearer {KEY}"  # the key goes where it belongs, only there
    body = json.dumps(sent.body)
    assert "pasted by mistake: REDACTED_" in body
    assert KEY not in body and "INTERNAL-424242" not in body
    text = log.read_text()
    assert "tracefix.fixTest" in text and KEY not in text  # the log saw the fix, not the key


# each model fault, through the server's fix command: (what, scripted steps, words the user reads)
FAULTS = [
    ("a timeout", [{"delay": 3, "reply": RIGHT}], "did not answer within 1 s"),
    (
        "429 asking to wait an hour",
        [{"status": 429, "headers": {"Retry-After": "3600"}}],
        "rate limiting requests (429)",
    ),
    ("503, retried", [{"status": 503, "headers": {"Retry-After": "0"}}] * 4, "HTTP 503 after 4 tries"),
    ("a malformed completion", [{"raw": "<html>bad gateway</html>"}], "malformed reply"),
    ("a cut-off stream", [{"finish_reason": "length", "reply": RIGHT[:80]}], "cut off at its token limit"),
    ("a reply that is not code", ["Sorry, I cannot help with that."], "no candidate fix after 1 model calls"),
]
REMOTE = {"model": "m", "baseUrl": "http://203.0.113.7:8080/v1", "allowRemote": False}


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
async def test_model_faults_reach_the_user_and_never_an_edit(shop, fake_openai):
    fake = fake_openai([step for _, steps, _ in FAULTS for step in steps])
    pricing, test_file = shop / "shop" / "pricing.py", shop / "tests" / "test_pricing.py"
    before = pricing.read_text()

    async def fails_cleanly(what: str, words: str) -> None:
        result = await fix(client)
        assert result["status"] == "error" and words in result["message"], (what, result)
        assert any(words in m.message for m in client.messages), what  # window/showMessage
        actions = await actions_at(client, test_file, errors(client, test_file)[0])
        assert not [a for a in actions if a.title.startswith("Apply")], what

    async with session(shop, settings=model(fake, timeout=1)) as client:
        await run_all(client)
        for what, _, words in FAULTS:
            await fails_cleanly(what, words)
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"tracefix": {"llm": REMOTE}})
        )
        await fails_cleanly("a remote endpoint with allowRemote false", "allowRemote is false")
    assert pricing.read_text() == before
    assert len(fake.chat_requests) == sum(len(steps) for _, steps, _ in FAULTS)  # none to the remote one


# --- nothing lost: the store survives kills, sharing and corruption

WRITER = """
import sys
from pathlib import Path
from tracefix.index.store import Store
from tracefix.lsp.server import create_server

store = Store(Path(sys.argv[1]))
print("writing", flush=True)
for n in range(10**9):
    store.save_results([{"nodeid": f"t{i}", "outcome": "passed", "n": n} for i in range(200)])
"""


def test_the_store_survives_sigkill_mid_write(tmp_path):
    for kill in range(5):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE)
        assert writer.stdout.readline() == b"writing\n"
        time.sleep(0.1 + 0.1 * kill)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        store = Store(tmp_path)
        try:
            assert store.warnings == []
            assert store.db.execute("pragma integrity_check").fetchone() == ("ok",)
            results = store.results()
            assert len(results) == 200 and len({r["n"] for r in results.values()}) == 1  # whole writes only
        finally:
            store.close()


async def test_a_cli_run_and_a_server_session_share_the_store(shop):
    async with session(shop) as client:
        cli = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tracefix",
            "check",
            str(shop),
            "--all",
            "--no-trace",
            "--format",
            "json",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        await run_all(client)  # the server runs and writes while the CLI does
        out, err = await cli.communicate()
        assert cli.returncode == 1, err
        failed = [r["nodeid"] for r in json.loads(out)["results"] if r["outcome"] == "failed"]
        assert failed == [BULK]
        await break_and_wait(client, shop, "shop/text.py", "EUR", "USD", "tests/test_text.py")
    store = Store(shop)
    assert store.warnings == [] and store.results()[BULK]["outcome"] == "failed"
    store.close()


async def test_a_corrupt_store_is_rebuilt_with_a_warning(fixed_shop):
    Store(fixed_shop).close()
    (fixed_shop / ".tracefix" / "index.sqlite").write_bytes(b"not a database " * 1000)
    async with session(fixed_shop) as client:
        assert any("rebuilt the tracefix index: it is corrupt" in m.message for m in client.log_messages)
        await break_and_wait(client, fixed_shop, "shop/pricing.py", "return 0\n", "return 1\n", "tests/test_pricing.py")


def test_git_config_cannot_run_programs(fixed_shop):
    """`check --no-run` promises to run nothing: not even what a repository's config names."""
    marker = fixed_shop.parent / "fsmonitor-ran"
    hook = fixed_shop.parent / "monitor.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    for args in (
        ["init", "-q"],
        ["add", "."],
        ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"],
        ["config", "core.fsmonitor", str(hook)],
    ):
        subprocess.run(["git", *args], cwd=fixed_shop, check=True, capture_output=True)
    (fixed_shop / "shop" / "text.py").write_text("def money(amount):\n    return ''\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tracefix", "check", str(fixed_shop), "--no-run"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "money" in proc.stdout  # the change was still found
    assert not marker.exists()
