"""Project-level repair benchmark: a helper is broken, and the fix is asked for at a failing test
that does not call the helper directly (test_checkout → checkout → apply_discount).

Cases: mutants in helpers of real PyPI projects (toolz, more-itertools) and of small layered toy
projects. For each, the failing test is the first one whose direct callee (the function its
failing assert calls) is not the mutated function.

Arms, same model server, same call budget:
  tracefix          what `tracefix check --fix` does for that test (fixing.jobs.fix_test) when the
                    bug is older than anything tracefix saw pass (no history, no git): localize
                    from the recorded runs and the trace, rewrite suspects, verify, check beyond
                    the tests; offers only a verified fix.
  tracefix-history  the same after tracefix saw the suite pass before the mutation: it may offer
                    the revert of the blamed change (no model call) and checks candidates against
                    the version the tests passed with.
  baseline          one shot told the failing test's callee: "fix `checkout` in shop/checkout.py",
                    with the file, the test and pytest's output; replies until one parses, offered
                    unverified. Its budget is the model calls tracefix made on the case.

Measured per arm: fixes whose full test suite passes, fixes that edit the mutated function,
"verified" offers whose full suite fails (wrong verified), model calls, tokens, wall time.

    TRACEFIX_LLAMA_PYTHON=.llmvenv/bin/python python bench/project_repair.py --model qwen-coder-1.5b
    python bench/project_repair.py --table bench/results/project-repair-<date>.json
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common import sdist
from repair_common import Bench, add_arguments, ask_baseline, parse_args, run_main
from tracefix.fixing.jobs import FixError, build_request, fix_test
from tracefix.parsing.document import parse
from tracefix.parsing.symbols import outline
from tracefix.project import Project
from tracefix.reporting.diagnostics import called_symbol
from tracefix.running.results import RAISED, TestResult
from tracefix.settings import LLMSettings

SUITE_TIMEOUT = 300.0

# ---------------------------------------------------------------- projects and cases

TOYS: dict[str, dict[str, str]] = {
    "shop": {
        "shop/__init__.py": "",
        "shop/pricing.py": '''"""Prices and discounts."""


def apply_discount(price, percent):
    """Price after taking `percent` percent off."""
    return price * (1 - percent / 100)


def with_tax(amount, rate=0.2):
    return round(amount * (1 + rate), 2)
''',
        "shop/checkout.py": '''"""What a customer pays."""

from shop.pricing import apply_discount, with_tax


def checkout(prices, coupon_percent=0):
    """The total of the prices after the coupon, with tax."""
    subtotal = sum(prices)
    return with_tax(apply_discount(subtotal, coupon_percent))
''',
        "tests/test_checkout.py": """from shop.checkout import checkout
from shop.pricing import with_tax


def test_checkout():
    assert checkout([120.0, 80.0], 25) == 180.0


def test_checkout_without_coupon():
    assert checkout([10.0]) == 12.0


def test_with_tax():
    assert with_tax(100.0) == 120.0
""",
    },
    "stats": {
        "stats/__init__.py": "",
        "stats/windows.py": '''"""Sliding windows over a list of numbers."""


def window_sums(values, size):
    """The sum of each run of `size` consecutive values."""
    return [sum(values[i : i + size]) for i in range(len(values) - size + 1)]


def moving_average(values, size):
    """The mean of each run of `size` consecutive values."""
    return [total / size for total in window_sums(values, size)]
''',
        "tests/test_windows.py": """from stats.windows import moving_average


def test_moving_average():
    assert moving_average([1, 2, 3, 4], 2) == [1.5, 2.5, 3.5]


def test_moving_average_whole():
    assert moving_average([2, 4, 6], 3) == [4.0]
""",
    },
    "text": {
        "text/__init__.py": "",
        "text/clean.py": '''"""Cleaning titles."""


def normalize_spaces(text):
    """Runs of whitespace become one space; none at either end."""
    return " ".join(text.split())


def strip_punctuation(text):
    return "".join(c for c in text if c.isalnum() or c.isspace() or c == "-")
''',
        "text/slug.py": '''"""URL slugs."""

from text.clean import normalize_spaces, strip_punctuation


def slugify(title):
    """'  Hello,  World! ' -> 'hello-world'."""
    return normalize_spaces(strip_punctuation(title)).lower().replace(" ", "-")
''',
        "tests/test_slug.py": """from text.slug import slugify


def test_slugify():
    assert slugify("  Hello,   World! ") == "hello-world"


def test_slugify_keeps_hyphens():
    assert slugify("Tracefix - a test loop") == "tracefix---a-test-loop"
""",
    },
    "inventory": {
        "inventory/__init__.py": "",
        "inventory/stock.py": '''"""Stock levels."""


def stock_after(levels, orders):
    """The levels once the orders (item -> quantity) are shipped."""
    left = dict(levels)
    for item, quantity in orders.items():
        left[item] = left.get(item, 0) - quantity
    return left


def restock_needed(levels, orders, minimum):
    """Items that fall below `minimum` once the orders ship, sorted."""
    return sorted(item for item, count in stock_after(levels, orders).items() if count < minimum)
''',
        "tests/test_stock.py": """from inventory.stock import restock_needed


def test_restock_needed():
    assert restock_needed({"pen": 10, "ink": 3}, {"pen": 8}, 5) == ["ink", "pen"]


def test_nothing_to_restock():
    assert restock_needed({"pen": 10}, {}, 5) == []
""",
    },
}


@dataclass(frozen=True)
class Real:
    name: str
    version: str
    tests: str  # the test directory, relative to the checkout


REAL = {
    "toolz": Real("toolz", "1.0.0", "toolz/tests"),
    "more-itertools": Real("more-itertools", "10.5.0", "tests"),
}


@dataclass(frozen=True)
class Case:
    name: str
    project: str  # a TOYS or REAL key
    path: str
    function: str  # the mutated function's qualname
    old: str
    new: str


CASES = [
    Case("shop-discount", "shop", "shop/pricing.py", "apply_discount", "percent / 100", "percent / 10"),
    Case("shop-discount-sign", "shop", "shop/pricing.py", "apply_discount", "(1 - percent", "(1 + percent"),
    Case("stats-window", "stats", "stats/windows.py", "window_sums", "len(values) - size + 1", "len(values) - size"),
    Case(
        "stats-window-slice",
        "stats",
        "stats/windows.py",
        "window_sums",
        "values[i : i + size]",
        "values[i : i + size - 1]",
    ),
    Case("text-spaces", "text", "text/clean.py", "normalize_spaces", "text.split()", 'text.split(" ")'),
    Case(
        "inventory-stock",
        "inventory",
        "inventory/stock.py",
        "stock_after",
        "left.get(item, 0) - quantity",
        "left.get(item, 0) + quantity",
    ),
    Case("toolz-tail", "toolz", "toolz/itertoolz.py", "tail", "return seq[-n:]", "return seq[-n - 1:]"),
    Case(
        "toolz-get",
        "toolz",
        "toolz/itertoolz.py",
        "_get",
        "    except (KeyError, IndexError):\n        return default",
        "    except (KeyError, IndexError):\n        return None",
    ),
    Case(
        "toolz-merge-sorted",
        "toolz",
        "toolz/itertoolz.py",
        "_merge_sorted_binary",
        "if val2 < val1:",
        "if val2 > val1:",
    ),
    Case(
        "more-itertools-take",
        "more-itertools",
        "more_itertools/recipes.py",
        "take",
        "return list(islice(iterable, n))",
        "return list(islice(iterable, max(n - 1, 0)))",
    ),
    Case(
        "more-itertools-consume",
        "more-itertools",
        "more_itertools/recipes.py",
        "consume",
        "next(islice(iterator, n, n), None)",
        "next(islice(iterator, n + 1, n + 1), None)",
    ),
]


def materialize(project: str, directory: Path) -> Path:
    """A fresh copy of the project, without git or tracefix history."""
    if project in TOYS:
        for rel, text in TOYS[project].items():
            (directory / rel).parent.mkdir(parents=True, exist_ok=True)
            (directory / rel).write_text(text)
        (directory / "pyproject.toml").write_text('[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
        return directory
    real = REAL[project]
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(sdist(real.name, real.version)) as tar:
        tar.extractall(tmp, filter="data")
        [top] = Path(tmp).iterdir()
        shutil.copytree(top, directory)
    return directory


def mutate(case: Case, root: Path) -> None:
    target = root / case.path
    text = target.read_text()
    if text.count(case.old) != 1:
        raise ValueError(f"{case.name}: {case.old!r} is not in {case.path} exactly once")
    target.write_text(text.replace(case.old, case.new))


def function_source(text: str, qualname: str) -> str | None:
    data = text.encode()
    for symbol in outline(parse(data), data):
        if symbol.qualname == qualname:
            return "".join(text.splitlines(keepends=True)[symbol.start_line - 1 : symbol.end_line])
    return None


def suite(python: str, root: Path, tests: str) -> tuple[bool, str]:
    """(every test passes, pytest's last line) for the whole suite."""
    try:
        proc = subprocess.run(
            [python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", tests],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=SUITE_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return False, f"timed out after {SUITE_TIMEOUT:g} s"
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    return proc.returncode == 0, last


def tests_of(project: str) -> str:
    return REAL[project].tests if project in REAL else "tests"


# ---------------------------------------------------------------- arms


@dataclass
class Offer:
    texts: dict[str, str] = field(default_factory=dict)  # path → offered file text; {} when nothing is offered
    verified: bool = False
    calls: int = 0
    tokens: int = 0
    seconds: float = 0.0
    check_seconds: float = 0.0  # of seconds, in the checks beyond the tests (differential, property)
    note: str = ""
    target: str = ""  # the function the arm aimed at first
    suite_pass: bool | None = None
    suite: str = ""
    right_function: bool | None = None


@dataclass
class Context:
    case: Case
    root: Path
    project: Project
    result: TestResult  # the failing test the fix is asked for
    failing: list[TestResult]
    output: str  # pytest's output for that test
    settings: LLMSettings
    budget: int


async def tracefix_arm(ctx: Context) -> Offer:
    started = time.monotonic()
    offer = Offer()
    try:
        fix = await fix_test(ctx.project, ctx.result, {}, failing=ctx.failing)
    except FixError as exc:
        offer.note = str(exc)[:300]
        offer.target = exc.suspects[0].qualname if exc.suspects else ""
        if exc.outcome is not None:
            offer.calls, offer.tokens = exc.outcome.model_calls, exc.outcome.tokens_in + exc.outcome.tokens_out
    else:
        offer.target = fix.suspects[0].qualname if fix.suspects else ""
        offer.calls, offer.tokens = fix.outcome.model_calls, fix.outcome.tokens_in + fix.outcome.tokens_out
        offer.check_seconds = round(fix.outcome.check_time, 1)
        offer.note = fix.evidence[:300]
        if fix.verified:  # the product offers only what it verified
            offer.texts, offer.verified = {f.path: f.after for f in fix.files}, True
    offer.seconds = round(time.monotonic() - started, 1)
    return offer


async def baseline_arm(ctx: Context) -> Offer:
    """Fix the failing test's callee, as a developer who reads the test would ask."""
    started = time.monotonic()
    offer = Offer()
    called = called_symbol(ctx.project.index, ctx.result, ctx.project.root)
    symbol = ctx.project.index.symbol(called.path, called.function) if called else None
    if symbol is None:
        offer.note = "the failing assert calls no project function"
        return offer
    offer.target = symbol.qualname
    request = build_request(ctx.project, called.path, symbol, nodeid=ctx.result.nodeid, texts={}, result=ctx.result)
    test_path = ctx.result.nodeid.split("::")[0]
    test = request.test_source or (ctx.root / test_path).read_text()
    reply = await ask_baseline(request, test_path, test, ctx.output.strip()[-3000:], ctx.settings, ctx.budget)
    offer.calls, offer.tokens = reply.calls, reply.tokens
    if reply.candidate:
        offer.texts = dict(reply.candidate.texts)
    offer.note = "offered (unverified)" if offer.texts else "; ".join(reply.rejected)[:300] or "no usable reply"
    offer.seconds = round(time.monotonic() - started, 1)
    return offer


ARMS = {"tracefix": tracefix_arm, "tracefix-history": tracefix_arm, "baseline": baseline_arm}


# ---------------------------------------------------------------- running


def pick(project: Project, failed: list[TestResult], case: Case) -> TestResult | None:
    """The first failing test whose failing assert calls something other than the mutated function."""
    for r in failed:
        called = called_symbol(project.index, r, project.root)
        if r.outcome in RAISED and (called is None or called.function != case.function):
            return r
    return None


def pytest_output(python: str, root: Path, nodeid: str) -> str:
    proc = subprocess.run(
        [python, "-m", "pytest", "-q", "--tb=short", "--no-header", "-p", "no:cacheprovider", nodeid],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT,
    )
    return proc.stdout + proc.stderr


async def prepare(case: Case, arm: str, directory: Path, args, settings: LLMSettings, budget: int):
    """The mutated copy an arm works on, its Project, and the failing test to fix."""
    root = materialize(case.project, directory)
    llm = {"model": settings.model, "baseUrl": settings.base_url, "timeout": settings.timeout}
    llm |= {"candidates": settings.candidates, "rounds": settings.rounds, "temperature": settings.temperature}
    project = Project(root, {"python": args.python, "timeout": 120, "llm": llm})
    if arm == "tracefix-history":  # tracefix watched the suite pass before the helper broke
        project.baseline_everything()
        project.record(await project.run([t.nodeid for t in project.index.tests()]))
    mutate(case, root)
    project.file_changed(case.path, (root / case.path).read_text())
    report = await project.run([t.nodeid for t in project.index.tests()])
    project.record(report)
    result = pick(project, report.failed, case)
    return root, project, report, result


async def run_case(case: Case, args, settings: LLMSettings, workdir: Path) -> dict:
    row: dict = {"case": case.name, "project": case.project, "function": case.function, "arms": {}}
    budget = args.calls
    for arm in args.arms:
        root, project, report, result = await prepare(case, arm, workdir / case.name / arm, args, settings, budget)
        try:
            if result is None:
                row["skipped"] = f"no failing test whose assert calls another function than {case.function}"
                return row
            row["test"], row["failing"] = result.nodeid, len(report.failed)
            others = [r for r in report.failed if r.nodeid != result.nodeid]
            ctx = Context(
                case, root, project, result, others, pytest_output(args.python, root, result.nodeid), settings, budget
            )
            offer = await ARMS[arm](ctx)
        except Exception as exc:
            offer = Offer(note=f"error: {type(exc).__name__}: {exc}"[:300])
        finally:
            project.close()
        if arm == "tracefix":
            budget = max(offer.calls, 1)  # the baseline may spend what tracefix spent, no more
        if offer.texts:
            before = function_source((root / case.path).read_text(), case.function)
            for path, text in offer.texts.items():
                (root / path).write_text(text)
            offer.suite_pass, offer.suite = suite(args.python, root, tests_of(case.project))
            after = function_source((root / case.path).read_text(), case.function)
            offer.right_function = case.path in offer.texts and after is not None and after != before
        row["arms"][arm] = asdict(offer)
        print(
            f"{case.name:>24} {arm:>16}: target={offer.target or '-':<22} verified={offer.verified!s:<5} "
            f"suite={offer.suite_pass} right={offer.right_function} calls={offer.calls} tokens={offer.tokens} "
            f"{offer.seconds:.0f}s {offer.note[:80]}",
            flush=True,
        )
    return row


def summarize(rows: list[dict], arms: list[str]) -> dict:
    attempted = [r for r in rows if "skipped" not in r]
    summary: dict = {
        "cases": len(rows),
        "attempted": len(attempted),
        "skipped": {r["case"]: r["skipped"] for r in rows if "skipped" in r},
    }
    for arm in arms:
        offers = [r["arms"][arm] for r in attempted if arm in r["arms"]]
        offered = [o for o in offers if o["texts"]]
        summary[arm] = {
            "attempted": len(offers),
            "offered": len(offered),
            "suite_pass": sum(bool(o["suite_pass"]) for o in offered),
            "right_function": sum(bool(o["right_function"]) for o in offered),
            "wrong_verified": sum(o["verified"] and not o["suite_pass"] for o in offered),
            "targeted_mutated": sum(o["target"] == r["function"] for r, o in zip(attempted, offers, strict=False)),
            "calls": sum(o["calls"] for o in offers),
            "tokens": sum(o["tokens"] for o in offers),
            "seconds": round(sum(o["seconds"] for o in offers), 1),
        }
    return summary


def markdown(summary: dict, arms: list[str]) -> str:
    lines = [
        '| arm | cases | offered | full suite passes | edits the mutated function | wrong "verified" '
        "| first target = mutated function | model calls | tokens | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arm in arms:
        s = summary[arm]
        lines.append(
            f"| {arm} | {s['attempted']} | {s['offered']} | {s['suite_pass']} | {s['right_function']} | "
            f"{s['wrong_verified']} | {s['targeted_mutated']} | {s['calls']} | {s['tokens']} | {s['seconds']:.0f} |"
        )
    for case, reason in summary["skipped"].items():
        lines.append(f"\nNot attempted, {case}: {reason}")
    return "\n".join(lines)


BENCH = Bench(
    "project_repair",
    "cases",
    tuple(ARMS),
    ("candidates", "rounds", "temperature", "n_ctx", "threads"),
    900.0,
    summarize,
    markdown,
)


def arguments(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", help="comma-separated case names (default: all): " + ",".join(c.name for c in CASES))
    add_arguments(p, BENCH, candidates=2, rounds=2)
    args = parse_args(p, argv, BENCH)
    if args.table:
        return args
    names = args.cases.split(",") if args.cases else [c.name for c in CASES]
    if unknown := set(names) - {c.name for c in CASES}:
        p.error(f"unknown cases {sorted(unknown)}")
    args.cases = [c for c in CASES if c.name in names]
    return args


def main(argv: list[str] | None = None) -> None:
    run_main(BENCH, arguments(sys.argv[1:] if argv is None else argv), run_case)


if __name__ == "__main__":
    main()
