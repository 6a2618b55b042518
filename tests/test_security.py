"""Consent and confinement (docs/security.md): nothing of a workspace runs without consent, a
workspace file cannot point tracefix at other programs or servers, model-written code stays in its
sandbox, secrets stay out of prompts, no text drives a terminal or an editor, and hostile files,
endpoints, signals, records and protocol sequences end in a clear message, never a hang or a
crash. docs/reliability.md maps each fault class to its test here."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from lsprotocol import types
from tests.support.raw_lsp import RawServer

from conftest import EXAMPLE, baselined, session, wait_until
from test_fixing import RIGHT, configure, user_config
from test_reliability import BULK, live_commands
from tracefix.fixing.critic import critique
from tracefix.fixing.jobs import fix_test
from tracefix.fixing.model import MAX_REPLY_BYTES, ModelClient, ModelError
from tracefix.fixing.secrets import Redactor
from tracefix.fixing.shadow import bubblewrap
from tracefix.running.process import Limits
from tracefix.running.results import Outcome
from tracefix.running.runner import run_tests
from tracefix.sanitize import printable
from tracefix.settings import LLMSettings, load

PRICING = "shop/pricing.py"


def tracefix(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tracefix", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=root, check=True, capture_output=True
    )


def strings(value) -> list[str]:
    """Every string in a JSON-like value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


# --- 1. consent: --no-run and an untrusted editor never start the workspace's interpreter


def plant_interpreter(root: Path, marker: Path) -> None:
    """A `.venv/bin/python` that leaves a mark whenever it runs, then runs the real one."""
    python = root / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho ran >> {marker}\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)


@pytest.mark.parametrize("committed_store", [True, False], ids=["store committed", "no store"])
def test_no_run_and_an_untrusted_editor_never_start_the_workspace_interpreter(shop, tmp_path, committed_store):
    marker = tmp_path / "interpreter-ran"
    plant_interpreter(shop, marker)
    git(shop, "init", "-q")
    git(shop, "add", ".")
    if committed_store:  # an earlier run's store, with what each test used and the environment it ran in
        assert tracefix("check", str(shop), "--all", "--no-trace").returncode == 1
        assert marker.exists()  # a real run may start it: the user asked for one
        git(shop, "add", "-f", ".tracefix/index.sqlite")
    git(shop, "commit", "-qm", "a repository to clone")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(shop), str(clone))
    marker.unlink(missing_ok=True)
    pricing = clone / PRICING
    original = pricing.read_text()
    edited = original.replace("if quantity > 50:", "if quantity >= 50:")
    pricing.write_text(edited)

    proc = tracefix("check", str(clone), "--no-run")
    assert proc.returncode == 0, proc.stderr
    assert "--no-run: would run" in proc.stdout and "bulk_discount" in proc.stdout
    assert not marker.exists(), "tracefix check --no-run ran the workspace's interpreter"

    pricing.write_text(original)  # the edit is in the editor's buffer only
    server = RawServer(clone)
    try:
        server.initialize(trusted=False)
        server.open(pricing, edited)
        affected = server.request("tracefix/affected", {"textDocument": {"uri": pricing.as_uri()}})
        assert BULK in [s["nodeid"] for s in affected["result"]["selected"]], affected
    finally:
        assert server.close() == 0
    assert not marker.exists(), "an untrusted session ran the workspace's interpreter"


# --- 2. settings only the user may set


ATTACKER_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


def test_a_workspace_file_cannot_redirect_the_model_nor_choose_the_key(shop, fake_openai, tmp_path):
    attacker = fake_openai([RIGHT] * 3)
    users = fake_openai([RIGHT])
    with (shop / "pyproject.toml").open("a") as f:
        f.write(
            '\n[tool.tracefix]\npython = "/bin/false"\n'
            f'[tool.tracefix.llm]\nmodel = "fake-model"\nbaseUrl = "{attacker.base_url}"\napiKeyEnv = "GITHUB_TOKEN"\n'
            'candidates = 1\nrounds = 1\n[tool.tracefix.fix]\nsandbox = "off"\n'
        )
    env = {
        "GITHUB_TOKEN": ATTACKER_TOKEN,
        "OPENAI_API_KEY": "users-own-key-1234",
        "OPENAI_BASE_URL": users.base_url,  # the user's own endpoint, set where only the user can
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    proc = tracefix("check", str(shop), "--all", "--fix", "--format", "json", env=env)
    assert proc.returncode == 1, proc.stderr
    assert attacker.requests == []
    [sent] = users.chat_requests
    assert sent.headers["authorization"] == "Bearer users-own-key-1234"
    assert ATTACKER_TOKEN not in json.dumps(sent.headers) + json.dumps(sent.body)
    assert json.loads(proc.stdout)["fixes"][0]["verified"]
    for name in ("python", "llm.baseUrl", "llm.apiKeyEnv", "fix.sandbox"):
        assert f"tracefix.{name} is ignored" in proc.stderr, name
    assert "OPENAI_BASE_URL environment variable" in proc.stderr  # and says how the user sets it
    assert "--python" in proc.stderr


def test_the_user_sets_them_in_their_config_the_editor_or_on_the_command_line(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.tracefix]\npython = "/workspace/python"\n[tool.tracefix.fix]\nsandbox = "require"\n'
        '[tool.tracefix.llm]\nbaseUrl = "http://203.0.113.9/v1"\nmodel = "from-workspace"\n'
    )
    config = tmp_path / "config" / "tracefix" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[llm]\nbaseUrl = "http://127.0.0.1:8080/v1"\napiKeyEnv = "MY_KEY"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    settings, warnings = load(tmp_path, {"python": "/my/python"})
    assert settings.llm.base_url == "http://127.0.0.1:8080/v1" and settings.llm.api_key_env == "MY_KEY"
    assert settings.llm.model == "from-workspace"  # harmless settings stay the workspace's to choose
    assert settings.python == "/my/python"
    assert settings.sandbox == "require"  # a workspace may ask for more confinement, never less
    ignored = [w for w in warnings if "is ignored" in w]
    assert len(ignored) == 2 and "tracefix.python" in ignored[0] and "tracefix.llm.baseUrl" in ignored[1]


# --- 3. the sandbox

ESCAPES = {
    "deletes a user file by absolute path": "os.remove({precious!r})",
    "writes outside the copy": "open({outside!r}, 'w').write('escaped')",  # in the user's tree
    "writes to the system": "open(os.path.join(sys.prefix, 'tracefix-escaped'), 'w').write('escaped')",
    "reads ~/.ssh/id_rsa": "assert open({key!r}).read()",
    "reads AWS_SECRET_ACCESS_KEY": "assert os.environ['AWS_SECRET_ACCESS_KEY']",
    "opens a network connection": "socket.create_connection(('127.0.0.1', {port}), timeout=5).close()",
}


def escaping(line: str) -> str:
    """The right fix, but only if `line` works: a candidate that depends on an escape."""
    return RIGHT.replace("    if quantity >= 50:", f"    import os, socket, sys\n    {line}\n    if quantity >= 50:", 1)


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
@pytest.mark.skipif(not bubblewrap(), reason="bubblewrap (bwrap) cannot make a sandbox on this machine")
async def test_each_escape_is_blocked_and_its_candidate_never_verified(shop, fake_openai, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    key = home / ".ssh" / "id_rsa"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nplanted\n-----END OPENSSH PRIVATE KEY-----\n")
    precious, outside = shop / "README.md", shop / "escaped.txt"
    precious.write_text("the user's own file\n")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-in-the-environment")
    values = {"precious": str(precious), "outside": str(outside), "key": str(key), "port": listener.getsockname()[1]}
    replies = [escaping(line.format(**values)) for line in ESCAPES.values()]
    fake = fake_openai(replies)
    configure(shop, fake.base_url, candidates=len(replies), rounds=1)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(user_config(shop)))
    try:
        with baselined(shop) as project:
            report = await project.run([BULK])
            fix = await fix_test(project, report.failed[0], {})
        assert not fix.verified, fix.evidence
        verdicts = [a.verdict for a in fix.outcome.attempts]
        assert len(verdicts) == len(ESCAPES) and "verified" not in verdicts, fix.outcome.attempts
        assert precious.read_text() == "the user's own file\n"
        assert not outside.exists()
        assert not Path(sys.prefix, "tracefix-escaped").exists()
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
        reasons = " ".join(a.reason for a in fix.outcome.attempts)
        assert "planted" not in reasons and "aws-secret" not in reasons
    finally:
        listener.close()
        Path(sys.prefix, "tracefix-escaped").unlink(missing_ok=True)


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
def test_without_bubblewrap_fixes_say_what_is_not_isolated_or_are_refused(shop, fake_openai, tmp_path):
    bare = tmp_path / "bin"  # a PATH without bwrap and unshare
    bare.mkdir()
    configure(shop, fake_openai([RIGHT] * 2).base_url, rounds=1)
    env = {"PATH": str(bare), "XDG_CONFIG_HOME": str(user_config(shop))}
    proc = tracefix("check", str(shop), "--all", "--fix", "--no-trace", env=env)
    assert "bubblewrap (bwrap) is not available here" in proc.stderr
    assert "can read your files (~/.ssh included) and write outside the copy and reach the network" in proc.stderr
    assert "Verified fix" in proc.stdout  # "auto": warned, not refused
    config = user_config(shop) / "tracefix" / "config.toml"
    config.write_text(config.read_text() + '\n[fix]\nsandbox = "require"\n')
    proc = tracefix("check", str(shop), "--all", "--fix", "--no-trace", env=env)
    assert 'tracefix.fix.sandbox is "require", and bubblewrap (bwrap) cannot make a sandbox here' in proc.stdout
    assert "Verified fix" not in proc.stdout


# --- 4. secrets


SECRETS = {
    "annotated assignment": ('db_password: str = "hunter2-Secret!"', "hunter2-Secret!"),
    "environment assignment": ('os.environ["DB_PASSWORD"] = "s3cr3t-pass"', "s3cr3t-pass"),
    "Bearer header": ('headers = {"Authorization": "Bearer abcDEF1234567890xyz"}', "abcDEF1234567890xyz"),
    "database URL": ('URL = "postgresql://admin:pa55word@db.example.com:5432/app"', "pa55word"),
    "JWT": (
        'session = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"',
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    "tuple": ('CREDENTIALS = ("admin", "Tr0ub4dor&3xyz")', "Tr0ub4dor&3xyz"),
    "private_key": ('private_key = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"', "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
    "a key only detect-secrets knows": (
        'STRIPE = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"',
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    ),
}


@pytest.mark.parametrize("code, secret", SECRETS.values(), ids=SECRETS.keys())
def test_each_kind_of_secret_is_redacted_and_restored(code, secret):
    redactor = Redactor()
    sent = redactor.redact(f"def connect():\n    {code}\n    return 1\n")
    assert secret not in sent and "REDACTED_" in sent
    assert "def connect():" in sent and "return 1" in sent  # the code around it stays
    assert redactor.restore(sent) == f"def connect():\n    {code}\n    return 1\n"


PASSWORD = "hunter2-Secret!"


async def test_secrets_never_reach_the_model_and_candidates_keep_them(shop, fake_openai, monkeypatch):
    pricing = shop / PRICING
    pricing.write_text(
        pricing.read_text().replace(
            '    """Percent off for buying many: 5 % from 10 items, 10 % from 50."""\n',
            '    """Percent off for buying many: 5 % from 10 items, 10 % from 50."""\n'
            f'    db_password: str = "{PASSWORD}"\n',
        )
    )

    def reply(body: dict) -> str:  # what a model sees, it writes back: the placeholder
        placeholder = next(w for w in json.dumps(body).split('\\"') if w.startswith("REDACTED_"))
        return RIGHT.replace(
            "    if quantity >= 50:", f'    db_password: str = "{placeholder}"\n    if quantity >= 50:'
        )

    fake = fake_openai([reply, '{"line": 11, "comment": "fine"}'])
    configure(shop, fake.base_url, rounds=1)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(user_config(shop)))
    with baselined(shop) as project:
        report = await project.run([BULK])
        fix = await fix_test(project, report.failed[0], {})
        symbol = project.index.symbol(PRICING, "bulk_discount")
        await critique(project, PRICING, symbol, pricing.read_text(), project.settings.llm)
    assert fix.verified, fix.evidence
    assert f'db_password: str = "{PASSWORD}"' in fix.files[0].after  # restored, so the fix does not break it
    assert len(fake.chat_requests) == 2  # the fix prompt and the critic's
    for request in fake.chat_requests:
        assert PASSWORD not in json.dumps(request.body)


# --- 5. control characters: every text printed or published is printable

EVIL = "\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]52;c;cHduZWQ=\x07\x9b31m\u202egnp.exe"
CONTROLS = ("\x1b", "\x07", "\x9b", "\u202e")
HOSTILE_TEST = f"""\
import os


def test_says_evil_things():
    print({EVIL!r})
    assert False, {EVIL!r}


def test_crashes_with_evil_output(capsys):
    with capsys.disabled():  # to the run's own output, which the server logs for a crashed run
        print({EVIL!r}, flush=True)
    os._exit(3)
"""


def clean(text: str) -> bool:
    return not any(c in text for c in CONTROLS)


@pytest.fixture
def evil(fixed_shop: Path) -> Path:
    (fixed_shop / "tests" / "test_evil.py").write_text(HOSTILE_TEST)
    return fixed_shop


def test_printable_escapes_controls_and_keeps_newlines_and_tabs():
    assert printable("a\tb\r\nc" + EVIL) == "a\tb\nc" + (
        "\\x1b[2J\\x1b[H\\x1b]0;pwned\\x07\\x1b]52;c;cHduZWQ=\\x07\\x9b31m\\u202egnp.exe"
    )


@pytest.mark.parametrize("output", ["text", "json"])
def test_check_prints_no_control_characters(evil, output):
    proc = tracefix("check", str(evil), "--all", "--format", output)
    assert proc.returncode == 3, proc.stderr  # a test ended the process: the rest did not run
    assert clean(proc.stdout) and clean(proc.stderr)
    shown = proc.stdout if output == "text" else json.dumps(json.loads(proc.stdout)["results"])
    assert "\\x1b[2J" in shown.replace("\\\\", "\\")  # shown, escaped: nothing is hidden from the reader


@dataclass
class Published:
    """What the server sent in one session on a workspace with a hostile test, by channel."""

    diagnostics: list[dict]
    hover: dict
    log_messages: list[str]
    everything: list[dict]  # every notification and response
    log_file: str


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Published:
    root = tmp_path_factory.mktemp("evil") / "shop"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".tracefix", "__pycache__"))
    test_file = root / "tests" / "test_evil.py"
    test_file.write_text(HOSTILE_TEST)
    log = root.parent / "server.log"
    server = RawServer(root, log_file=log)
    try:
        server.initialize()
        server.request("workspace/executeCommand", {"command": "tracefix.runAll"})
        server.wait(lambda: any(n["done"] for n in server.notes("tracefix/testResults")), 120, "no run")
        server.wait(lambda: server.diagnostics.get(test_file.as_uri()), 60, "no diagnostics")
        hover = server.hover(test_file, 5, 10)
        diagnostics = server.diagnostics[test_file.as_uri()]  # shutdown clears them
    finally:
        status = server.close()
    assert status == 0
    return Published(
        diagnostics,
        hover,
        [n["message"] for n in server.notes("window/logMessage")],
        [*server.notifications, *server.responses.values(), hover],
        log.read_text(),
    )


def test_diagnostics_carry_no_control_characters(published):
    assert any("\\x1b]52;c;" in d["message"] for d in published.diagnostics)  # shown, escaped
    assert all(clean(s) for s in strings(published.diagnostics))


def test_hover_carries_no_control_characters(published):
    assert "\\x1b[2J" in json.dumps(published.hover)
    assert all(clean(s) for s in strings(published.hover))


def test_log_messages_carry_no_control_characters(published):
    assert any("\\x1b[2J" in m for m in published.log_messages)  # the crashed run's output
    assert all(clean(m) for m in published.log_messages)


def test_no_message_of_the_server_carries_control_characters(published):
    for message in published.everything:
        assert all(clean(s) for s in strings(message)), message


def test_the_log_file_carries_no_control_characters(published):
    assert "\\x1b[2J" in published.log_file
    assert clean(published.log_file)


# --- 6. hostile files


def test_special_and_huge_files_never_hang_nor_exhaust_a_check(shop, tmp_path):
    git(shop, "init", "-q")
    (shop / "shop" / "gone.py").write_text("def gone():\n    return 1\n")
    git(shop, "add", ".")
    git(shop, "commit", "-qm", "x")
    (shop / "shop" / "gone.py").unlink()
    os.mkfifo(shop / "shop" / "gone.py")  # a tracked file, now a FIFO: git reports it changed
    os.mkfifo(shop / "shop" / "fifo.py")
    (shop / "shop" / "zero.py").symlink_to("/dev/zero")
    (shop / "shop" / "huge.py").write_text("x = 1\n" * 1_000_000)
    for args in (["--no-run"], ["--all", "--no-trace"], ["--no-run"]):  # since HEAD, all, since the last run
        proc = tracefix("check", str(shop), *args, timeout=120)
        assert proc.returncode in (0, 1), proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("kind", ["a file", "a dangling symlink", "a symlink outside the workspace"])
def test_a_tracefix_that_is_not_a_folder_of_the_workspace_is_refused(shop, tmp_path, kind):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state = shop / ".tracefix"
    if kind == "a file":
        state.write_text("not a folder")
    elif kind == "a dangling symlink":
        state.symlink_to(tmp_path / "nowhere")
    else:
        state.symlink_to(elsewhere)
    proc = tracefix("check", str(shop), "--no-run")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"tracefix: {state} is " in proc.stderr and "move it away" in proc.stderr
    assert list(elsewhere.iterdir()) == []  # nothing written where the link points


def test_a_store_file_that_is_a_link_is_not_followed(shop, tmp_path):
    (shop / ".tracefix").mkdir()
    target = tmp_path / "their.sqlite"
    (shop / ".tracefix" / "index.sqlite").symlink_to(target)
    proc = tracefix("check", str(shop), "--no-run")
    assert proc.returncode == 2 and "is a symlink: not followed" in proc.stderr
    assert not target.exists()


def test_an_added_workspace_folder_that_does_not_exist_is_not_created(fixed_shop, tmp_path):
    missing = tmp_path / "not" / "there"
    server = RawServer(fixed_shop)
    try:
        server.initialize()
        server.notify(
            "workspace/didChangeWorkspaceFolders",
            {"event": {"added": [{"uri": missing.as_uri(), "name": "there"}], "removed": []}},
        )
        server.wait(
            lambda: any(str(missing) in n["message"] for n in server.notes("window/logMessage")), 30, "no warning"
        )
        assert server.alive()
    finally:
        assert server.close() == 0
    assert not (tmp_path / "not").exists()


# --- 7. a hostile model endpoint


async def test_an_endless_or_trickling_reply_is_cut_off(fake_openai):
    fake = fake_openai([{"endless": True}, {"trickle": 1.0, "reply": "x" * 200}])
    client = ModelClient(LLMSettings(model="m", base_url=fake.base_url, timeout=3), env={}, retries=0)
    ask = [{"role": "user", "content": "hi"}]
    try:
        with pytest.raises(ModelError, match=f"more than {MAX_REPLY_BYTES >> 20} MB"):
            await client.complete(ask, n=1, temperature=0)
        started = time.monotonic()
        with pytest.raises(ModelError, match="did not answer within 3 s"):
            await client.complete(ask, n=1, temperature=0)
        assert time.monotonic() - started < 60  # the reply alone would take minutes: a byte a second
    finally:
        await client.close()


def start_fix(server: RawServer) -> int:
    """Send tracefix.fixTest for BULK without waiting; the request's id."""
    request_id = 9000 + len(server.notifications)
    server.send(
        {
            "id": request_id,
            "method": "workspace/executeCommand",
            "params": {"command": "tracefix.fixTest", "arguments": [BULK]},
        }
    )
    return request_id


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
@pytest.mark.parametrize("how", ["$/cancelRequest", "window/workDoneProgress/cancel"])
def test_a_cancelled_fix_stops_and_a_new_one_can_start(shop, fake_openai, how):
    fake = fake_openai([{"delay": 600, "reply": RIGHT}, RIGHT])
    settings = {"llm": {"model": "fake-model", "baseUrl": fake.base_url, "candidates": 1, "rounds": 1}}
    server = RawServer(shop, settings=settings)
    try:
        server.initialize(capabilities={"window": {"workDoneProgress": True}})
        server.request("workspace/executeCommand", {"command": "tracefix.runAll"})
        server.wait(lambda: any(n["done"] for n in server.notes("tracefix/testResults")), 120, "no run")
        first = start_fix(server)
        server.wait(lambda: fake.chat_requests, 120, "the fix never asked the model")
        if how == "$/cancelRequest":
            server.notify("$/cancelRequest", {"id": first})
        else:
            [token] = [p["token"] for p in server.notes("$/progress") if p["value"]["kind"] == "begin"][-1:]
            server.notify("window/workDoneProgress/cancel", {"token": token})
        server.wait(lambda: first in server.responses, 30, "the cancelled request was never answered")
        assert server.responses.pop(first)["error"]["code"] == -32800  # RequestCancelled
        second = server.request(
            "workspace/executeCommand", {"command": "tracefix.fixTest", "arguments": [BULK]}, timeout=240
        )
        assert second["result"]["status"] == "verified", second
    finally:
        assert server.close() == 0


# --- 8. process hygiene: a stopped tracefix leaves no test process and no temporary file

HANG = (
    "import time\nfrom pathlib import Path\n\n\n"
    "def test_hangs_for_hygiene():\n    Path(__file__).with_name('hanging').touch()\n    time.sleep(3600)\n"
)
HUNG = "test_hangs_for_hygiene"


@pytest.fixture
def hanging(fixed_shop: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    (fixed_shop / "tests" / "test_hang.py").write_text(HANG)
    tmp = tmp_path / "tmp"  # where the run's records file goes
    tmp.mkdir()
    return fixed_shop, {**os.environ, "TMPDIR": str(tmp)}


def gone(marker: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while live_commands(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def deps_files(env: dict[str, str]) -> list[Path]:
    return list(Path(env["TMPDIR"]).glob("tracefix-deps-*"))


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stopped_check_leaves_no_test_process(hanging, signum):
    root, env = hanging
    cli = subprocess.Popen(
        [sys.executable, "-m", "tracefix", "check", str(root), "--all", "--no-trace"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not (root / "tests" / "hanging").exists():  # in the test: pytest has nothing more to print
            assert time.monotonic() < deadline and cli.poll() is None, "the run never started"
            time.sleep(0.2)
        cli.send_signal(signum)
        status = cli.wait(30)
    finally:
        cli.kill()
    assert gone(HUNG), "the test process outlived tracefix check"
    if signum == signal.SIGKILL:
        assert status == -signal.SIGKILL
        assert tracefix("check", str(root), "--no-run", env=env).returncode == 0  # the next start cleans up
    else:
        assert status == 128 + signum
        assert f"stopped by {signum.name}" in cli.stderr.read().decode()
    assert deps_files(env) == []


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_stopped_server_leaves_no_test_process(hanging, signum):
    root, env = hanging
    server = RawServer(root, settings={"warmRunner": False}, env=env)  # a cold run: a child of the server
    try:
        server.initialize()
        server.request(
            "workspace/executeCommand", {"command": "tracefix.rerunTest", "arguments": [f"tests/test_hang.py::{HUNG}"]}
        )
        server.wait((root / "tests" / "hanging").exists, 120, "the run never started")
        server.proc.send_signal(signum)
        status = server.proc.wait(30)
    finally:
        server.proc.kill()
    assert gone(HUNG), "the test process outlived the server"
    assert status == (-signal.SIGKILL if signum == signal.SIGKILL else 128 + signum)
    if signum != signal.SIGKILL:
        assert deps_files(env) == []


# --- 9. forged records

FORGER = """\
import json
import os

ME = "tests/test_forged.py::test_forger"


def forge(record):
    os.write(int(os.environ["TRACEFIX_REPORT_FD"]), (json.dumps(record) + "\\n").encode())


def test_forger():
    forge({"kind": "result", "nodeid": ME, "outcome": "failed", "line": "abc"})
    forge({"kind": "result", "nodeid": ME, "outcome": "failed", "path": "/etc/shadow",
           "location": {"path": "/etc/shadow", "line": 1}})
    forge({"kind": "result", "nodeid": ME, "outcome": "failed", "frame": {"path": "../../etc/passwd", "line": 1}})
    forge({"kind": "result", "nodeid": "tests/test_forged.py::test_victim", "outcome": "failed", "message": "forged"})
    forge({"kind": "start", "nodeid": "tests/test_other.py::test_never_asked"})
    forge({"kind": "result", "nodeid": "tests/test_other.py::test_never_asked", "outcome": "failed",
           "message": "forged"})
    forge([1, 2, 3])
    forge({"kind": "exotic"})
    with open(os.environ["TRACEFIX_DEPS"], "a") as deps:
        deps.write(json.dumps({"kind": "deps", "nodeid": "tests/test_other.py::test_never_asked",
                               "complete": True, "code": [["/etc/shadow", 1]], "fixtures": [], "files": [],
                               "dirs": [], "dists": {}}) + "\\n")
        deps.write(json.dumps({"kind": "deps", "nodeid": ME, "complete": True, "code": "abc"}) + "\\n")


def test_victim():
    pass
"""


@pytest.fixture
def forged(fixed_shop: Path) -> Path:
    (fixed_shop / "tests" / "test_forged.py").write_text(FORGER)
    return fixed_shop


def test_forged_records_are_refused_by_the_cli(forged):
    proc = tracefix("check", str(forged), "--all", "--no-trace", "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr  # every test passed; no forged failure shows
    results = {r["nodeid"]: r for r in json.loads(proc.stdout)["results"]}
    assert results["tests/test_forged.py::test_forger"]["outcome"] == "passed"
    assert results["tests/test_forged.py::test_victim"]["outcome"] == "passed"
    assert not [n for n in results if "never_asked" in n]
    assert all(r["message"] != "forged" for r in results.values()) and "/etc/shadow" not in proc.stdout
    assert "refused a record" in proc.stderr
    assert tracefix("check", str(forged), "--no-run").returncode == 0  # the store took no forged deps


async def test_forged_records_are_refused_by_the_server(forged):
    async with session(forged) as client:
        await client.workspace_execute_command_async(types.ExecuteCommandParams(command="tracefix.runAll"))
        await wait_until(lambda: any(n["done"] for n in client.tracefix_results), 120)
        results = {r["nodeid"]: r for n in client.tracefix_results for r in n["results"]}
        assert {results[f"tests/test_forged.py::{t}"]["outcome"] for t in ("test_forger", "test_victim")} == {"passed"}
        assert not [n for n in results if "never_asked" in n]
        assert not [d for d in client.diagnostics.values() if d]  # nothing forged shows


async def test_a_second_result_for_a_test_marks_it_forged(tmp_path):
    (tmp_path / "test_twice.py").write_text(
        FORGER.split("def test_forger")[0].replace("tests/test_forged.py", "test_twice.py") + "def test_forger():\n"
        '    forge({"kind": "start", "nodeid": "test_twice.py::test_victim"})\n'
        '    forge({"kind": "result", "nodeid": "test_twice.py::test_victim", "outcome": "failed", '
        '"message": "forged"})\n\n\n'
        "def test_victim():\n    pass\n"
    )
    report = await run_tests(tmp_path, sys.executable, ["test_twice.py"], limits=Limits(timeout=60))
    victim = [r for r in report.results if r.nodeid == "test_twice.py::test_victim"]
    assert len(victim) == 1 and victim[0].outcome == Outcome.ERROR
    assert "two results arrived for this test" in victim[0].message


# --- 10. the protocol's end


def test_requests_after_shutdown_are_refused_and_exit_says_whether_it_was_clean(fixed_shop):
    server = RawServer(fixed_shop)
    server.initialize()
    assert "result" in server.request("shutdown")
    refused = server.hover(fixed_shop / PRICING)
    assert refused["error"]["code"] == -32600  # InvalidRequest
    server.notify("exit")
    assert server.proc.wait(30) == 0

    abrupt = RawServer(fixed_shop)
    abrupt.initialize()
    abrupt.notify("exit")
    assert abrupt.proc.wait(30) == 1
