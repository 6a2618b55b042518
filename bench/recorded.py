"""What keeping each test's recorded dependencies costs, on a real project primed by a run of
every test (`tracefix check --all`): the store's size, reading it (`Project.recorded()` in a new
Project, as a `tracefix check` or a server start does), and per save: concluding a run of one test
(mapping and storing its record) and the selection right after it, which used to read every
record again. Timed in-process through Project's own calls, so any tracefix version can be
measured: run it with that version importable.

    python bench/recorded.py --project tomlkit --runs 10
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

from common import PROJECTS, checkout, ensure_venv, machine, write_results
from mutation import tracefix_check
from tracefix.project import Project


def cpu_ms(action) -> tuple[float, object]:
    started = time.process_time()
    value = action()
    return (time.process_time() - started) * 1000, value


def measure(name: str, runs: int) -> dict:
    project = PROJECTS[name]
    root = checkout(project, "recorded")
    os.environ.update(project.env(root, ensure_venv().parent.parent))
    _, _, report = tracefix_check(project, root, "--all")  # priming: every test's record
    store = root / ".tracefix" / "index.sqlite"
    tracefix = Project(root)
    load_ms, _ = cpu_ms(tracefix.recorded)
    tests = [t.nodeid for t in tracefix.index.tests()][:runs]
    conclude, select = [], []
    for nodeid in tests:
        plan = tracefix.plan([nodeid])
        result = asyncio.run(tracefix.execute(plan))
        ms, _ = cpu_ms(lambda plan=plan, result=result: tracefix.conclude(plan, result))
        conclude.append(ms)
        ms, _ = cpu_ms(lambda: tracefix.select([]))
        select.append(ms)
    tracefix.close()
    return {
        "project": f"{project.name}=={project.version}",
        "items": len(report["results"]),
        "store_mb": round(store.stat().st_size / 1e6, 2),
        "load_ms": round(load_ms, 1),
        "runs": len(tests),
        "conclude_ms_median": round(statistics.median(conclude), 1),
        "select_after_run_ms_median": round(statistics.median(select), 1),
        "conclude_ms": [round(x, 1) for x in conclude],
        "select_after_run_ms": [round(x, 1) for x in select],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--project", default="tomlkit", choices=sorted(PROJECTS))
    p.add_argument("--runs", type=int, default=10, help="one-test runs to conclude and select after")
    args = p.parse_args()
    result = measure(args.project, args.runs)
    result.update(machine=machine(), command=f"python bench/recorded.py --project {args.project} --runs {args.runs}")
    path = write_results(f"recorded-{args.project}", result)
    print(
        f"{result['project']}: {result['items']} items, store {result['store_mb']} MB; CPU: read the records "
        f"{result['load_ms']} ms; per one-test run, median: conclude {result['conclude_ms_median']} ms, "
        f"select right after {result['select_after_run_ms_median']} ms; results: {path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
