"""Static recall: does the static name graph (all that selects a test with no record) reach every
test that really runs a function?

Per project: a checkout of the sdist, primed with `tracefix check --all --no-trace`, which records
the code each test ran. Then for every function, method and class of the package that some test ran
(a node), the tests the static graph says can reach the node (what a change to it would select on a
first run) are compared with the tests that ran it. A pair (node, test that ran it) the graph does not
reach is *missed*. The share of the suite's test functions each selects is the price: static (the
graph) against recorded (the tests that ran the node, what a primed run selects at best).

    python bench/static_recall.py --project toolz --tracefix-timeout 900
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PROJECTS, RealProject, checkout, machine, write_results
from mutation import is_test_file, tracefix_check
from tracefix.index import pytestconfig
from tracefix.index.graph import ProjectIndex
from tracefix.index.store import Store
from tracefix.parsing.symbols import MODULE
from tracefix.selection.recorded import Recorded


def measure(project: RealProject, tracefix_timeout: float | None) -> dict:
    root = checkout(project, "static-recall", tracefix_timeout)
    _, _, report = tracefix_check(project, root, "--all")
    store = Store(root)
    index = ProjectIndex(root, pytestconfig.load(root)[0])
    index.load(store.load_files())
    recorded = Recorded.load(*store.deps())
    store.close()
    tests = {t.nodeid for t in index.tests()}
    ran_by: dict[tuple[str, str], set[str]] = {}
    for nodeid, items in recorded.tests.items():
        for item in items:
            for version, _, _ in recorded.items[item].entries():
                known = recorded.versions[version]
                if known is not None:
                    ran_by.setdefault(known[0], set()).add(nodeid)
    rows = []
    for node, users in sorted(ran_by.items()):
        path, qualname = node
        if qualname == MODULE or path not in index.files or is_test_file(path) or index.test_code(path):
            continue
        reached = set(index.tests_reaching({node}))
        users &= tests
        rows.append(
            {
                "node": f"{path}::{qualname}",
                "ran": len(users),
                "reached": len(reached),
                "missed": sorted(users - reached),
            }
        )
    suite = len(tests)
    return {
        "project": f"{project.name}=={project.version}",
        "priming": {"status": report["status"], "summary": report["summary"]},
        "test_functions": suite,
        "recorded": len(recorded.tests),
        "summary": {
            "nodes": len(rows),
            "pairs": sum(r["ran"] for r in rows),
            "missed_pairs": sum(len(r["missed"]) for r in rows),
            "nodes_with_a_miss": sum(bool(r["missed"]) for r in rows),
            "static_share_median": round(statistics.median(r["reached"] / suite for r in rows), 4),
            "static_share_mean": round(statistics.fmean(r["reached"] / suite for r in rows), 4),
            "recorded_share_median": round(statistics.median(r["ran"] / suite for r in rows), 4),
            "recorded_share_mean": round(statistics.fmean(r["ran"] / suite for r in rows), 4),
        },
        "misses": [r for r in rows if r["missed"]],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--project", action="append", choices=sorted(PROJECTS), help="repeatable; default: all")
    p.add_argument(
        "--tracefix-timeout",
        type=float,
        metavar="SECONDS",
        help="tracefix's run timeout (default 120 s), written to the checkout's pyproject.toml",
    )
    args = p.parse_args()
    for name in args.project or sorted(PROJECTS):
        result = measure(PROJECTS[name], args.tracefix_timeout)
        timeout = f" --tracefix-timeout {args.tracefix_timeout:g}" if args.tracefix_timeout else ""
        result.update(machine=machine(), command=f"python bench/static_recall.py --project {name}{timeout}")
        path = write_results(f"static-recall-{name}", result)
        print(name, result["summary"], f"results: {path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
