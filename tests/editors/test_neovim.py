"""Neovim as a tracefix client: the configurations in docs/neovim.md, run as written in a real
headless Neovim against `tracefix serve`, driven by the Lua scenarios in nvim/.

The Neovim is $TRACEFIX_NVIM, else `nvim` on PATH; each configuration runs on the versions it
is written for and skips on the others."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_fixing import RIGHT, configure

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "neovim.md"
SCENARIOS = Path(__file__).parent / "nvim"
NVIM = os.environ.get("TRACEFIX_NVIM") or shutil.which("nvim")
VERSIONS = {  # doc snippet → the Neovim versions it is written for, [from, to)
    "start_client": ((0, 7), (0, 11)),
    "start": ((0, 8), None),
    "enable": ((0, 11), None),
    "shipped": ((0, 11), None),
    "plugin": ((0, 7), None),
    "status": ((0, 7), None),
}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def doc_snippets() -> dict[str, str]:
    """The Lua blocks of docs/neovim.md marked `<!-- tested: NAME -->`, by name."""
    return dict(re.findall(r"<!-- tested: (\w+) -->\n```lua\n(.*?)```", DOCS.read_text(), re.DOTALL))


def need_nvim() -> tuple[int, int]:
    """Neovim's (major, minor); skips the test when there is none."""
    if NVIM is None:
        pytest.skip("no nvim on PATH (apt-get install neovim) and TRACEFIX_NVIM is not set")
    first = subprocess.run([NVIM, "--version"], check=True, capture_output=True, text=True).stdout.split("\n")[0]
    major, minor = re.search(r"v(\d+)\.(\d+)", first).groups()
    return int(major), int(minor)


def run_nvim(tmp_path: Path, shop: Path, snippets: list[str], scenario: str) -> dict:
    """Runs the named doc snippets, then the scenario; returns the outcome it wrote."""
    version = need_nvim()
    for name in snippets:
        low, high = VERSIONS[name]
        if version < low or (high and version >= high):
            pytest.skip(f"the {name!r} snippet is not for Neovim {version[0]}.{version[1]}")
    # The docs start `tracefix serve` from PATH: make that this interpreter's tracefix.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tracefix").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m tracefix "$@"\n')
    (bin_dir / "tracefix").chmod(0o755)
    runtimepath = [REPO / "editors" / "nvim"] + ([REPO] if "shipped" in snippets else [])  # REPO: lsp/
    command = [
        NVIM,
        "--headless",
        "-u",
        "NONE",
        "-i",
        "NONE",
        "--cmd",
        "set runtimepath+=" + ",".join(map(str, runtimepath)),
    ]
    docs = doc_snippets()
    for name in snippets:
        (tmp_path / f"{name}.lua").write_text(docs[name])
        command += ["-c", f"luafile {tmp_path / f'{name}.lua'}"]
    command += ["-c", f"luafile {SCENARIOS / scenario}"]
    outcome_file = tmp_path / "outcome.json"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TRACEFIX_SHOP": str(shop.resolve()),
        "TRACEFIX_OUTCOME": str(outcome_file),
    }
    done = subprocess.run(command, env=env, check=False, capture_output=True, text=True, timeout=100)
    logs = "".join(f"\n{log.name}:\n{log.read_text()[-4000:]}" for log in tmp_path.glob("*/nvim/lsp.log"))
    report = f"nvim exited {done.returncode}\n{done.stdout}{done.stderr}{logs}"
    assert outcome_file.exists(), report
    outcome = json.loads(outcome_file.read_text())
    assert outcome.get("error") is None, f"{outcome['error']}\nmessages:\n{outcome['messages']}\n{report}"
    return outcome


@pytest.mark.parametrize("configuration", ["start_client", "start", "enable", "shipped"])
def test_break_save_rerun_fix(tmp_path, fixed_shop, configuration):
    outcome = run_nvim(tmp_path, fixed_shop, [configuration, "status"], "edit_cycle.lua")

    on_test = outcome["failing"]["tests"]
    assert on_test[0]["line"] == 4  # `assert apply_discount(200, 25) == 150`
    assert on_test[0]["severity"] == 1  # vim.diagnostic.severity.ERROR
    assert "test_apply_discount failed" in on_test[0]["message"]
    assert {d["line"] for d in outcome["failing"]["code"]} == {7}  # the changed line, that made the wrong value
    assert "failed" in outcome["statusline"]
    assert "tests/test_pricing.py::test_apply_discount" in outcome["hover"]
    assert "last run: failed" in outcome["hover"]

    assert "Rerun test_apply_discount" in outcome["actions"]
    assert "Show failing trace of test_apply_discount" in outcome["actions"]
    rerun = [(r["nodeid"], r["outcome"]) for r in outcome["rerun"]]
    assert rerun == [("tests/test_pricing.py::test_apply_discount", "failed")]

    assert "idle" in outcome["cleared_statusline"]
    if configuration in ("enable", "shipped"):  # 0.11 shows only signs unless told otherwise
        assert outcome["virtual_text"] is True


def test_helper_module(tmp_path, shop):
    outcome = run_nvim(tmp_path, shop, ["plugin"], "plugin.lua")

    assert outcome["ready"] == "tracefix: ok"
    ran = {r["nodeid"]: r["outcome"] for r in outcome["ran"]}
    assert ran["tests/test_pricing.py::test_bulk_discount_tiers"] == "failed"
    assert ran["tests/test_text.py::test_money"] == "passed"  # all tests, not only affected ones
    assert any("test_bulk_discount_tiers failed" in e["message"] for e in outcome["failing"])
    assert "tracefix: 1 failed" in outcome["statusline"]
    assert outcome["virtual_text"] is True
    assert outcome["trace_name"] == "tracefix://trace/tests/test_pricing.py::test_bulk_discount_tiers"
    assert outcome["trace"][0].startswith("Trace of tests/test_pricing.py::test_bulk_discount_tiers")

    [review] = outcome["review"]
    assert review["line"] == 12  # if quantity > 50:
    assert review["message"] == "review: from 50, as the docstring says"
    assert review["severity"] == 3  # vim.diagnostic.severity.INFO
    assert "Resolve this review comment" in outcome["review_actions"]


def test_fix_applied_through_the_client(tmp_path, shop, fake_openai):
    configure(shop, fake_openai([RIGHT]).base_url, rounds=1)
    outcome = run_nvim(tmp_path, shop, ["plugin"], "fix.lua")

    assert outcome["failing"][0]["line"] == 15  # `return 5`, the value the failing assert got
    assert "Fix test_bulk_discount_tiers with tracefix" in outcome["actions"]
    assert "verified fix for tests/test_pricing.py::test_bulk_discount_tiers" in outcome["shown"][0]["message"]
    assert any(title.startswith("Apply verified fix: ") for title in outcome["apply_actions"])
    assert "    if quantity >= 50:" in outcome["fixed"]
    assert "    if quantity > 50:" not in outcome["fixed"]


def test_every_lua_block_in_the_docs_compiles(tmp_path):
    """Also the blocks no scenario runs (nvim-lspconfig, the review request)."""
    need_nvim()
    blocks = re.findall(r"```lua\n(.*?)```", DOCS.read_text(), re.DOTALL)
    for number, block in enumerate(blocks):
        (tmp_path / f"{number}.lua").write_text(block)
    compile_all = (
        f"lua for _, f in ipairs(vim.fn.glob('{tmp_path}/*.lua', 0, 1)) do "
        "local ok, err = loadfile(f) if not ok then io.stderr:write(err, '\\n') end end"
    )
    done = subprocess.run(
        [NVIM, "--headless", "-u", "NONE", "-i", "NONE", "-c", compile_all, "-c", "qall!"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert blocks
    assert done.stderr == ""
