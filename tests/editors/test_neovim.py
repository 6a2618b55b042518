"""Neovim as a tracefix client: the configurations in docs/neovim.md, run as written in a real
headless Neovim (0.7+) against `tracefix serve`, driven by the Lua scenarios in nvim/."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).parent / "nvim"
NVIM = shutil.which("nvim")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def doc_snippets() -> dict[str, str]:
    """The Lua blocks of docs/neovim.md marked `<!-- tested: NAME -->`, by name."""
    text = (REPO / "docs" / "neovim.md").read_text()
    return dict(re.findall(r"<!-- tested: (\w+) -->\n```lua\n(.*?)```", text, re.S))


def nvim_version() -> tuple[int, ...]:
    first = subprocess.run([NVIM, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return tuple(int(n) for n in re.search(r"v(\d+)\.(\d+)", first).groups())


def run_nvim(tmp_path: Path, shop: Path, snippets: list[str], scenario: str) -> dict:
    """Runs the named doc snippets, then the scenario; returns the outcome it wrote."""
    if NVIM is None:
        pytest.skip("nvim is not installed (apt-get install neovim)")
    if nvim_version() < (0, 7):
        pytest.skip(f"Neovim 0.7+ is needed; {NVIM} is {nvim_version()}")
    # The docs start `tracefix serve` from PATH; make that this interpreter's tracefix.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tracefix").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m tracefix \"$@\"\n")
    (bin_dir / "tracefix").chmod(0o755)
    docs = doc_snippets()
    setup = []
    for name in snippets:
        (tmp_path / f"{name}.lua").write_text(docs[name])
        setup += ["-c", f"luafile {tmp_path / f'{name}.lua'}"]
    outcome_file = tmp_path / "outcome.json"
    env = {
        **os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TRACEFIX_SHOP": str(shop.resolve()), "TRACEFIX_OUTCOME": str(outcome_file),
    }
    command = [NVIM, "--headless", "-u", "NONE", "-i", "NONE",
               "--cmd", f"set runtimepath+={REPO / 'editors' / 'nvim'}",
               *setup, "-c", f"luafile {SCENARIOS / scenario}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=100)
    lsp_log = tmp_path / "cache" / "nvim" / "lsp.log"
    report = (f"nvim exited {done.returncode}\n{done.stdout}{done.stderr}"
              + (f"\nlsp.log:\n{lsp_log.read_text()[-4000:]}" if lsp_log.exists() else ""))
    assert outcome_file.exists(), report
    outcome = json.loads(outcome_file.read_text())
    assert outcome.get("error") is None, f"{outcome['error']}\nmessages:\n{outcome['messages']}\n{report}"
    return outcome


def test_break_save_rerun_fix(tmp_path, fixed_shop):
    outcome = run_nvim(tmp_path, fixed_shop, ["start_client", "status"], "edit_cycle.lua")

    on_test = outcome["failing"]["tests"]
    assert on_test[0]["line"] == 4  # `assert apply_discount(200, 25) == 150`
    assert "test_apply_discount failed" in on_test[0]["message"]
    assert outcome["failing"]["code"][0]["line"] == 5  # def apply_discount
    assert "failed" in outcome["statusline"]
    assert "tests/test_pricing.py::test_apply_discount" in outcome["hover"]
    assert "last run: failed" in outcome["hover"]

    assert "Rerun test_apply_discount" in outcome["actions"]
    assert outcome["chosen"] == "Rerun test_apply_discount"
    rerun = [(r["nodeid"], r["outcome"]) for r in outcome["rerun"]]
    assert rerun == [("tests/test_pricing.py::test_apply_discount", "failed")]

    assert "idle" in outcome["cleared_statusline"]


def test_helper_module_runs_all_and_shows_status(tmp_path, shop):
    outcome = run_nvim(tmp_path, shop, ["plugin"], "plugin.lua")

    assert outcome["ready"] == "tracefix: ok"
    ran = {r["nodeid"]: r["outcome"] for r in outcome["ran"]}
    assert ran["tests/test_pricing.py::test_bulk_discount_tiers"] == "failed"
    assert ran["tests/test_text.py::test_money"] == "passed"  # all tests, not only affected ones
    assert any("test_bulk_discount_tiers failed" in e["message"] for e in outcome["failing"])
    assert "tracefix: 1 failed" in outcome["statusline"]
    assert outcome["trace_name"] == "tracefix://trace/tests/test_pricing.py::test_bulk_discount_tiers"
    assert outcome["trace"][0].startswith("Trace of tests/test_pricing.py::test_bulk_discount_tiers")
