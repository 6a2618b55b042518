"""Mutation benchmark: does tracefix run every test a one-line bug breaks, and how much less than all?

For each real project (an unmodified PyPI sdist, committed to git as the baseline):
  1. warm up: `tracefix check --all` and `pytest --testmon` on the baseline; keep both states;
  2. candidate mutants: one-line changes inside function bodies of the package (flipped comparison,
     `and`<->`or`, `+`<->`-`, integer constant + 1, return value -> None), shuffled with a seeded RNG
     (test files shipped inside the package are not mutated);
  3. per mutant: full pytest run (the truth; mutants no test fails, or that loop, are dropped), then
     `tracefix check --format json --no-trace` (changes since the warmed run) and `pytest --testmon`,
     each starting from the warmed state; then the file is restored.

A failing test is "missed" when the full run fails it and tracefix does not report it failing.
Mutants no test killed are remembered in bench/results/work/survivors-*.json, so a rerun skips them.

    python bench/mutation.py --project boltons --mutants 50 --seed 1
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
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

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
    write_source,
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


def parses(text: str) -> bool:
    try:
        ast.parse(text)
    except SyntaxError:
        return False
    return True


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


def pytest_run(project: RealProject, root: Path, *extra: str, timeout: float) -> tuple[float, float, dict | None]:
    """(wall s, CPU s, {nodeid: outcome}); None outcomes when the run timed out (a looping mutant)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = dict(project.env(root, bytecode=True), BENCH_OUTCOMES=out.name)
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
            wall, cpu, _ = timed(argv, cwd=root, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:  # a mutant that loops
            return timeout, 0.0, None
        return wall, cpu, json.loads(Path(out.name).read_text() or "{}")


def tracefix_check(project: RealProject, root: Path, *extra: str, trace: bool = False) -> tuple[float, float, dict]:
    """(wall s, CPU s, the JSON report) of `python -m tracefix check` in a subprocess: no imports of
    tracefix's modules here, so the benchmarks survive their moving around."""
    ensure_venv()  # the tests' interpreter (project.env's VIRTUAL_ENV), not tracefix's own
    argv = [
        sys.executable,
        "-m",
        "tracefix",
        "check",
        str(root),
        "--format",
        "json",
        *([] if trace else ["--no-trace"]),
        *extra,
    ]
    wall, cpu, proc = timed(argv, env=project.env(root), timeout=600)
    if not proc.stdout.strip():
        raise RuntimeError(f"tracefix check printed nothing (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return wall, cpu, json.loads(proc.stdout)


def copy_states(source: Path, target: Path) -> None:
    """Replace the tools' state in target with source's (sqlite's -wal/-shm files included); an
    empty source leaves target as a fresh clone has it: no state at all."""
    for name in STATES:
        for old in target.glob(name + "*"):
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        for path in source.glob(name + "*"):
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, target / path.name)


def failing(outcomes: dict) -> set[str]:
    return {n for n, o in outcomes.items() if o in FAILING}


def reported(report: dict) -> dict[str, str]:
    """{nodeid: outcome} of the tests a tracefix report ran (parametrized cases one by one)."""
    return {r["nodeid"]: r["outcome"] for r in report["results"] if r["outcome"] != "not run"}


@dataclass
class Primed:
    """A checkout of the baseline and, in `keep`, each tool's state after its first full run."""

    root: Path
    keep: Path
    baseline: dict[str, str]  # {nodeid: outcome} of the full pytest run
    full_s: float
    priming: dict  # how each tool's first full run went: a run cut short leaves tests unrecorded
    screened: int = 0  # candidates killed() went through

    @property
    def broken_before(self) -> set[str]:  # flaky or environment-dependent tests: not a mutant's doing
        return failing(self.baseline)


def prime(project: RealProject, purpose: str, tracefix_timeout: float | None = None) -> Primed:
    root = checkout(project, purpose, tracefix_timeout)
    keep = Path(tempfile.mkdtemp(prefix=f"bench-{project.name}-"))
    full_s, _, baseline = pytest_run(project, root, timeout=600)
    if not baseline:  # screening would take every mutant for a survivor
        raise RuntimeError(f"{project.name}: the full pytest run at baseline reported no test")
    tf_s, _, report = tracefix_check(project, root, "--all")
    tm_s, _, testmon = pytest_run(project, root, "--testmon", timeout=600)
    copy_states(root, keep)
    outcomes = list(reported(report).values())
    priming = {
        "tracefix_s": round(tf_s, 2),
        "tracefix_status": report["status"],
        "tracefix_message": report.get("message", ""),
        "tracefix_summary": report["summary"],
        "tracefix_not_run": len(report["results"]) - len(outcomes),
        "tracefix_failing": sum(o in FAILING for o in outcomes),
        "testmon_s": round(tm_s, 2),
        "testmon_ran": len(testmon or {}),
    }
    return Primed(root, keep, baseline, full_s, priming)


def killed(
    project: RealProject, primed: Primed, pool: list[Mutant], wanted: int, max_tries: int
) -> Iterator[tuple[Mutant, float, dict, set[str]]]:
    """Screen pool in order; yield (mutant, full run wall s, its outcomes, tests it broke) for the
    first `wanted` mutants some test kills, each applied to its file until the caller asks for the
    next. Mutants no test kills do not depend on tracefix: remembered in
    bench/results/work/survivors-*.json, so a rerun skips their full runs."""
    survivors_file = WORK / f"survivors-{project.name}-{project.version}.json"
    survivors = set(json.loads(survivors_file.read_text())) if survivors_file.exists() else set()
    timeout = max(60.0, 10 * primed.full_s)
    found = 0
    for screened, mutant in enumerate(pool[:max_tries], 1):
        if found >= wanted:
            return
        primed.screened = screened
        if mutant.key in survivors:
            continue
        file = primed.root / mutant.path
        original = file.read_text(encoding="utf-8")
        write_source(file, mutant.apply(original))
        try:
            full_s, _, truth = pytest_run(project, primed.root, timeout=timeout)
            broken = failing(truth or {}) - primed.broken_before
            if not broken:
                survivors.add(mutant.key)
                survivors_file.write_text(json.dumps(sorted(survivors)))
                continue
            found += 1
            yield mutant, full_s, truth, broken
        finally:
            write_source(file, original)


def shuffled_candidates(project: RealProject, primed: Primed, seed: int) -> list[Mutant]:
    pool = candidates(primed.root, project.package)
    random.Random(seed).shuffle(pool)
    return pool


def measure(project: RealProject, wanted: int, seed: int, max_tries: int) -> dict:
    primed = prime(project, "mutation")
    root, keep = primed.root, primed.keep
    pool = shuffled_candidates(project, primed, seed)
    print(
        f"{project.name}: {len(primed.baseline)} tests, {len(primed.broken_before)} failing at baseline, "
        f"full run {primed.full_s:.1f} s, {len(pool)} candidate mutants",
        flush=True,
    )
    rows = []
    for mutant, full_s, truth, broken in killed(project, primed, pool, wanted, max_tries):
        copy_states(keep, root)
        tf_s, _, report = tracefix_check(project, root)
        copy_states(keep, root)
        tm_s, _, testmon = pytest_run(project, root, "--testmon", timeout=max(60.0, 10 * primed.full_s))
        rows.append(_row(mutant, truth, broken, full_s, tf_s, report, tm_s, testmon))
        r = rows[-1]
        print(
            f"  {len(rows):3d} {mutant.path}:{mutant.line} {mutant.kind:12s} failing {len(broken):3d} "
            f"tracefix ran {r['tracefix']['ran']:4d} missed {len(r['tracefix']['missed'])} "
            f"{tf_s:5.1f} s | testmon ran {r['testmon']['ran']:4d} missed {len(r['testmon']['missed'])} "
            f"{tm_s:5.1f} s | full {full_s:5.1f} s",
            flush=True,
        )
    shutil.rmtree(keep)
    return {
        "project": f"{project.name}=={project.version}",
        "tests": len(primed.baseline),
        "failing_at_baseline": sorted(primed.broken_before),
        "full_run_s": round(primed.full_s, 2),
        "priming": primed.priming,
        "candidates": len(pool),
        "screened": primed.screened,
        "summary": summarize(rows, len(primed.baseline)),
        "mutants": rows,
    }


def _row(mutant, truth, broken, full_s, tf_s, report, tm_s, testmon) -> dict:
    tf_results = reported(report)
    selected = set(report["selected"])
    tf_missed = sorted(broken - failing(tf_results))
    testmon = testmon or {}
    return {
        "mutant": asdict(mutant),
        "failing": sorted(broken),
        "full_s": round(full_s, 3),
        "tracefix": {
            "s": round(tf_s, 3),
            "ran": len(tf_results),
            "selected": len(selected),
            "changed": [f"{c['path']}::{c['symbol']}" for c in report["changed"]],
            "missed": tf_missed,
            # a miss is either selection (the test was never chosen) or reporting (chosen, not seen failing)
            "missed_unselected": [n for n in tf_missed if n.split("[")[0] not in selected],
        },
        "testmon": {"s": round(tm_s, 3), "ran": len(testmon), "missed": sorted(broken - failing(testmon))},
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
    summary["tracefix"]["missed_unselected"] = sum(len(r["tracefix"]["missed_unselected"]) for r in rows)
    return summary


def mutant_arguments(p: argparse.ArgumentParser, mutants: int) -> None:
    """Which projects, and how many of their mutants (`mutants` by default) from which seed."""
    p.add_argument(
        "--project", action="append", choices=sorted(PROJECTS), help="project to mutate (repeatable; default: all)"
    )
    p.add_argument("--mutants", type=int, default=mutants, help="killed mutants wanted per project")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-tries", type=int, default=300, help="candidates screened at most per project")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mutant_arguments(p, mutants=50)
    args = p.parse_args()
    for name in args.project or sorted(PROJECTS):
        result = measure(PROJECTS[name], args.mutants, args.seed, args.max_tries)
        result.update(
            machine=machine(),
            command=" ".join(
                ["python bench/mutation.py", f"--project {name}", f"--mutants {args.mutants}", f"--seed {args.seed}"]
            ),
        )
        path = write_results(f"mutation-{name}", result)
        print(json.dumps(result["summary"], indent=2))
        print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
