"""Overhead of running a real suite through tracefix vs plain pytest, same test ids, same interpreter.

Arms, interleaved round by round so load from other work on the machine hits them alike:
  plain      python -m pytest -q -p no:cacheprovider -- <ids>
  streaming  tracefix's runner (run_tests): + the tracefix_pytest plugin streaming each result
  deps       Project.run, what a tracefix run costs: streaming + the tracefix_deps plugin recording
             what each test used, and storing it in .tracefix
The ids are the project's tests as tracefix's index lists them (what `tracefix check --all` runs).

    python bench/overhead.py --project boltons --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PROJECTS, checkout, ensure_venv, machine, timed, write_results
from tracefix.project import Project
from tracefix.running.process import Limits
from tracefix.running.runner import run_tests


def measure(name: str, rounds: int) -> dict:
    project = PROJECTS[name]
    root = checkout(project, "overhead")
    python = str(ensure_venv())
    os.environ.update(project.env(root))  # the runner hands its own environment to pytest
    tracefix = Project(root)
    nodeids = [t.nodeid for t in tracefix.index.tests()]
    plain_argv = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--", *nodeids]

    def plain() -> float:
        return timed(plain_argv, cwd=root)[0]

    def streaming() -> float:
        started = time.perf_counter()
        asyncio.run(run_tests(root, python, nodeids, limits=Limits(timeout=600)))
        return time.perf_counter() - started

    def deps() -> float:
        started = time.perf_counter()
        asyncio.run(tracefix.run(nodeids))
        return time.perf_counter() - started

    arms = {"plain": plain, "streaming": streaming, "deps": deps}
    for arm in arms.values():
        arm()  # warm-up: OS caches, .pyc files
    times: dict[str, list[float]] = {a: [] for a in arms}
    for i in range(rounds):
        for arm, run in arms.items():
            times[arm].append(run())
        print(f"  round {i + 1}: " + "  ".join(f"{a} {t[-1]:.2f} s" for a, t in times.items()), flush=True)
    tracefix.close()
    median = {a: statistics.median(t) for a, t in times.items()}
    return {"project": f"{project.name}=={project.version}", "tests": len(nodeids), "rounds": rounds,
            "seconds": {a: [round(x, 3) for x in t] for a, t in times.items()},
            "median_s": {a: round(m, 3) for a, m in median.items()},
            "ratio_to_plain": {a: round(m / median["plain"], 3) for a, m in median.items()},
            "target_ratio_deps": 1.3}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--project", choices=sorted(PROJECTS), default="boltons")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    result = measure(args.project, args.rounds)
    result.update(machine=machine(), command=f"python bench/overhead.py --project {args.project} --rounds {args.rounds}")
    path = write_results(f"overhead-{args.project}", result)
    for arm, seconds in result["median_s"].items():
        print(f"{arm:10s} median {seconds:6.2f} s  ×{result['ratio_to_plain'][arm]:.2f} of plain pytest")
    print(f"{result['tests']} test ids; load average {result['machine']['load_average_1_5_15']}; results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
