"""`tracefix check --daemon`: the same check, served by a resident process per workspace."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from tests.support.projects import write

import tracefix


@pytest.fixture
def env(tmp_path):
    """Environment with a private runtime folder (short: a socket's path has at most 107 bytes) and
    bytecode cache; every daemon started in it is stopped at the end."""
    run = Path(tempfile.mkdtemp(prefix="tfd-", dir="/tmp"))
    env = dict(os.environ, XDG_RUNTIME_DIR=str(run), XDG_CACHE_HOME=str(tmp_path / "cache"))
    yield env
    for pid in daemons():
        if Path(f"/proc/{pid}/environ").read_bytes().find(f"XDG_RUNTIME_DIR={run}".encode()) >= 0:
            os.kill(pid, signal.SIGTERM)
    shutil.rmtree(run, ignore_errors=True)


def daemons(root: Path | None = None) -> list[int]:
    """pids of running daemons (of root's)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"tracefix.daemon" in argv and (root is None or str(root).encode() in argv):
            found.append(int(proc.name))
    return found


def alive(pid: int) -> bool:
    """Running: not gone, nor a zombie nobody reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def tracefix_cli(env, *args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "tracefix", *args], capture_output=True, text=True, env=env, timeout=300, **kwargs
    )


def check(env, root: Path, *extra: str) -> tuple[int, dict]:
    proc = tracefix_cli(env, "check", str(root), "--format", "json", "--no-trace", *extra)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def outcome(returncode: int, data: dict) -> tuple:
    """What a check found, without timings."""
    return (
        returncode,
        sorted(data["selected"]),
        sorted((r["nodeid"], r["outcome"]) for r in data["results"]),
        sorted((d["path"], d["line"], d["kind"]) for d in data["diagnostics"]),
    )


EDITS = [
    ("shop/pricing.py", "if quantity >= 50:", "if quantity > 50:"),  # breaks test_bulk_discount_tiers
    ("shop/pricing.py", "if quantity > 50:", "if quantity >= 50:"),  # fixed again
    ("tests/test_text.py", "def test_", "def test_renamed_"),  # a test file
    None,  # nothing changed
]


def test_a_check_through_the_daemon_is_the_check_without_it(fixed_shop, tmp_path, env):
    cold = tmp_path / "cold"
    shutil.copytree(fixed_shop, cold)
    served = fixed_shop
    assert outcome(*check(env, cold)) == outcome(*check(env, served, "--daemon"))
    [pid] = daemons(served)
    for edit in EDITS:
        if edit is not None:
            rel, old, new = edit
            for root in (cold, served):
                path = root / rel
                path.write_text(path.read_text().replace(old, new, 1))
        assert outcome(*check(env, cold)) == outcome(*check(env, served, "--daemon")), edit
    assert daemons(served) == [pid]  # one daemon served them all
    stopped = tracefix_cli(env, "stop", str(served))
    assert "stopped the daemon" in stopped.stdout
    assert until(lambda: not daemons(served))


def test_ctrl_c_stops_the_daemons_run_and_its_tests(tmp_path, env):
    started = tmp_path / "started"
    root = write(
        tmp_path / "ws",
        {
            "tests/test_slow.py": (
                "import os, time\n\n\ndef test_slow():\n"
                f"    open({str(started)!r}, 'w').write(str(os.getpid()))\n    time.sleep(120)\n"
            ),
            "tests/test_quick.py": "def test_quick():\n    assert True\n",
        },
    )
    # started as a shell's background job is (`tracefix check --daemon &`): with SIGINT ignored
    ignoring_sigint = ["sh", "-c", 'trap "" INT; exec "$0" "$@"']
    client = subprocess.Popen(
        [*ignoring_sigint, sys.executable, "-m", "tracefix", "check", str(root), "--daemon", "--no-trace"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert until(lambda: started.exists() and started.read_text(), timeout=120)
    test_pid = int(started.read_text())
    client.send_signal(signal.SIGINT)
    _, err = client.communicate(timeout=60)
    assert client.returncode == 130 and "stopped by SIGINT" in err
    assert until(lambda: not alive(test_pid)), "the test process outlived the cancelled check"
    assert len(daemons(root)) == 1  # and the daemon serves the next check
    (root / "tests" / "test_slow.py").write_text("def test_slow():\n    assert False\n")
    code, data = check(env, root, "--daemon")
    assert code == 1 and ("tests/test_slow.py::test_slow", "failed") in {
        (r["nodeid"], r["outcome"]) for r in data["results"]
    }


def test_a_daemon_that_dies_during_the_check_is_a_run_that_did_not_complete(tmp_path, env):
    started = tmp_path / "started"
    root = write(
        tmp_path / "ws",
        {
            "tests/test_slow.py": f"import time\n\n\ndef test_slow():\n    open({str(started)!r}, 'w').close()\n    time.sleep(120)\n"
        },
    )
    client = subprocess.Popen(
        [sys.executable, "-m", "tracefix", "check", str(root), "--daemon", "--no-trace"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert until(started.exists, timeout=120)
    [pid] = daemons(root)
    os.kill(pid, signal.SIGKILL)
    _, err = client.communicate(timeout=60)
    assert client.returncode == 3 and "the daemon ended during the check; the run did not complete" in err


def test_a_socket_folder_others_can_enter_is_refused_and_the_check_runs_anyway(shop, env):
    folder = Path(env["XDG_RUNTIME_DIR"]) / "tracefix"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    proc = tracefix_cli(env, "check", str(shop), "--daemon", "--no-trace", "--format", "json")
    assert proc.returncode == 1
    assert "is not a folder of this user's alone" in proc.stderr and "checking without the daemon" in proc.stderr
    assert ("tests/test_pricing.py::test_bulk_discount_tiers", "failed") in {
        (r["nodeid"], r["outcome"]) for r in json.loads(proc.stdout)["results"]
    }
    assert not daemons(shop) and not list(folder.iterdir())


def test_a_daemon_whose_code_changed_on_disk_gives_way_to_a_new_one(fixed_shop, tmp_path, env):
    # a copy of tracefix to upgrade: other tests' daemons run the real one
    copy = tmp_path / "installed"
    shutil.copytree(Path(tracefix.__file__).parent, copy / "tracefix", ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(env, PYTHONPATH=str(copy))
    assert check(env, fixed_shop, "--daemon")[0] == 0
    [old] = daemons(fixed_shop)
    source = copy / "tracefix" / "daemon.py"
    source.write_text(source.read_text() + "\n# upgraded\n")
    assert check(env, fixed_shop, "--daemon")[0] == 0
    [new] = daemons(fixed_shop)
    assert new != old and until(lambda: not alive(old))
