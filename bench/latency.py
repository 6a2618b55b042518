"""Save → first failing diagnostic, through a real LSP session (`tracefix serve` over stdio).

With the warm runner (each run forked from a started pytest worker) unless --cold.
On a copy of examples/shop (bug fixed), tests run by a plain project venv (pytest only: the bench
venv; --python picks another, e.g. one with many auto-loaded pytest plugins), saves alternate: break bulk_discount (`>= 50` → `> 50`), then
fix it again. Per break save: the time from sending the save to the first `tracefix/testResults`
notification with a failing test (sent together with its diagnostics), the tests' own time (their
reported durations up to that result) and what is left: tracefix's overhead, split at the
`tracefix/status` "running" notification the server sends just before it starts pytest:
  before run  save → "running": the 50 ms save coalescing, parse, select, messages
  start       "running" → first failure, minus the tests' own time: pytest start and collection
and, timed in-process with the calls the server makes on a save:
  parse       Project.changes_in + index update of the saved file (re-parse, outline, diff)
  select      Project.select on those changes

    python bench/latency.py --saves 40 [--python PATH] [--cold]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, ensure_venv, machine, summary_ms, write_results

sys.path[:0] = [str(REPO / "tests"), str(REPO)]  # the e2e tests import tests.support
from conftest import start_client, wait_until
from test_lsp_e2e import edit_and_save, open_file
from tracefix.project import Project
from tracefix.running.results import FAILING

FIXED, BROKEN = "if quantity >= 50:", "if quantity > 50:"
PRICING = "shop/pricing.py"
ANSWER_TIMEOUT = 60.0  # seconds: a run of three tests that has not finished by then never will


class Stamped(list):
    """A list that notes when each item arrived (start_client appends every notification to one)."""

    def append(self, item) -> None:
        super().append((time.perf_counter(), item))


def shop_copy(base: Path) -> Path:
    root = base / "shop"
    shutil.copytree(REPO / "examples" / "shop", root, ignore=shutil.ignore_patterns(".tracefix", "__pycache__"))
    pricing = root / PRICING
    pricing.write_text(pricing.read_text().replace(BROKEN, FIXED))
    return root


async def lsp_saves(root: Path, saves: int, python: str, warm: bool) -> list[dict]:
    client = await start_client(root, {"python": python, "warmRunner": warm})
    try:
        pricing = root / PRICING
        await open_file(client, pricing)
        client.tracefix_results = notes = Stamped()
        client.tracefix_status = statuses = Stamped()
        rows = []
        for i in range(saves + 2):  # the first break/fix pair warms up the server and the OS caches
            breaking = i % 2 == 0
            notes.clear()
            statuses.clear()
            sent = time.perf_counter()
            await edit_and_save(client, pricing, *((FIXED, BROKEN) if breaking else (BROKEN, FIXED)), version=i + 2)
            try:
                await wait_until(lambda: any(n["done"] for _, n in notes), timeout=ANSWER_TIMEOUT, step=0.005)
            except AssertionError:  # counted, not fatal: a save the server never answers is a finding
                rows.append({"breaking": breaking, "unanswered": True})
                continue
            if i >= 2:
                rows.append(_save_row(sent, notes, statuses, breaking))
        return rows
    finally:
        await client.shutdown_session()
        await client.stop()


def _save_row(sent: float, notes: list, statuses: list, breaking: bool) -> dict:
    results = [(at, r) for at, n in notes for r in n["results"]]
    done_at = next(at for at, n in notes if n["done"])
    running_at = next(at for at, s in statuses if s["state"] == "running")
    row = {"breaking": breaking, "tests": len(results), "done_s": done_at - sent, "before_run_s": running_at - sent}
    first = next((k for k, (_, r) in enumerate(results) if r["outcome"] in FAILING), None)
    if first is not None:
        row["first_failing_s"] = results[first][0] - sent
        row["tests_s"] = sum(r["duration"] for _, r in results[: first + 1])
        row["start_s"] = results[first][0] - running_at - row["tests_s"]
    return row


def in_process(root: Path, saves: int) -> dict:
    """parse and select timed in-process on the same alternation of saves."""
    project = Project(root)
    project.baseline_everything()
    fixed = (root / PRICING).read_text()
    texts = [fixed.replace(FIXED, BROKEN), fixed]
    parse_s, select_s = [], []
    for i in range(saves):
        text = texts[i % 2]
        t0 = time.perf_counter()
        changes = project.changes_in(PRICING, text)
        project.index.update(PRICING, text.encode())
        t1 = time.perf_counter()
        project.select(changes)
        select_s.append(time.perf_counter() - t1)
        parse_s.append(t1 - t0)
    project.close()
    return {"parse": summary_ms(parse_s), "select": summary_ms(select_s)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--saves", type=int, default=40, help="saves measured, half of them break (even number)")
    p.add_argument("--python", help="the interpreter that runs the example's tests (default: the bench venv)")
    p.add_argument("--cold", action="store_true", help="tracefix.warmRunner off: every run starts a new interpreter")
    args = p.parse_args()
    python = args.python or str(ensure_venv())
    with tempfile.TemporaryDirectory() as lsp_dir, tempfile.TemporaryDirectory() as core_dir:
        rows = asyncio.run(lsp_saves(shop_copy(Path(lsp_dir)), args.saves, python, warm=not args.cold))
        core = in_process(shop_copy(Path(core_dir)), args.saves)
    breaks = [r for r in rows if "first_failing_s" in r]
    answered = [r for r in rows if "done_s" in r]
    result = {
        "saves": len(rows),
        "unanswered_saves": len(rows) - len(answered),
        "break_saves_with_failure": len(breaks),
        "save_to_first_failure": summary_ms([r["first_failing_s"] for r in breaks]),
        "tests_own_time": summary_ms([r["tests_s"] for r in breaks]),
        "overhead": summary_ms([r["first_failing_s"] - r["tests_s"] for r in breaks]),
        "target_overhead_p50_ms": 300,
        "before_run": summary_ms([r["before_run_s"] for r in breaks]),
        "start": summary_ms([r["start_s"] for r in breaks]),
        "parse": core["parse"],
        "select": core["select"],
        "save_to_done": summary_ms([r["done_s"] for r in answered]),
        "python": python,
        "warm_runner": not args.cold,
        "rows": rows,
        "machine": machine(),
        "command": f"python bench/latency.py --saves {args.saves}"
        + (f" --python {args.python}" if args.python else "")
        + (" --cold" if args.cold else ""),
    }
    path = write_results("latency-cold" if args.cold else "latency", result)
    for key in (
        "save_to_first_failure",
        "tests_own_time",
        "overhead",
        "before_run",
        "start",
        "parse",
        "select",
        "save_to_done",
    ):
        s = result[key]
        print(f"{key:22s} p50 {s['p50_ms']:8.1f} ms  p90 {s['p90_ms']:8.1f} ms  (n={s['n']})")
    print(
        f"{result['unanswered_saves']} saves unanswered in {ANSWER_TIMEOUT:g} s; "
        f"load average {result['machine']['load_average_1_5_15']}; results: {path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
