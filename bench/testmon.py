"""Side by side with pytest-testmon: the same killed single-line mutants, in one run, interleaved.

Per project, set up as in mutation.py (the same checkout, priming, mutants, screening and survivors
file): each tool primed by its first full run on the baseline (`tracefix check --all`,
`pytest --testmon`). Per killed mutant, first the full suite (`pytest`: the truth, and the time to
beat; it also screens the mutant), then these arms, in an order that rotates from one mutant to
the next so that drift in the machine's load hits each arm alike:
  tracefix           `tracefix check --format json --no-trace`, from the primed state
  tracefix_trace     `tracefix check --format json`, from the primed state: the default, which also
                     traces (re-runs) up to 3 failing tests
  testmon            `pytest --testmon`, from its primed state
  tracefix_unprimed  `tracefix check --format json --no-trace` with no .tracefix at all, as in a fresh
                     clone: changes since git HEAD, selection by the static name graph alone
  tracefix_daemon    `tracefix check --format json --no-trace --daemon`, from the primed state: the
                     check served by the workspace's resident process (started by its first check)
Before each arm the tools' state is copied back from the primed copy (or removed, unprimed).
Bytecode: plain pytest (the full run, testmon) keeps it outside the checkout in PYCACHE, as a
developer's pytest keeps __pycache__; tracefix keeps its own; mutants get a later mtime second.

A failing test is *missed* by an arm when the full run failed it and the arm did not report it
failing. Missed tests are rerun alone on the mutant (`pytest <ids>`), which tells a test that fails
only inside the full suite (order, timing) from one the arm should have run.
*Ran* counts collected items (each parametrized case, each unittest method) against the full run's.

    python bench/testmon.py --project toolz --mutants 15 --seed 1
    python bench/testmon.py --project more-itertools --tracefix-timeout 600   # a priming run over 120 s
    python bench/testmon.py --table bench/results/testmon-*.json   # the markdown table again
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PROJECTS, RESULTS, RealProject, compile_tracefix, machine, write_results
from mutation import (
    Primed,
    copy_states,
    failing,
    killed,
    mutant_arguments,
    prime,
    pytest_run,
    reported,
    shuffled_candidates,
    tracefix_check,
)

ARMS = ("tracefix", "tracefix_trace", "testmon", "tracefix_unprimed", "tracefix_daemon")
TRACEFIX_ARMS = ("tracefix", "tracefix_trace", "tracefix_unprimed", "tracefix_daemon")
RATIO_ARMS = ("tracefix", "tracefix_trace", "tracefix_daemon")  # primed, against testmon's primed wall
NAMES = {"tracefix": "tracefix", "tracefix_trace": "+trace", "testmon": "testmon"}
NAMES.update(tracefix_unprimed="unprimed", tracefix_daemon="daemon")


def run_arm(arm: str, project: RealProject, primed: Primed, no_state: Path, timeout: float) -> dict:
    """{s, cpu_s, outcomes, selected?, error?} of one arm on the mutant in primed.root."""
    root = primed.root
    copy_states(no_state if arm == "tracefix_unprimed" else primed.keep, root)
    if arm == "testmon":
        wall, cpu, outcomes = pytest_run(project, root, "--testmon", timeout=timeout)
        return {
            "s": wall,
            "cpu_s": cpu,
            "outcomes": outcomes or {},
            **({} if outcomes is not None else {"error": f"timed out after {timeout:g} s"}),
        }
    try:
        extra = ("--daemon",) if arm == "tracefix_daemon" else ()
        wall, cpu, report = tracefix_check(project, root, *extra, trace=arm == "tracefix_trace")
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:  # a crash is a finding, not the end
        return {"s": None, "cpu_s": None, "outcomes": {}, "error": str(exc)[-1000:]}
    return {
        "s": wall,
        "cpu_s": cpu,
        "outcomes": reported(report),
        "selected": set(report["selected"]),
        "status": report["status"],
        "message": report.get("message", ""),
        "changed": [f"{c['path']}::{c['symbol']}" for c in report["changed"]],
    }


def measure(
    project: RealProject,
    wanted: int,
    seed: int,
    max_tries: int,
    tracefix_timeout: float | None,
    save: Callable[[dict], object],
) -> dict:
    """The result, saved after every mutant (finished: false until the last), so a stopped run keeps its rows."""
    at_start = machine()
    compile_tracefix()
    primed = prime(project, "testmon", tracefix_timeout)
    suite = len(primed.baseline)
    timeout = max(60.0, 10 * primed.full_s)  # a mutant that loops
    pool = shuffled_candidates(project, primed, seed)
    print(
        f"{project.name}: {suite} items, {len(primed.broken_before)} failing at baseline, full run "
        f"{primed.full_s:.1f} s, {len(pool)} candidate mutants; priming: {primed.priming}",
        flush=True,
    )
    no_state = Path(tempfile.mkdtemp(prefix="bench-no-state-"))
    rows: list[dict] = []
    result = {
        "project": f"{project.name}=={project.version}",
        "items": suite,
        "failing_at_baseline": sorted(primed.broken_before),
        "full_run_s": round(primed.full_s, 2),
        "priming": primed.priming,
        "tracefix_timeout": tracefix_timeout,
        "candidates": len(pool),
        "machine_at_start": at_start,
        "mutants": rows,
    }

    def update(finished: bool) -> None:
        result.update(screened=primed.screened, finished=finished, machine=machine(), summary=summarize(rows, suite))
        save(result)

    for mutant, full_s, truth, broken in killed(project, primed, pool, wanted, max_tries):
        k = len(rows)
        order = ARMS[k % len(ARMS) :] + ARMS[: k % len(ARMS)]
        arm_timeout = max(timeout, 3 * full_s)  # a subset of what the full run just ran, on a machine as loaded
        runs = {arm: run_arm(arm, project, primed, no_state, arm_timeout) for arm in order}
        row = {
            "mutant": asdict(mutant),
            "failing": sorted(broken),
            "order": list(order),
            "full": {"s": round(full_s, 3), "ran": len(truth)},
        }
        for arm, run in runs.items():
            outcomes, selected = run.pop("outcomes"), run.pop("selected", None)
            run.update(
                {k: round(run[k], 3) for k in ("s", "cpu_s") if run[k] is not None},
                ran=len(outcomes),
                missed=sorted(broken - failing(outcomes)),
            )
            if (
                selected is not None
            ):  # a miss is either selection (never chosen) or reporting (chosen, not seen failing)
                run["missed_unselected"] = [n for n in run["missed"] if n.split("[")[0] not in selected]
                run["selected"] = len(selected)  # test functions: each runs all its parametrized cases
            row[arm] = run
        missed = sorted({n for arm in ARMS for n in row[arm]["missed"]})
        if missed:
            _, _, alone = pytest_run(project, primed.root, "--", *missed, timeout=arm_timeout)
            row["missed_rerun_alone"] = {n: (alone or {}).get(n, "not run") for n in missed}
        rows.append(row)
        print(
            f"  {k + 1:3d} {mutant.path}:{mutant.line} {mutant.kind:12s} failing {len(broken):4d} | full "
            f"{full_s:5.1f} s | "
            + " | ".join(
                f"{arm} {row[arm]['s'] or 0:5.1f} s ran {row[arm]['ran']:4d} missed {len(row[arm]['missed'])}"
                + (" ERROR" if "error" in row[arm] else "")
                for arm in ARMS
            ),
            flush=True,
        )
        update(finished=False)
    subprocess.run([sys.executable, "-m", "tracefix", "stop", str(primed.root)], check=False)
    shutil.rmtree(primed.keep)
    shutil.rmtree(no_state)
    update(finished=True)
    return result


def summarize(rows: list[dict], suite: int) -> dict:
    if not rows:
        return {"mutants": 0}
    median = statistics.median
    summary = {
        "mutants": len(rows),
        "failing_tests": sum(len(r["failing"]) for r in rows),
        "full": {"wall_s_median": round(median(r["full"]["s"] for r in rows), 3)},
    }
    testmon_wall = median(r["testmon"]["s"] for r in rows)
    for arm in arms_of(rows):
        ok = [r for r in rows if "error" not in r[arm]]
        share = [r[arm]["ran"] / suite for r in rows]
        s = summary[arm] = {
            "errors": len(rows) - len(ok),
            # tracefix's own run timeout (120 s unless configured): tests it never started count as missed
            "cut_short": sum(r[arm].get("status", "ok") != "ok" for r in ok),
            "missed_in_runs_cut_short": sum(
                len(r[arm]["missed"]) for r in rows if "error" in r[arm] or r[arm].get("status", "ok") != "ok"
            ),
            "missed_failing_tests": sum(len(r[arm]["missed"]) for r in rows),
            "mutants_with_a_miss": sum(bool(r[arm]["missed"]) for r in rows),
            "missed_failing_alone_too": sum(
                r.get("missed_rerun_alone", {}).get(n) in ("failed", "error") for r in rows for n in r[arm]["missed"]
            ),
            "share_run_median": round(median(share), 4),
            "share_run_mean": round(statistics.fmean(share), 4),
        }
        if ok:
            s.update(
                wall_s_median=round(median(r[arm]["s"] for r in ok), 3),
                cpu_s_median=round(median(r[arm]["cpu_s"] for r in ok), 3),
            )
        if arm in TRACEFIX_ARMS and ok:
            s.update(
                missed_unselected=sum(len(r[arm]["missed_unselected"]) for r in ok),
                over_testmon_median_of_ratios=round(median(r[arm]["s"] / r["testmon"]["s"] for r in ok), 2),
                over_testmon_ratio_of_medians=round(s["wall_s_median"] / testmon_wall, 2),
                slower_than_full=sum(r[arm]["s"] > r["full"]["s"] for r in ok),
            )
    return summary


def arms_of(rows: list[dict]) -> tuple[str, ...]:
    """The arms these rows ran (results from before the daemon arm have four)."""
    return tuple(arm for arm in ARMS if arm in rows[0])


def table(results: list[dict]) -> str:
    """The markdown table of docs/benchmarks.md: one column per project."""
    arms = arms_of(results[0]["mutants"])
    tracefix_arms = tuple(a for a in arms if a in TRACEFIX_ARMS)
    ratio_arms = tuple(a for a in arms if a in RATIO_ARMS)

    def names(of: tuple[str, ...]) -> str:
        return " / ".join(NAMES[a] for a in of)

    def cells(f) -> str:
        return " | ".join(f(r, r["summary"]) for r in results)

    def per_arm(key, fmt="{}", of=arms):
        return lambda r, s: " / ".join(fmt.format(s[a][key]) if key in s.get(a, {}) else "–" for a in of)

    lines = ["| | " + " | ".join(f"{r['project']}" for r in results) + " |", "|---|" + "---|" * len(results)]
    spec = [
        ("collected items; full run at baseline", lambda r, s: f"{r['items']:,}; {r['full_run_s']} s"),
        (
            "tracefix `check --all` priming",
            lambda r, s: f"{r['priming']['tracefix_s']} s, {r['priming']['tracefix_summary']}",
        ),
        ("candidates / screened / killed", lambda r, s: f"{r['candidates']} / {r['screened']} / {s['mutants']}"),
        ("failing tests over all mutants", lambda r, s: f"{s['failing_tests']:,}"),
        (f"**missed failing tests**: {names(arms)}", per_arm("missed_failing_tests", "**{}**")),
        ("… of them failing when rerun alone", per_arm("missed_failing_alone_too")),
        ("… of them in runs cut short (timeout, crash)", per_arm("missed_in_runs_cut_short")),
        (f"share of items run, median: {names(arms)}", per_arm("share_run_median", "{:.1%}")),
        ("share of items run, mean", per_arm("share_run_mean", "{:.1%}")),
        ("wall per mutant, median (s): full suite", lambda r, s: f"{s['full']['wall_s_median']:.2f}"),
        (f"wall per mutant, median (s): {names(arms)}", per_arm("wall_s_median", "{:.2f}")),
        (f"CPU per mutant, median (s): {names(arms)}", per_arm("cpu_s_median", "{:.2f}")),
        (
            f"tracefix ÷ testmon wall, median of per-mutant ratios: {names(ratio_arms)}",
            per_arm("over_testmon_median_of_ratios", "{:.2f}", ratio_arms),
        ),
        (
            f"tracefix ÷ testmon wall, ratio of medians: {names(ratio_arms)}",
            per_arm("over_testmon_ratio_of_medians", "{:.2f}", ratio_arms),
        ),
        (
            f"mutants where tracefix was slower than the full suite: {names(ratio_arms)}",
            per_arm("slower_than_full", "{}", ratio_arms),
        ),
        (
            f"runs cut short (status not ok: timeout, crash): {names(tracefix_arms)}",
            per_arm("cut_short", "{}", tracefix_arms),
        ),
        (f"runs with no report (timeout of the bench, crash): {names(arms)}", per_arm("errors")),
    ]
    lines += [f"| {label} | {cells(f)} |" for label, f in spec]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mutant_arguments(p, mutants=15)
    p.add_argument(
        "--tracefix-timeout",
        type=float,
        metavar="SECONDS",
        help="tracefix's run timeout (default 120 s), written to the checkout's pyproject.toml: "
        "a priming run cut short leaves the tests it never started without a record",
    )
    p.add_argument(
        "--table", nargs="+", type=Path, metavar="JSON", help="print the table of these results; run nothing"
    )
    args = p.parse_args()
    if args.table:
        results = [json.loads(path.read_text()) for path in args.table]
        for r in results:  # summarized again: the stored summary may predate a change of summarize()
            r["summary"] = summarize(r["mutants"], r["items"])
        print(table(results))
        return 0
    results = []
    timeout = f" --tracefix-timeout {args.tracefix_timeout:g}" if args.tracefix_timeout else ""
    for name in args.project or sorted(PROJECTS):
        command = f"python bench/testmon.py --project {name} --mutants {args.mutants} --seed {args.seed}{timeout}"
        out = f"testmon-{name}" + (f"-timeout{args.tracefix_timeout:g}" if args.tracefix_timeout else "")
        result = measure(
            PROJECTS[name],
            args.mutants,
            args.seed,
            args.max_tries,
            args.tracefix_timeout,
            save=lambda r, out=out, command=command: write_results(out, dict(r, command=command)),
        )
        results.append(result)
        print(json.dumps(result["summary"], indent=2))
        print(f"results: {RESULTS / out}.json", flush=True)
    if any(r["mutants"] for r in results):  # --mutants 0: only the priming runs, no table
        print(table([r for r in results if r["mutants"]]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
