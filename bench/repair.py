"""Repair benchmark on HumanEvalFix (Python): a one-shot baseline vs. tracefix's trace + verify loop.

Per task a tiny project is built: solution.py (declaration + buggy body) and test_example.py (the
task's visible example test as a pytest test). The model sees only those; what an arm offers is
scored with the task's hidden `test`, run in a fresh interpreter outside the project.

Arms, same model server, same reply parser (tracefix.fixing.replies.parse_reply):
  tracefix  what the editor's fix action does (tracefix.fixing.fix_test): find the function the
            failing test exercises, trace the test, build the request, fixing.engine.refine: rounds
            of candidates, each verified on the visible test in a shadow copy; offers only a verified one.
  baseline  "fix this function, here is the failing pytest output"; calls one at a time until a reply
            parses, offered unverified. Its budget is the number of model calls tracefix made on the
            same task (--calls when tracefix does not run).

    TRACEFIX_LLAMA_PYTHON=/path/to/llama-venv/bin/python python bench/repair.py --model qwen-coder-1.5b --limit 20
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from repair_common import ROOT, Bench, add_arguments, ask_baseline, parse_args, run_main
from tracefix.fixing.engine import refine
from tracefix.fixing.jobs import FixError, build_request, function_under_test, prompt_trace
from tracefix.fixing.prompt import FixRequest
from tracefix.parsing.symbols import Symbol
from tracefix.project import Project
from tracefix.running.results import TestResult
from tracefix.settings import LLMSettings
from tracefix.tracing import capture

DATASET = ROOT.parent / "shared" / "datasets" / "humanevalfix-python.jsonl"
SOLUTION, TEST_FILE = "solution.py", "test_example.py"
NODEID = f"{TEST_FILE}::test_example"
TEST_TIMEOUT = 20.0  # HumanEval tests take well under a second; some buggy bodies loop forever


# ---------------------------------------------------------------- tasks and projects


def load_tasks(path: Path, ids: list[str] | None, limit: int | None) -> list[dict]:
    tasks = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if ids:
        by_id = {t["task_id"]: t for t in tasks}
        tasks = [by_id[i] for i in ids]
    return tasks[:limit] if limit else tasks


def visible_test(task: dict) -> str:
    """The example `check(fn)` as a pytest test, so pytest reports the failing assert with values."""
    check = task["example_test"].rstrip().splitlines()[:-1]  # drop the module-level `check(fn)` call
    fn = task["entry_point"]
    return f"from solution import {fn}\n\n\n" + "\n".join(check) + f"\n\n\ndef test_example():\n    check({fn})\n"


def make_project(task: dict, directory: Path, solution: str | None = None) -> Path:
    directory.mkdir(parents=True)
    (directory / SOLUTION).write_text(solution or task["declaration"] + task["buggy_solution"])
    (directory / TEST_FILE).write_text(visible_test(task))
    # Keeps pytest-asyncio's deprecation warning (if the interpreter has it) out of what the model reads.
    (directory / "pytest.ini").write_text("[pytest]\naddopts = -p no:asyncio\n")
    return directory


def run_visible(python: str, project: Path) -> tuple[bool, str]:
    """(passed, pytest's output) for the visible test: what a developer would see and paste."""
    try:
        proc = subprocess.run(
            [python, "-m", "pytest", "-q", "--tb=short", "--no-header", "-p", "no:cacheprovider", TEST_FILE],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=TEST_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return False, f"pytest was killed after {TEST_TIMEOUT:g} s: the test does not finish"
    return proc.returncode == 0, proc.stdout + proc.stderr


def passes_hidden(python: str, task: dict, solution: str) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "hidden.py"
        script.write_text(solution + "\n\n" + task["test"] + "\n")
        try:
            proc = subprocess.run([python, str(script)], cwd=tmp, capture_output=True, timeout=TEST_TIMEOUT)
        except subprocess.TimeoutExpired:
            return False
    return proc.returncode == 0


# ---------------------------------------------------------------- arms


@dataclass
class Attempt:
    solution: str | None = None  # the offered solution.py, None when the arm offers nothing
    calls: int = 0
    tokens: int = 0
    seconds: float = 0.0
    note: str = ""
    visible_pass: bool | None = None
    hidden_pass: bool | None = None
    detail: dict = field(default_factory=dict)


@dataclass
class Context:
    task: dict
    project: Project  # a pristine copy for this arm
    result: TestResult  # the failing visible test, as the editor has it
    output: str  # pytest's output for the buggy code
    budget: int  # model calls the baseline may make
    settings: LLMSettings


def request_for(ctx: Context, symbol: Symbol | None = None, trace_text: str = "") -> FixRequest:
    """The product's request for `symbol`, by default the function the failing test exercises as the
    editor finds it."""
    if symbol is None:
        found = function_under_test(ctx.project, ctx.result)
        if found is None:
            raise FixError(f"cannot tell which function {NODEID} exercises")
        symbol = found[1]
    return build_request(
        ctx.project, SOLUTION, symbol, nodeid=NODEID, texts={}, result=ctx.result, trace_text=trace_text
    )


async def baseline(ctx: Context) -> Attempt:
    # The developer names the function to fix, so this works where the product cannot find it (a hang).
    request = request_for(ctx, ctx.project.index.symbol(SOLUTION, ctx.task["entry_point"]))
    started = time.monotonic()
    test = (ctx.project.root / TEST_FILE).read_text()
    reply = await ask_baseline(request, TEST_FILE, test, ctx.output.strip(), ctx.settings, ctx.budget)
    return Attempt(
        solution=reply.candidate.file_text if reply.candidate else None,
        calls=reply.calls,
        tokens=reply.tokens,
        seconds=time.monotonic() - started,
        note="offered (unverified)" if reply.candidate else "no usable reply",
        detail={"rejected": reply.rejected},
    )


async def tracefix(ctx: Context) -> Attempt:
    """What fixing.fix_test does, with the outcome kept for its calls and tokens even when nothing is offered."""
    started = time.monotonic()
    trace = await capture(ctx.project.root, ctx.project.python(), NODEID, timeout=TEST_TIMEOUT)
    request = request_for(ctx, trace_text=prompt_trace(ctx.project, trace))
    request.trace = trace  # the failing inputs: generated inputs for the property check start from them
    outcome = await refine(request, ctx.settings)
    attempt = Attempt(
        solution=outcome.best.file_text if outcome.best else None,
        calls=outcome.model_calls,
        tokens=outcome.tokens_in + outcome.tokens_out,
        seconds=time.monotonic() - started,
    )
    attempt.note = "offered (verified)" if outcome.best else outcome.error or "no verified candidate"
    attempt.detail = {
        "trace_error": trace.error,
        "evidence": outcome.evidence,
        "attempts": [
            f"r{a.round}c{a.index} t={a.temperature} {a.view} {a.verdict}: {a.reason}" for a in outcome.attempts
        ],
        "check_seconds": round(outcome.check_time, 2),  # of the time, in the checks beyond the tests
        # which prompt the offered fix answered: with the trace, or the brief view without it
        "offered_view": next((a.view for a in outcome.attempts if outcome.best and a.candidate is outcome.best), None),
        # Offered in the editor only as clearly unverified; scored here for information, not as a fix.
        "unverified_hidden_pass": (
            passes_hidden(ctx.project.python(), ctx.task, outcome.unverified.file_text) if outcome.unverified else None
        ),
    }
    return attempt


ARMS = {"tracefix": tracefix, "baseline": baseline}


# ---------------------------------------------------------------- running and reporting


async def run_task(task: dict, args: argparse.Namespace, settings: LLMSettings, workdir: Path) -> dict:
    row: dict = {"task_id": task["task_id"], "bug_type": task["bug_type"], "arms": {}}
    if not task["example_test"].strip():
        row["skipped"] = "no visible example test"
        return row
    base = workdir / task["task_id"].replace("/", "_")
    passed, output = run_visible(args.python, make_project(task, base / "buggy"))
    if passed:
        row["skipped"] = "visible test already passes on the buggy code"
        return row
    budget = args.calls
    for arm in args.arms:
        # Each arm gets a pristine copy, so one arm's edits can never leak into the other's.
        project = Project(make_project(task, base / arm), {"python": args.python, "timeout": TEST_TIMEOUT})
        try:
            # The failing result the editor already has when a fix is asked for: not counted as fix time.
            [result] = (await project.run([NODEID])).results
            attempt = await ARMS[arm](Context(task, project, result, output, budget, settings))
        except FixError as exc:
            attempt = Attempt(note=str(exc))
        except Exception as exc:
            attempt = Attempt(note=f"error: {type(exc).__name__}: {exc}")
        finally:
            project.close()
        if arm == "tracefix":
            budget = max(attempt.calls, 1)  # the baseline may spend what tracefix spent, no more
        if attempt.solution is not None:
            attempt.visible_pass = run_visible(
                args.python, make_project(task, base / f"{arm}-offered", attempt.solution)
            )[0]
            attempt.hidden_pass = passes_hidden(args.python, task, attempt.solution)
        row["arms"][arm] = asdict(attempt)
        print(
            f"{task['task_id']:>12} {arm:>9}: {attempt.note[:60]:<60} hidden={attempt.hidden_pass} "
            f"calls={attempt.calls} tokens={attempt.tokens} {attempt.seconds:.0f}s",
            flush=True,
        )
    return row


def summarize(rows: list[dict], arms: list[str]) -> dict:
    attempted = [r for r in rows if "skipped" not in r]
    summary: dict = {
        "tasks": len(rows),
        "attempted": len(attempted),
        "skipped": {r["task_id"]: r["skipped"] for r in rows if "skipped" in r},
    }
    for arm in arms:
        results = [r["arms"][arm] for r in attempted if arm in r["arms"]]
        offered = [a for a in results if a["solution"] is not None]
        fixed = sum(bool(a["hidden_pass"]) for a in offered)
        tokens = sum(a["tokens"] for a in results)
        seconds = sum(a["seconds"] for a in results)
        summary[arm] = {
            "attempted": len(results),
            "offered": len(offered),
            "fixed": fixed,
            "fix_rate": fixed / len(results) if results else 0.0,
            "offered_pass_visible": sum(bool(a["visible_pass"]) for a in offered),
            "offered_fail_hidden": len(offered) - fixed,
            "errors": sum(a["note"].startswith("error:") for a in results),
            "calls": sum(a["calls"] for a in results),
            "tokens": tokens,
            "seconds": round(seconds, 1),
            "tokens_per_fix": round(tokens / fixed) if fixed else None,
            "seconds_per_fix": round(seconds / fixed, 1) if fixed else None,
        }
    if set(ARMS) <= set(arms):
        fixed_by = [tuple(bool(r["arms"][a]["hidden_pass"]) for a in ARMS) for r in attempted]
        summary["paired"] = {
            "both": fixed_by.count((True, True)),
            "tracefix only": fixed_by.count((True, False)),
            "baseline only": fixed_by.count((False, True)),
            "neither": fixed_by.count((False, False)),
        }
    return summary


def markdown(summary: dict, arms: list[str]) -> str:
    lines = [
        "| arm | attempted | offered | fixed (hidden test passes) | fix rate | offered, visible test passes "
        "| offered, hidden test fails | crashed | model calls | tokens | tokens per fix | wall s | wall s per fix |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arm in arms:
        s = summary[arm]
        lines.append(
            f"| {arm} | {s['attempted']} | {s['offered']} | {s['fixed']} | {s['fix_rate']:.0%} | "
            f"{s['offered_pass_visible']} | {s['offered_fail_hidden']} | {s.get('errors', 0)} | {s['calls']} | {s['tokens']} | "
            f"{s['tokens_per_fix'] or '–'} | {s['seconds']:.0f} | {s['seconds_per_fix'] or '–'} |"
        )
    if "paired" in summary:
        lines.append("\nFixed by: " + ", ".join(f"{k} {v}" for k, v in summary["paired"].items()))
    skipped = summary["skipped"]
    for reason in sorted(set(skipped.values())):
        ids = [t for t, r in skipped.items() if r == reason]
        lines.append(f"\nNot attempted, {reason}: {len(ids)} ({', '.join(ids)})")
    return "\n".join(lines)


BENCH = Bench(
    "repair",
    "tasks",
    tuple(ARMS),
    ("candidates", "rounds", "calls", "temperature", "n_ctx", "threads"),
    600.0,
    summarize,
    markdown,
)


def arguments(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, default=DATASET)
    p.add_argument("--tasks", help="comma-separated task ids, e.g. Python/0,Python/3")
    p.add_argument("--limit", type=int, help="the first N tasks (of --tasks, if given)")
    add_arguments(p, BENCH, LLMSettings.candidates, LLMSettings.rounds)
    args = parse_args(p, argv, BENCH)
    if not args.table:
        args.tasks = load_tasks(args.dataset, args.tasks.split(",") if args.tasks else None, args.limit)
    return args


def main(argv: list[str] | None = None) -> None:
    run_main(BENCH, arguments(sys.argv[1:] if argv is None else argv), run_task)


if __name__ == "__main__":
    main()
