"""Overhead of running a real suite through tracefix vs plain pytest, same test ids, same interpreter.

Arms, interleaved round by round so load from other work on the machine hits them alike, each
timed by wall clock and by CPU time (ours plus pytest's: robust to waiting for a shared core;
cpu_ours is this process's part alone):
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
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PROJECTS, checkout, ensure_venv, machine, write_results
from tracefix.project import Project
from tracefix.running.process import Limits
from tracefix.running.runner import run_tests


def measure(name: str, rounds: int, base: str | None = None) -> dict:
    project = PROJECTS[name]
    root = checkout(project, "overhead")
    python = ensure_venv(base)
    # the runner hands its own environment to pytest; every arm with cached bytecode, as tracefix's runs have
    os.environ.update(project.env(root, python.parent.parent, bytecode=True))
    python = str(python)
    tracefix = Project(root)
    nodeids = [t.nodeid for t in tracefix.index.tests()]
    plain_argv = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--", *nodeids]

    arms = {
        "plain": lambda: subprocess.run(plain_argv, cwd=root, capture_output=True, check=False),
        "streaming": lambda: asyncio.run(run_tests(root, python, nodeids, limits=Limits(timeout=600))),
        "deps": lambda: asyncio.run(tracefix.run(nodeids)),
    }
    for run in arms.values():
        run()  # warm-up: OS caches, .pyc files
    times: dict[str, dict[str, list[float]]] = {a: {"wall": [], "cpu": [], "cpu_ours": []} for a in arms}
    for i in range(rounds):
        for arm, run in arms.items():
            wall, cpu, ours = time.perf_counter(), _cpu(), _cpu(resource.RUSAGE_SELF)
            run()
            times[arm]["wall"].append(time.perf_counter() - wall)
            times[arm]["cpu"].append(_cpu() - cpu)
            times[arm]["cpu_ours"].append(_cpu(resource.RUSAGE_SELF) - ours)
        print(
            f"  round {i + 1}: "
            + "  ".join(f"{a} {t['wall'][-1]:.2f} s ({t['cpu'][-1]:.2f} s CPU)" for a, t in times.items()),
            flush=True,
        )
    tracefix.close()
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    result = {
        "project": f"{project.name}=={project.version}",
        "tests": len(nodeids),
        "rounds": rounds,
        "test_python": version,
        "target_ratio_deps": 1.3,
    }
    for clock in ("wall", "cpu", "cpu_ours"):
        median = {a: statistics.median(t[clock]) for a, t in times.items()}
        result[clock] = {
            "seconds": {a: [round(x, 3) for x in t[clock]] for a, t in times.items()},
            "median_s": {a: round(m, 3) for a, m in median.items()},
        }
        if clock != "cpu_ours":  # plain pytest spends next to nothing in this process
            result[clock]["ratio_to_plain"] = {a: round(m / median["plain"], 3) for a, m in median.items()}
    return result


def _cpu(*who: int) -> float:
    """CPU seconds of this process (reading results, storing deps) and its finished children (pytest)."""
    usage = [resource.getrusage(w) for w in who or (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--project", choices=sorted(PROJECTS), default="boltons")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--base-python",
        help="the CPython to run the tests with (a venv is made from it); "
        "default: this one. Python 3.12+ measures the sys.monitoring path",
    )
    args = p.parse_args()
    result = measure(args.project, args.rounds, args.base_python)
    base = f" --base-python {args.base_python}" if args.base_python else ""
    result.update(
        machine=machine(), command=f"python bench/overhead.py --project {args.project} --rounds {args.rounds}{base}"
    )
    path = write_results(f"overhead-{args.project}-py{result['test_python']}", result)
    for clock in ("wall", "cpu"):
        for arm, seconds in result[clock]["median_s"].items():
            ratio = result[clock]["ratio_to_plain"][arm]
            ours = result["cpu_ours"]["median_s"][arm]
            print(
                f"{arm:10s} {clock:4s} median {seconds:6.2f} s  ×{ratio:.2f} of plain pytest"
                + (f"  ({ours:.2f} s CPU in tracefix's process)" if clock == "cpu" else "")
            )
    print(f"{result['tests']} test ids; load average {result['machine']['load_average_1_5_15']}; results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
