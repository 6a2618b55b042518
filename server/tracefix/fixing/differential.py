"""Checks a candidate must pass besides the tests, so that "verified" does not only mean "the
failing test passes now": the rewritten function against the version under which its tests last
passed, on the inputs passing tests gave it and on inputs hypothesis generates from those values'
types (differential); without such a version, the rewritten function alone on those inputs (the
same answer twice, no exception the original did not raise); and a guard against rewrites that
branch on the failing test's own literals.

The functions run in the shadow copy's sandbox (tracefix_differ), never in this process; only
the inputs are made here. Budget: one process per checked function, at most SECONDS each.
"""

from __future__ import annotations

import ast
import json
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from tracefix.fixing.prompt import Baseline
from tracefix.fixing.replies import Rewrite
from tracefix.fixing.shadow import Shadow
from tracefix.running.plugin import tracefix_records as records
from tracefix.tracing import Trace

GENERATED = 200  # inputs generated per function
SECONDS = 10.0  # for one function's calls, both versions
TRIVIAL = {0, 1, -1, 2, None, ""}  # constants any code compares with


@dataclass
class Checked:
    """What the checks found for one candidate."""

    ok: bool = True
    words: list[str] = field(default_factory=list)  # what verified it, for the offer
    problem: str = ""  # why it is not verified
    agreeing: int = 0  # inputs outside the failing test's on which it agrees with the baseline


def calls_of(traces: list[Trace], path: str, qualname: str) -> list[dict[str, str]]:
    """The arguments (name → repr) of each recorded call of a function, without repeats."""
    found: dict[str, dict[str, str]] = {}
    for trace in traces:
        for call in trace.calls:
            if (call.path, call.qualname) == (path, qualname) and call.args:
                found.setdefault(json.dumps(call.args, sort_keys=True), dict(call.args))
    return list(found.values())


def _literal(text: str) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, None


def generate(samples: list[dict[str, str]], count: int = GENERATED) -> list[dict[str, str]]:
    """Up to count argument sets (name → repr) drawn by hypothesis from the types of the sampled
    values (and the samples themselves); [] when no sample value is a literal."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    names = list(dict.fromkeys(name for args in samples for name in args))
    values: dict[str, list[Any]] = {name: [] for name in names}
    for args in samples:
        for name, text in args.items():
            ok, value = _literal(text)
            if ok:
                values[name].append(value)
    if not names or not all(values.values()):
        return []
    strategies = {
        name: st.one_of(st.sampled_from(seen), *{_strategy(v) for v in seen}) for name, seen in values.items()
    }
    drawn: dict[str, dict[str, str]] = {}

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.fixed_dictionaries(strategies))
    def collect(args: dict[str, Any]) -> None:
        shown = {name: repr(args[name]) for name in names}
        drawn.setdefault(json.dumps(shown), shown)

    collect()
    # the smallest first, so a difference is shown on the simplest input that has one
    return sorted(drawn.values(), key=lambda args: sum(len(text) for text in args.values()))[:count]


def _strategy(value: Any):  # -> SearchStrategy; hypothesis is imported lazily
    from hypothesis import strategies as st

    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(min_value=-1000, max_value=1000)
    if isinstance(value, float):
        return st.floats(min_value=-1000, max_value=1000, allow_nan=False)
    if isinstance(value, str):
        return st.text(max_size=12)
    if isinstance(value, bytes):
        return st.binary(max_size=12)
    if isinstance(value, (list, set, frozenset)):
        items = st.one_of(*{_strategy(v) for v in value}) if value else st.integers(-100, 100)
        kind: Any = {list: st.lists, set: st.sets, frozenset: st.frozensets}[type(value)]
        return kind(items, max_size=6)
    if isinstance(value, tuple):
        return st.tuples(*(_strategy(v) for v in value))
    if isinstance(value, dict) and value:
        key, item = next(iter(value.items()))
        return st.dictionaries(_strategy(key), _strategy(item), max_size=5)
    return st.just(value)


def special_cases(rewritten: str, original: str, test_source: str, failing: list[dict[str, str]]) -> list[str]:
    """The failing test's literals that the rewrite newly compares with in a condition: a fix that
    recognises the test's input instead of fixing the logic."""
    test_values = _constants(test_source)
    for args in failing:
        for text in args.values():
            ok, value = _literal(text)
            if ok:
                test_values.add(_key(value))
    new = _tested(rewritten) - _tested(original)
    return sorted(repr(value) for kind, value in new if (kind, value) in test_values and value not in TRIVIAL)


def _key(value: Any) -> tuple[str, Any]:
    return (type(value).__name__, value) if isinstance(value, (int, float, str, bytes)) else ("", None)


def _constants(source: str) -> set[tuple[str, Any]]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {_key(n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant)}


def _tested(source: str) -> set[tuple[str, Any]]:
    """Constants in the function's conditions: if/while/ternary tests, comparisons, match cases."""
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return set()
    found: set[tuple[str, Any]] = set()
    for node in ast.walk(tree):
        parts: list[ast.AST] = []
        if isinstance(node, (ast.If, ast.IfExp, ast.While)):
            parts.append(node.test)
        elif isinstance(node, ast.Compare):
            parts.append(node)
        elif isinstance(node, ast.match_case):
            parts.append(node.pattern)
        for part in parts:
            found |= {_key(n.value) for n in ast.walk(part) if isinstance(n, ast.Constant)}
    return found


def _when(baseline: Baseline) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(baseline.at)) if baseline.at else "git HEAD"


def _call(rewrite: Rewrite, args: dict[str, str]) -> str:
    name = rewrite.qualname.rsplit(".", 1)[-1]
    return f"{name}({', '.join(f'{k}={v}' for k, v in args.items())})"


async def check(
    shadow: Shadow,
    rewrite: Rewrite,
    *,
    original: str,
    baseline: Baseline | None,
    recorded: list[dict[str, str]],
    failing: list[dict[str, str]],
    timeout: float,
) -> Checked:
    """Run the rewritten function (already written in the shadow) against the baseline, or alone."""
    if "." in rewrite.qualname:
        return Checked(words=[f"{rewrite.qualname}: methods are not checked on other inputs"])
    seen = {json.dumps(a, sort_keys=True) for a in failing}
    mine = [a for a in recorded if json.dumps(a, sort_keys=True) not in seen]
    generated = [a for a in generate(recorded + failing) if json.dumps(a, sort_keys=True) not in seen]
    if not mine and not generated:
        return Checked(words=[f"{rewrite.qualname}: no recorded inputs to check other behaviour on"])
    inputs = [{"args": a, "failing": True} for a in failing]
    inputs += [{"args": a, "failing": False} for a in mine + generated]
    payload = {
        "path": rewrite.path,
        "qualname": rewrite.qualname,
        "baseline": baseline.source if baseline else None,
        "original": original,
        "inputs": inputs,
        "seconds": SECONDS,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=shadow.dir, delete=False) as f:
        json.dump(payload, f)
    try:
        result = await shadow.execute(["-m", "tracefix_differ", f.name], timeout=min(timeout, SECONDS + 20))
    finally:
        Path(f.name).unlink(missing_ok=True)
    found = next((r for r in result.records if r.get("kind") == records.DIFFERENTIAL), None)
    record = cast(records.Differential, found) if found is not None else None
    if record is None or "error" in record:
        # the tests passed, so this says nothing against the candidate; the offer says it was not checked
        why = record["error"] if record else (result.output.strip().splitlines() or ["no answer"])[-1]
        return Checked(words=[f"{rewrite.qualname} could not be run on other inputs ({why})"])
    other = max(record["checked"] - len(failing), 0)
    counts = f"{other} other inputs ({len(generated)} generated, {len(mine)} recorded)"
    if baseline is not None:
        if record["differ"]:
            first = record["differ"][0]
            return Checked(
                ok=False,
                problem=(
                    f"changes behaviour elsewhere: {_call(rewrite, first['args'])} gives {first['candidate']}, "
                    f"the version of {_when(baseline)} (tests passing) gives {first['baseline']}"
                ),
            )
        return Checked(words=[f"{counts} agree with the version of {_when(baseline)}"], agreeing=other)
    if record["flaky"]:
        first = record["flaky"][0]
        return Checked(ok=False, problem=f"not deterministic: {_call(rewrite, first['args'])} gives different answers")
    if record["raises"]:
        first = record["raises"][0]
        return Checked(
            ok=False,
            problem=f"{_call(rewrite, first['args'])} {first['candidate']} where the original gave {first['baseline']}",
        )
    return Checked(words=[f"{counts}: the same answer twice, no exception the original did not raise"])
