"""Mutation benchmark: does tracefix run every test a one-line bug breaks, and how much less than all?

For each real project (an unmodified PyPI sdist, committed to git as the baseline):
  1. warm up: `tracefix check --all` and `pytest --testmon` on the baseline; keep both states;
  2. candidate mutants: one-line changes inside function bodies of the package (flipped comparison,
     `and`<->`or`, `+`<->`-`, integer constant + 1, return value -> None), shuffled with a seeded RNG
     (test files shipped inside the package are not mutated);
  3. per mutant: full pytest run (the truth; mutants no test fails, or that loop, are dropped), then
     `tracefix check --format json --no-trace` (changes since the warmed run) and `pytest --testmon`,
     each starting from the warmed state; with --unprimed, `tracefix check` once more with no
     .tracefix at all, as in a fresh clone or a CI job (changes since git HEAD, every test chosen by
     the static name graph); then the file is restored.

A failing test is "missed" when the full run fails it and tracefix does not report it failing.
Mutants no test killed are remembered in bench/results/work/survivors-*.json, so a rerun skips them.

    python bench/mutation.py --project boltons --mutants 50 --seed 1
    python bench/mutation.py --project more-itertools --unprimed --tracefix-timeout 900
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from tracefix.fixing.replies import parses

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PROJECTS,
    WORK,
    RealProject,
    checkout,
    ensure_venv,
    machine,
    timed,
    write_results,
)

FAILING = ("failed", "error", "timeout", "crashed")
STATES = (".tracefix", ".testmondata")  # what each tool keeps between runs, reset before every mutant
SWAPS = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.And: ast.Or,
    ast.Or: ast.And,
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
}


@dataclass(frozen=True)
class Mutant:
    path: str
    line: int  # 1-based
    column: int  # 0-based, in characters
    function: str
    kind: str
    before: str
    after: str

    @property
    def key(self) -> str:
        return f"{self.path}:{self.line}:{self.column}:{self.kind}:{self.after}"

    def apply(self, text: str) -> str:
        lines = text.splitlines(keepends=True)
        line, col = lines[self.line - 1], self.column
        lines[self.line - 1] = line[:col] + self.after + line[col + len(self.before) :]
        return "".join(lines)


# ------------------------------------------------------------------ mutants


def _mutations(node: ast.AST) -> list[tuple[str, ast.AST]]:
    """(kind, replacement) for a node; the replacement is unparsed over the node's own text."""
    found = []
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in SWAPS:
        found.append(("comparison", ast.Compare(node.left, [SWAPS[type(node.ops[0])]()], node.comparators)))
    elif isinstance(node, ast.BoolOp) and type(node.op) in SWAPS:
        found.append(("and/or", ast.BoolOp(SWAPS[type(node.op)](), node.values)))
    elif isinstance(node, ast.BinOp) and type(node.op) in SWAPS:
        found.append(("+/-", ast.BinOp(node.left, SWAPS[type(node.op)](), node.right)))
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        found.append(("constant+1", ast.Constant(node.value + 1)))
    elif (
        isinstance(node, ast.Return)
        and node.value is not None
        and not (isinstance(node.value, ast.Constant) and node.value.value is None)
    ):
        found.append(("return None", ast.Return(ast.Constant(None))))
    return found


def _function_nodes(tree: ast.Module):
    """(qualname, node) for every node in a function body, attributed to the innermost function."""

    def visit(node: ast.AST, prefix: str, function: str | None):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qualname = prefix + child.name
                owner = function if isinstance(child, ast.ClassDef) else qualname
                for stmt in child.body:  # decorators and defaults run at definition, not in the function
                    if owner:
                        yield owner, stmt
                    yield from visit(stmt, qualname + ".", owner)
                continue
            if function:
                yield function, child
            yield from visit(child, prefix, function)

    yield from visit(tree, "", None)


def is_test_file(rel: str) -> bool:
    """Tests shipped inside the package (toolz/tests/...) are not code to mutate."""
    parts = rel.split("/")
    return "tests" in parts[:-1] or parts[-1].startswith("test_") or parts[-1] == "conftest.py"


def candidates(root: Path, package: str) -> list[Mutant]:
    found: dict[tuple[str, int, str], Mutant] = {}
    for file in sorted((root / package).rglob("*.py")):
        rel = file.relative_to(root).as_posix()
        if is_test_file(rel):
            continue
        text = file.read_text(encoding="utf-8")
        lines = text.splitlines()
        tree = ast.parse(text)
        for function, node in _function_nodes(tree):
            if getattr(node, "end_lineno", None) != getattr(node, "lineno", 0):
                continue
            line = lines[node.lineno - 1].encode()  # ast columns count UTF-8 bytes
            before = line[node.col_offset : node.end_col_offset].decode()
            column = len(line[: node.col_offset].decode())
            for kind, replacement in _mutations(node):
                mutant = Mutant(rel, node.lineno, column, function, kind, before, ast.unparse(replacement))
                mutated = mutant.apply(text)
                if mutated != text and parses(mutated):
                    found.setdefault((rel, node.lineno, mutated.splitlines()[node.lineno - 1]), mutant)
    return list(found.values())


# ------------------------------------------------------------------ runs


def pytest_run(project: RealProject, root: Path, *extra: str, timeout: float) -> tuple[float, dict | None]:
    """(wall seconds, {nodeid: outcome}); None outcomes when the run timed out (a looping mutant)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = dict(project.env(root), BENCH_OUTCOMES=out.name)
        argv = [
            str(ensure_venv()),
            "-m",
            "pytest",
            "-q",
            "-p",
            "pytest_outcomes",
            *extra,
        ]  # testmon needs the cache plugin
        try:
            seconds, _ = timed(argv, cwd=root, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:  # a mutant that loops
            return timeout, None
        return seconds, json.loads(Path(out.name).read_text() or "{}")


def tracefix_check(project: RealProject, root: Path, *extra: str) -> tuple[float, dict]:
    argv = [sys.executable, "-m", "tracefix", "check", str(root), "--format", "json", "--no-trace", *extra]
    seconds, proc = timed(argv, env=project.env(root), timeout=600)
    if not proc.stdout.strip():
        raise RuntimeError(f"tracefix check printed nothing: {proc.stderr[-2000:]}")
    return seconds, json.loads(proc.stdout)


def copy_states(source: Path, target: Path) -> None:
    """Replace the tools' state in target with source's (sqlite's -wal/-shm files included)."""
    for name in STATES:
        for old in target.glob(name + "*"):
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        for path in source.glob(name + "*"):
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, target / path.name)


def remove_state(root: Path) -> None:
    """No tracefix state at all, as in a fresh clone."""
    for path in root.glob(".tracefix*"):
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def failing(outcomes: dict) -> set[str]:
    return {n for n, o in outcomes.items() if o in FAILING}


def measure(
    project: RealProject, wanted: int, seed: int, max_tries: int, unprimed: bool, tracefix_timeout: float | None
) -> dict:
    root = checkout(project, "mutation", tracefix_timeout)
    keep = Path(tempfile.mkdtemp(prefix=f"bench-{project.name}-"))
    full_seconds, baseline = pytest_run(project, root, timeout=600)
    tracefix_check(project, root, "--all")
    pytest_run(project, root, "--testmon", timeout=600)
    copy_states(root, keep)
    broken_before = failing(baseline)  # flaky or environment-dependent tests: not a mutant's doing
    timeout = max(60.0, 10 * full_seconds)
    pool = candidates(root, project.package)
    random.Random(seed).shuffle(pool)
    # mutants no test kills do not depend on tracefix: a rerun skips their full runs
    survivors_file = WORK / f"survivors-{project.name}-{project.version}.json"
    survivors = set(json.loads(survivors_file.read_text())) if survivors_file.exists() else set()
    print(
        f"{project.name}: {len(baseline)} tests, {len(broken_before)} failing at baseline, "
        f"full run {full_seconds:.1f} s, {len(pool)} candidate mutants",
        flush=True,
    )
    rows, screened = [], 0
    for mutant in pool[:max_tries]:
        if len(rows) >= wanted:
            break
        screened += 1
        if mutant.key in survivors:
            continue
        file = root / mutant.path
        original = file.read_text(encoding="utf-8")
        file.write_text(mutant.apply(original), encoding="utf-8")
        try:
            full_s, truth = pytest_run(project, root, timeout=timeout)
            broken = failing(truth or {}) - broken_before
            if not broken:
                survivors.add(mutant.key)
                survivors_file.write_text(json.dumps(sorted(survivors)))
                continue
            copy_states(keep, root)
            tf_s, report = tracefix_check(project, root)
            copy_states(keep, root)
            tm_s, testmon = pytest_run(project, root, "--testmon", timeout=timeout)
            if unprimed:
                remove_state(root)
                fresh = tracefix_check(project, root)
        finally:
            file.write_text(original, encoding="utf-8")
        rows.append(_row(mutant, truth, broken, full_s, tf_s, report, tm_s, testmon))
        r = rows[-1]
        if unprimed:
            r["tracefix_unprimed"] = _tracefix(broken, *fresh)
        print(
            f"  {len(rows):3d} {mutant.path}:{mutant.line} {mutant.kind:12s} failing {len(broken):3d} "
            f"tracefix ran {r['tracefix']['ran']:4d} missed {len(r['tracefix']['missed'])} "
            f"{tf_s:5.1f} s | testmon ran {r['testmon']['ran']:4d} missed {len(r['testmon']['missed'])} "
            f"{tm_s:5.1f} s | full {full_s:5.1f} s"
            + (
                f" | unprimed ran {r['tracefix_unprimed']['ran']:4d} "
                f"missed {len(r['tracefix_unprimed']['missed'])} {fresh[0]:5.1f} s"
                if unprimed
                else ""
            ),
            flush=True,
        )
    shutil.rmtree(keep)
    return {
        "project": f"{project.name}=={project.version}",
        "tests": len(baseline),
        "failing_at_baseline": sorted(broken_before),
        "full_run_s": round(full_seconds, 2),
        "candidates": len(pool),
        "screened": screened,
        "summary": summarize(rows, len(baseline)),
        "mutants": rows,
    }


def _row(mutant, truth, broken, full_s, tf_s, report, tm_s, testmon) -> dict:
    testmon = testmon or {}
    return {
        "mutant": asdict(mutant),
        "failing": sorted(broken),
        "full_s": round(full_s, 3),
        "tracefix": _tracefix(broken, tf_s, report),
        "testmon": {"s": round(tm_s, 3), "ran": len(testmon), "missed": sorted(broken - failing(testmon))},
    }


def _tracefix(broken: set[str], seconds: float, report: dict) -> dict:
    results = {r["nodeid"]: r["outcome"] for r in report["results"] if r["outcome"] != "not run"}
    selected = set(report["selected"])
    missed = sorted(broken - failing(results))
    return {
        "s": round(seconds, 3),
        "ran": len(results),
        "selected": len(selected),
        "status": report["status"],
        "changed": [f"{c['path']}::{c['symbol']}" for c in report["changed"]],
        "missed": missed,
        # a miss is either selection (the test was never chosen) or reporting (chosen, not seen failing)
        "missed_unselected": [n for n in missed if n.split("[")[0] not in selected],
    }


def summarize(rows: list[dict], suite: int) -> dict:
    if not rows:
        return {"mutants": 0}

    def tool(key: str) -> dict:
        ran = [r[key]["ran"] / suite for r in rows]
        speedup = [r["full_s"] / r[key]["s"] for r in rows]
        return {
            "missed_failing_tests": sum(len(r[key]["missed"]) for r in rows),
            "mutants_with_a_miss": sum(bool(r[key]["missed"]) for r in rows),
            "share_run_median": round(statistics.median(ran), 4),
            "share_run_mean": round(statistics.fmean(ran), 4),
            "mutants_skipping_80pct": sum(x <= 0.2 for x in ran),
            "wall_s_median": round(statistics.median(r[key]["s"] for r in rows), 3),
            "speedup_vs_full_median": round(statistics.median(speedup), 2),
        }

    summary = {
        "mutants": len(rows),
        "failing_tests": sum(len(r["failing"]) for r in rows),
        "full_wall_s_median": round(statistics.median(r["full_s"] for r in rows), 3),
        "tracefix": tool("tracefix"),
        "testmon": tool("testmon"),
    }
    for key in ("tracefix", "tracefix_unprimed"):
        if key in rows[0]:
            summary[key] = tool(key)
            summary[key]["missed_unselected"] = sum(len(r[key]["missed_unselected"]) for r in rows)
    return summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--project", action="append", choices=sorted(PROJECTS), help="project to mutate (repeatable; default: all)"
    )
    p.add_argument("--mutants", type=int, default=50, help="killed mutants wanted per project")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-tries", type=int, default=300, help="candidates screened at most per project")
    p.add_argument(
        "--unprimed", action="store_true", help="also run tracefix check with no .tracefix, as in a fresh clone"
    )
    p.add_argument(
        "--tracefix-timeout",
        type=float,
        metavar="SECONDS",
        help="tracefix's run timeout (default 120 s), written to the checkout's pyproject.toml",
    )
    args = p.parse_args()
    for name in args.project or sorted(PROJECTS):
        result = measure(PROJECTS[name], args.mutants, args.seed, args.max_tries, args.unprimed, args.tracefix_timeout)
        options = (" --unprimed" if args.unprimed else "") + (
            f" --tracefix-timeout {args.tracefix_timeout:g}" if args.tracefix_timeout else ""
        )
        result.update(
            machine=machine(),
            command=f"python bench/mutation.py --project {name} --mutants {args.mutants} --seed {args.seed}{options}",
        )
        path = write_results(f"mutation-{name}", result)
        print(json.dumps(result["summary"], indent=2))
        print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
