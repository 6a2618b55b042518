"""Save → first failing diagnostic, through a real LSP session (`tracefix serve` over stdio).

With the warm runner (each run forked from a started pytest worker) unless --cold.
On a copy of examples/shop (bug fixed), or with --project on a real project from PyPI (a checkout
as bench/common.py makes them, primed by `tracefix check --all`), tests run by a plain project venv
(pytest only: the bench venv; --python picks another, e.g. one with many auto-loaded pytest
plugins), saves alternate: break one function (BREAKS: the example's bulk_discount `>= 50` →
`> 50`; in each project one line that a few tests fail on), then fix it again. Per break save:
the time from sending the save to the first `tracefix/testResults` notification with a failing
test and to the first publishDiagnostics about a failed test (what the editor draws), the tests'
own time (their reported durations up to that result) and what is left: tracefix's overhead,
split at the `tracefix/status` "running" notification the server sends just before it starts
pytest:
  before run  save → "running": the 50 ms save coalescing, parse, select, messages
  start       "running" → first failure, minus the tests' own time: pytest start and collection
and, timed in-process with the calls the server makes on a save:
  parse       Project.changes_in + index update of the saved file (re-parse, outline, diff)
  select      Project.select on those changes

    python bench/latency.py --saves 40 [--project tomlkit] [--python PATH] [--cold] [--profile FILE]

--profile FILE: py-spy (on PATH) samples the server and the processes it starts (warm worker, test
runs) during the measured saves, and writes their stacks collapsed into FILE (flamegraph.pl's input).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PROJECTS, REPO, checkout, ensure_venv, machine, summary_ms, write_results
from mutation import tracefix_check

sys.path[:0] = [str(REPO / "tests"), str(REPO)]  # the e2e tests import tests.support
from conftest import start_client, wait_until
from test_lsp_e2e import edit_and_save, open_file
from tracefix.project import Project
from tracefix.running.results import FAILING

ANSWER_TIMEOUT = 60.0  # seconds: a run of a few tests that has not finished by then never will


@dataclass(frozen=True)
class Break:
    """One line that breaks a function a few tests cover, and fails them fast."""

    path: str
    fixed: str
    broken: str


EXAMPLE = "shop"
BREAKS = {
    EXAMPLE: Break("shop/pricing.py", "if quantity >= 50:", "if quantity > 50:"),  # 1 of 3 tests fails
    # tomlkit 0.15.2: 3 of 1,203 items fail (test_create_string's \x0b and \x7f cases, test_write_escape_char_as_unicode_escape)
    "tomlkit": Break("tomlkit/_utils.py", 'f"\\\\u{ord(c):04x}"', 'f"\\\\u{ord(c):04X}"'),
    # toolz 1.2.0: 2 of 193 items fail (test_frequencies, test_countby)
    "toolz": Break("toolz/itertoolz.py", "        d[item] += 1", "        d[item] += 2"),
}


class Stamped(list):
    """A list that notes when each item arrived (start_client appends every notification to one)."""

    def append(self, item) -> None:
        super().append((time.perf_counter(), item))


class Published(dict):
    """pytest-lsp's client.diagnostics (uri → diagnostics) that also notes when each
    publishDiagnostics arrived, with the tests its diagnostics are about (their code: the nodeid)."""

    def __init__(self) -> None:
        super().__init__()
        self.stamps: list[tuple[float, set[str]]] = []

    def __setitem__(self, uri: str, diagnostics) -> None:
        super().__setitem__(uri, diagnostics)
        self.stamps.append((time.perf_counter(), {str(d.code) for d in diagnostics}))


def shop_copy(base: Path) -> Path:
    root = base / "shop"
    shutil.copytree(REPO / "examples" / "shop", root, ignore=shutil.ignore_patterns(".tracefix", "__pycache__"))
    pricing = root / BREAKS[EXAMPLE].path
    pricing.write_text(pricing.read_text().replace(BREAKS[EXAMPLE].broken, BREAKS[EXAMPLE].fixed))
    return root


def project_checkout(name: str) -> tuple[Path, dict[str, str], dict]:
    """(root, environment for the server, how priming went) of a fresh checkout whose store holds
    a full run: what an editor finds in a project tracefix has run in before."""
    project = PROJECTS[name]
    root = checkout(project, "latency")
    env = project.env(root)
    text = (root / BREAKS[name].path).read_text()
    if text.count(BREAKS[name].fixed) != 1:
        raise SystemExit(f"{name}: {BREAKS[name].path} does not hold {BREAKS[name].fixed!r} once")
    wall, _, report = tracefix_check(project, root, "--all")
    priming = {"s": round(wall, 2), "status": report["status"], "summary": report["summary"]}
    return root, env, priming


def server_pid() -> int:
    """The `tracefix serve` this process started (start_client runs one server at a time)."""
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or gone meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and argv[1:4] == [b"-m", b"tracefix", b"serve"]:
            return int(entry.name)
    raise RuntimeError("no `tracefix serve` child found to profile")


@contextlib.contextmanager
def profiled(out: Path | None):
    if out is None:
        yield
        return
    argv = ["py-spy", "record", "--pid", str(server_pid()), "--subprocesses", "--threads", "--rate", "250"]
    spy = subprocess.Popen([*argv, "--format", "raw", "--output", str(out)], stdout=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # it writes its output on SIGINT
        spy.wait(timeout=60)


async def lsp_saves(
    root: Path, target: Break, saves: int, python: str, warm: bool, env: dict[str, str] | None, profile: Path | None
) -> list[dict]:
    client = await start_client(root, {"python": python, "warmRunner": warm}, env=env)
    try:
        edited = root / target.path
        await open_file(client, edited)
        client.tracefix_results = notes = Stamped()
        client.tracefix_status = statuses = Stamped()
        client.diagnostics = published = Published()
        rows: list[dict] = []
        with contextlib.ExitStack() as spy:
            for i in range(saves + 2):  # the first break/fix pair warms up the server and the OS caches
                if i == 2:
                    spy.enter_context(profiled(profile))
                breaking = i % 2 == 0
                notes.clear()
                statuses.clear()
                published.stamps.clear()
                sent = time.perf_counter()
                change = (target.fixed, target.broken) if breaking else (target.broken, target.fixed)
                await edit_and_save(client, edited, *change, version=i + 2)
                try:
                    await wait_until(lambda: any(n["done"] for _, n in notes), timeout=ANSWER_TIMEOUT, step=0.005)
                except AssertionError:  # counted, not fatal: a save the server never answers is a finding
                    rows.append({"breaking": breaking, "unanswered": True})
                    continue
                if i >= 2:
                    rows.append(_save_row(sent, notes, statuses, published.stamps, breaking))
        return rows
    finally:
        await client.shutdown_session()
        await client.stop()


def _save_row(sent: float, notes: list, statuses: list, stamps: list[tuple[float, set[str]]], breaking: bool) -> dict:
    results = [(at, r) for at, n in notes for r in n["results"]]
    failed = {r["nodeid"] for _, r in results if r["outcome"] in FAILING}
    done_at = next(at for at, n in notes if n["done"])
    running_at = next(at for at, s in statuses if s["state"] == "running")
    row = {"breaking": breaking, "tests": len(results), "done_s": done_at - sent, "before_run_s": running_at - sent}
    first = next((k for k, (_, r) in enumerate(results) if r["outcome"] in FAILING), None)
    if first is not None:
        row["first_failing_s"] = results[first][0] - sent
        row["tests_s"] = sum(r["duration"] for _, r in results[: first + 1])
        row["start_s"] = results[first][0] - running_at - row["tests_s"]
        # the editor shows a failure once a publishDiagnostics about a failed test arrives
        row["first_diagnostic_s"] = next(at for at, about in stamps if about & failed) - sent
    return row


def in_process(root: Path, target: Break, saves: int, python: str) -> dict:
    """parse and select timed in-process on the same alternation of saves, after the session: with
    the records its runs left."""
    project = Project(root, {"python": python})
    project.baseline_everything()
    fixed = (root / target.path).read_text()
    texts = [fixed.replace(target.fixed, target.broken), fixed]
    parse_s, select_s = [], []
    for i in range(saves):
        text = texts[i % 2]
        t0 = time.perf_counter()
        changes = project.changes_in(target.path, text)
        project.index.update(target.path, text.encode())
        t1 = time.perf_counter()
        project.select(changes)
        select_s.append(time.perf_counter() - t1)
        parse_s.append(t1 - t0)
    project.close()
    return {"parse": summary_ms(parse_s), "select": summary_ms(select_s)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--saves", type=int, default=40, help="saves measured, half of them break (even number)")
    p.add_argument("--project", choices=sorted(set(BREAKS) - {EXAMPLE}), help="a real project (default: the example)")
    p.add_argument("--python", help="the interpreter that runs the tests (default: the bench venv)")
    p.add_argument("--cold", action="store_true", help="tracefix.warmRunner off: every run starts a new interpreter")
    p.add_argument("--profile", type=Path, help="py-spy's collapsed stacks of the server and its processes")
    args = p.parse_args()
    python = args.python or str(ensure_venv())
    name = args.project or EXAMPLE
    at_start = machine()
    with tempfile.TemporaryDirectory() as base:
        env, priming = None, None
        if args.project:
            root, env, priming = project_checkout(args.project)
        else:
            root = shop_copy(Path(base))
        rows = asyncio.run(lsp_saves(root, BREAKS[name], args.saves, python, not args.cold, env, args.profile))
        core = in_process(root, BREAKS[name], args.saves, python)
    breaks = [r for r in rows if "first_failing_s" in r]
    answered = [r for r in rows if "done_s" in r]
    result = {
        "project": f"{name}=={PROJECTS[name].version}" if args.project else "examples/shop",
        "break": vars(BREAKS[name]),
        "priming": priming,
        "saves": len(rows),
        "unanswered_saves": len(rows) - len(answered),
        "break_saves_with_failure": len(breaks),
        "save_to_first_failure": summary_ms([r["first_failing_s"] for r in breaks]),
        "tests_own_time": summary_ms([r["tests_s"] for r in breaks]),
        "overhead": summary_ms([r["first_failing_s"] - r["tests_s"] for r in breaks]),
        "target_overhead_p50_ms": 300,
        "before_run": summary_ms([r["before_run_s"] for r in breaks]),
        "start": summary_ms([r["start_s"] for r in breaks]),
        "save_to_first_diagnostic": summary_ms([r["first_diagnostic_s"] for r in breaks]),
        "diagnostic_overhead": summary_ms([r["first_diagnostic_s"] - r["tests_s"] for r in breaks]),
        "parse": core["parse"],
        "select": core["select"],
        "save_to_done": summary_ms([r["done_s"] for r in answered]),
        "python": python,
        "warm_runner": not args.cold,
        "rows": rows,
        "machine_at_start": at_start,
        "machine": machine(),
        "command": f"python bench/latency.py --saves {args.saves}"
        + (f" --project {args.project}" if args.project else "")
        + (f" --python {args.python}" if args.python else "")
        + (" --cold" if args.cold else ""),
    }
    stem = "-".join(
        [
            "latency",
            *([args.project] if args.project else []),
            *(["cold"] if args.cold else []),
        ]
    )
    path = write_results(stem, result)
    for key in (
        "save_to_first_failure",
        "tests_own_time",
        "overhead",
        "before_run",
        "start",
        "save_to_first_diagnostic",
        "diagnostic_overhead",
        "parse",
        "select",
        "save_to_done",
    ):
        s = result[key]
        print(f"{key:25s} p50 {s['p50_ms']:8.1f} ms  p90 {s['p90_ms']:8.1f} ms  (n={s['n']})")
    print(
        f"{result['unanswered_saves']} saves unanswered in {ANSWER_TIMEOUT:g} s; "
        f"load average {at_start['load_average_1_5_15']} at start, {result['machine']['load_average_1_5_15']} "
        f"at the end; results: {path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
