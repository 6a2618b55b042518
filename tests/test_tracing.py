"""Tracing: real pytest runs of small projects under the tracefix_trace plugin."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import version_of
from tracefix.running.process import Limits
from tracefix.tracing import Block, Call, Trace, capture, lines_in

AVERAGE = """\
def average(xs):
    total = 0
    for i in range(len(xs) - 1):
        total += xs[i]
    return total / len(xs)


def mean_of(xs):
    return average(xs)
"""

AVERAGE_TEST = """\
from calc import mean_of


def test_mean():
    assert mean_of([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) == 5.5
"""

CHURN = """\
def churn(n):
    total = 0
    seen = []
    for i in range(n):
        if i % 2:
            total += i
        else:
            seen.append(i)
    return total // (n - n)
"""


def plugin_module():
    return importlib.import_module("tracefix.running.plugin.tracefix_trace")


async def run_trace(
    python: str, root: Path, files: dict[str, str], nodeid: str, timeout: float = 60, limits: Limits | None = None
) -> Trace:
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    return await capture(root, python, nodeid, timeout=timeout, limits=limits)


def labels(call: Call) -> list[str]:
    return [block.label for block in call.blocks]


def only(trace: Trace, qualname: str) -> Call:
    [call] = [c for c in trace.calls if c.qualname == qualname]
    return call


async def test_off_by_one_loop_through_helper(python, tmp_path):
    trace = await run_trace(
        python, tmp_path, {"calc.py": AVERAGE, "test_calc.py": AVERAGE_TEST}, "test_calc.py::test_mean"
    )

    assert trace.error is None
    assert trace.outcome == "failed"
    assert "assert 4.5 == 5.5" in trace.exception
    assert [(c.qualname, c.path, c.depth) for c in trace.calls] == [
        ("test_mean", "test_calc.py", 0),
        ("mean_of", "calc.py", 1),
        ("average", "calc.py", 2),
    ]
    average = only(trace, "average")
    assert (average.first_line, average.last_line) == (1, 5)
    assert average.args == {"xs": "[1, 2, 3, 4, 5, 6, ...]"}
    assert (average.returned, average.exception, average.exit_line) == ("4.5", None, 5)
    # nine iterations plus the header's last check: the first, seven condensed, the last two
    assert average.blocks == [
        Block(2, 2, {"total": "0"}),
        Block(3, 3, {"i": "0"}),
        Block(4, 4, {"total": "1"}),
        Block(3, 4, {"i": "7", "total": "36"}, "…×7 iterations"),
        Block(3, 3, {"i": "8"}),
        Block(4, 4, {"total": "45"}),
        Block(3, 3, {}),
        Block(5, 5, {}),
    ]
    test_call = only(trace, "test_mean")
    assert test_call.exception.startswith("AssertionError: assert 4.5 == 5.5")
    assert test_call.exit_line == 5

    assert trace.values_at("calc.py", 4) == [("xs", "[1, 2, 3, 4, 5, 6, ...]"), ("total", "45"), ("i", "8")]
    assert trace.values_at("calc.py", 1) == [("xs", "[1, 2, 3, 4, 5, 6, ...]")]
    assert trace.values_at("calc.py", 9) == [("xs", "[1, 2, 3, 4, 5, 6, ...]")]
    assert trace.values_at("test_calc.py", 1) == []

    text = trace.render()
    for expected in (
        "Trace of test_calc.py::test_mean (failed)",
        "average(xs=[1, 2, 3, 4, 5, 6, ...]) at calc.py:1",
        "[block L4] total=45",
        "[…×7 iterations L3-L4] i=7 total=36",
        "returned 4.5",
        "raised AssertionError: assert 4.5 == 5.5 at L5",
    ):
        assert expected in text

    # with the source, each block shows its code beside what it set; a raising block stops at the raise
    code = trace.render(source=lines_in(tmp_path))
    for expected in (
        "  [L2] total = 0  # total=0",
        "  [L4] total += xs[i]  # total=45",
        "[…×7 iterations L3-L4] i=7 total=36",
        "  [L5] return total / len(xs)",
    ):
        assert expected in code
    assert code.count("[L3] for i in range(len(xs) - 1):") == 3


async def test_exception_inside_loop_keeps_the_raising_block(python, tmp_path):
    files = {
        "parse.py": """\
            def parse_all(items):
                out = []
                for item in items:
                    out.append(int(item))
                return out
            """,
        "test_parse.py": """\
            from parse import parse_all

            def test_parse():
                assert parse_all(["1", "2", "3", "4", "5", "x", "7"]) == [1, 2, 3, 4, 5, 6, 7]
            """,
    }
    trace = await run_trace(python, tmp_path, files, "test_parse.py::test_parse")

    call = only(trace, "parse_all")
    assert call.exception == "ValueError: invalid literal for int() with base 10: 'x'"
    assert call.exit_line == 4
    assert labels(call)[-4:] == ["[block L3]", "[block L4]", "[block L3]", "[block L4]"]
    assert call.blocks[-2].changed == {"item": "'x'"}
    assert trace.values_at("parse.py", 4) == [
        ("items", "['1', '2', '3', '4', '5', 'x', ...]"),
        ("out", "[1, 2, 3, 4, 5]"),
        ("item", "'x'"),
    ]
    assert "raised ValueError: invalid literal for int() with base 10: 'x' at L4" in trace.render()


BLOCK_PATHS = [
    pytest.param(
        """\
        def count(limit):
            n = 0
            while True:
                n += 1
                if n >= limit:
                    break
            return n
        """,
        "count(4) == 5",
        "count",
        [
            "[block L2]",
            "[block L3]",
            "[block L4]",
            "[block L5]",
            "[…×1 iteration L3-L6]",
            "[block L3]",
            "[block L4]",
            "[block L5]",
            "[block L3]",
            "[block L4]",
            "[block L5]",
            "[block L6]",
            "[block L7]",
        ],
        id="while-true-break",
    ),
    pytest.param(
        """\
        def safe_div(a, b):
            try:
                q = a / b
            except ZeroDivisionError:
                q = None
            return q
        """,
        "safe_div(1, 0) == 0",
        "safe_div",
        ["[block L3]", "[block L4]", "[block L5]", "[block L6]"],
        id="handled-exception",
    ),
    pytest.param(
        """\
        def evens(n):
            for i in range(n):
                if i % 2 == 0:
                    yield i

        def total(n):
            return sum(evens(n))
        """,
        "total(3) == 3",
        "evens",
        [
            "[block L2]",
            "[block L3]",
            "[block L4]",
            "[block L2]",
            "[block L3]",
            "[block L2]",
            "[block L3]",
            "[block L4]",
            "[block L2]",
        ],
        id="generator-one-invocation",
    ),
    pytest.param(
        """\
        import asyncio

        async def fetch(n):
            await asyncio.sleep(0)
            return n * 2
        """,
        "asyncio.run(fetch(5)) == 11",
        "fetch",
        ["[block L4-L5]"],  # resuming after the await continues the block
        id="coroutine-await",
    ),
    pytest.param(
        """\
        def grade(score):
            if score >= 90:
                return "A"
            elif score >= 80:
                return "B"
            return "C"
        """,
        "grade(85) == 'A'",
        "grade",
        ["[block L2]", "[block L4]", "[block L5]"],
        id="elif",
    ),
    pytest.param(
        """\
        def grid(n):
            cells = 0
            for row in range(n):
                for col in range(n):
                    cells += 1
            return cells
        """,
        "grid(4) == 15",
        "grid",
        [
            "[block L2]",
            "[block L3]",
            "[block L4]",
            "[block L5]",
            "[…×2 iterations L4-L5]",
            "[block L4]",
            "[block L5]",
            "[block L4]",
            "[…×2 iterations L3-L5]",
            "[block L3]",
            "[block L4]",
            "[block L5]",
            "[…×2 iterations L4-L5]",
            "[block L4]",
            "[block L5]",
            "[block L4]",
            "[block L3]",
            "[block L6]",
        ],
        id="nested-loops",
    ),
]


# Python 3.9 compiles `while True:` away: its line never runs
PATHS_BEFORE_310 = {
    BLOCK_PATHS[0].values[0]: [
        "[block L2]",
        "[block L4]",
        "[block L5]",
        "[…×1 iteration L3-L6]",
        "[block L4]",
        "[block L5]",
        "[block L4]",
        "[block L5]",
        "[block L6]",
        "[block L7]",
    ]
}


@pytest.mark.parametrize("source, check, qualname, expected", BLOCK_PATHS)
async def test_block_paths(python, tmp_path, source, check, qualname, expected):
    files = {"mod.py": source, "test_mod.py": f"from mod import *\n\ndef test_it():\n    assert {check}\n"}
    trace = await run_trace(python, tmp_path, files, "test_mod.py::test_it")
    if version_of(python) < (3, 10):
        expected = PATHS_BEFORE_310.get(source, expected)

    assert trace.outcome == "failed"
    assert labels(only(trace, qualname)) == expected


async def test_handled_exception_is_not_a_raise(python, tmp_path):
    files = {
        "mod.py": BLOCK_PATHS[1].values[0],
        "test_mod.py": "from mod import safe_div\n\ndef test_it():\n    assert safe_div(1, 0) == 0\n",
    }
    trace = await run_trace(python, tmp_path, files, "test_mod.py::test_it")

    call = only(trace, "safe_div")
    assert (call.returned, call.exception) == ("None", None)
    assert call.blocks[2].changed == {"q": "None"}


async def test_recursion_keeps_first_invocations_and_the_deepest(python, tmp_path):
    files = {
        "rec.py": """\
            def depth(n):
                if n == 0:
                    raise RecursionError("bottom")
                return 1 + depth(n - 1)
            """,
        "test_rec.py": "from rec import depth\n\ndef test_depth():\n    assert depth(10) == 10\n",
    }
    trace = await run_trace(python, tmp_path, files, "test_rec.py::test_depth")

    calls = [c for c in trace.calls if c.qualname == "depth"]
    assert [(c.index, c.depth, c.args["n"]) for c in calls] == [(1, 1, "10"), (2, 2, "9"), (3, 3, "8"), (11, 11, "0")]
    assert all(c.exception == "RecursionError: bottom" for c in calls)
    assert calls[-1].exit_line == 3
    assert trace.values_at("rec.py", 2) == [("n", "0")]  # the invocation that raised first


async def test_qualnames_of_methods_nested_and_decorated_functions(python, tmp_path):
    files = {
        "shapes.py": """\
            import functools

            def logged(fn):
                @functools.wraps(fn)
                def wrapper(*args):
                    return fn(*args)
                return wrapper

            class Box:
                def __init__(self, side):
                    self.side = side

                @logged
                def area(self):
                    def square(x):
                        return x * x
                    return square(self.side)
            """,
        "test_shapes.py": "from shapes import Box\n\ndef test_area():\n    assert Box(3).area() == 10\n",
    }
    trace = await run_trace(python, tmp_path, files, "test_shapes.py::test_area")

    assert [(c.qualname, c.first_line, c.returned) for c in trace.calls] == [
        ("test_area", 3, None),
        ("Box.__init__", 10, "None"),
        ("logged.<locals>.wrapper", 4, "9"),
        ("Box.area", 13, "9"),
        ("Box.area.<locals>.square", 15, "9"),
    ]


async def test_huge_loop_stays_bounded(python, tmp_path):
    test = "from big import churn\n\ndef test_churn():\n    assert churn(1_000_000) == 0\n"
    files = {"big.py": CHURN, "test_big.py": test}
    trace = await run_trace(python, tmp_path, files, "test_big.py::test_churn")

    assert trace.error is None
    assert trace.truncated
    assert len(json.dumps(trace.to_dict())) < 20_000
    call = only(trace, "churn")
    assert call.exception == "ZeroDivisionError: integer division or modulo by zero"
    assert any(block.note == "… step budget reached; later blocks not traced" for block in call.blocks)
    # without line events the raising block is still recorded, with the final values
    assert call.blocks[-1] == Block(9, 9, {"total": "250000000000", "i": "999999"})
    assert ("i", "999999") in trace.values_at("big.py", 9)
    assert trace.values_at("big.py", 1) == [("n", "1000000")]

    text = trace.render(max_chars=700)
    assert len(text) <= 700
    assert "raised ZeroDivisionError: integer division or modulo by zero at L9" in text
    assert "[block L9] total=250000000000 i=999999" in text
    assert "lines omitted" in text


HANGS = [
    pytest.param("import time\n\ndef test_hang():\n    time.sleep(60)\n", False, id="sleeping"),
    pytest.param("def test_hang():\n    x = 0\n    while True:\n        x += 1\n", True, id="spinning"),
]


@pytest.mark.parametrize("test_source, partial", HANGS)
async def test_hanging_test_times_out_with_an_error(python, tmp_path, test_source, partial):
    trace = await run_trace(python, tmp_path, {"test_hang.py": test_source}, "test_hang.py::test_hang", timeout=4)

    assert trace.error.startswith("tracing did not finish in 4 s")
    assert trace.outcome is None
    assert bool(trace.calls) == partial
    if partial:  # the spinning loop ran into the step budget, which wrote what it had
        assert "step budget" in trace.error
        assert trace.values_at("test_hang.py", 4)[0][0] == "x"
    assert trace.render().splitlines()[1] == f"error: {trace.error}"


async def test_a_test_stopped_at_its_cpu_limit_is_a_timeout(python, tmp_path):
    # on an idle machine a spinning test may reach the CPU limit before the wall-clock timeout
    trace = await run_trace(
        python,
        tmp_path,
        {"test_hang.py": HANGS[1].values[0]},
        "test_hang.py::test_hang",
        limits=Limits(timeout=60, cpu_seconds=1),
    )

    assert trace.error.startswith("tracing used up its CPU time limit")
    assert trace.outcome is None


async def test_unknown_test_reports_why(python, tmp_path):
    trace = await run_trace(python, tmp_path, {"test_a.py": "def test_a():\n    pass\n"}, "test_a.py::test_missing")

    assert trace.calls == []
    assert trace.error.startswith("pytest exited with code 4 without running test_a.py::test_missing")
    assert "not found" in trace.error


async def test_passing_test_and_json_round_trip(python, tmp_path):
    trace = await run_trace(
        python,
        tmp_path,
        {
            "calc.py": AVERAGE,
            "test_ok.py": ("from calc import average\n\ndef test_ok():\n    assert average([2, 2]) == 1\n"),
        },
        "test_ok.py::test_ok",
    )

    assert (trace.outcome, trace.exception, trace.error) == ("passed", None, None)
    assert only(trace, "average").returned == "1.0"
    assert Trace.from_dict(json.loads(json.dumps(trace.to_dict()))) == trace


def test_render_keeps_raising_blocks_when_shrinking():
    filler = [Block(line, line, {"v": str(line) * 20}) for line in range(2, 60)]
    trace = Trace(
        "t.py::test_x",
        "failed",
        "AssertionError",
        calls=[
            Call("m.py", "busy", 1, 60, depth=1, blocks=filler, returned="0"),
            Call(
                "m.py",
                "boom",
                70,
                80,
                depth=1,
                blocks=[Block(71, 72, {"a": "1"}), Block(73, 73, {"b": "2"})],
                exception="KeyError: 'k'",
                exit_line=73,
            ),
        ],
    )
    full = trace.render(max_chars=100_000)
    small = trace.render(max_chars=500)

    assert "[block L59]" in full and len(full) > 500
    assert len(small) <= 500
    for kept in ("boom() at m.py:70", "[block L71-L72] a=1", "[block L73] b=2", "raised KeyError: 'k' at L73"):
        assert kept in small
    assert "[block L2] " not in small
    assert "lines omitted" in small


SPLITS = [
    pytest.param(
        """\
        def f(x):
            '''Doc.'''
            a = 1
            b = (x +
                 a)
            if b:
                return b
            return 0
        """,
        [(3, 5), (6, 6), (7, 7), (8, 8)],
        id="docstring-multiline-if",
    ),
    pytest.param(
        """\
        def f(items):
            for i in items: print(i)
            with open(
                    "p") as fh:
                data = fh.read()
                return data
        """,
        [(2, 2), (3, 4), (5, 6)],
        id="one-line-loop-with",
    ),
    pytest.param(
        """\
        def f(x):
            try:
                y = 1 / x
            except (ZeroDivisionError,
                    TypeError) as e:
                y = 0
            else:
                y += 1
            finally:
                x = None
            def g():
                return 1
            return y
        """,
        [(3, 3), (4, 5), (6, 6), (8, 8), (10, 10), (11, 13)],
        id="try-nested-def",
    ),
]


@pytest.mark.parametrize("source, blocks", SPLITS)
def test_blocks_of_a_function(source, blocks):
    tracer = plugin_module()
    node = ast.parse(textwrap.dedent(source)).body[0]
    plan = tracer.Plan("m.py", "f", node)

    assert plan.blocks == blocks


def test_record_drops_blocks_of_calls_that_did_not_raise_first():
    tracer = plugin_module()
    block = {"start_line": 1, "end_line": 1, "changed": {"x": "1"}, "note": ""}
    calls = [
        {"exception": None, "blocks": [block] * 3000},
        {"exception": None, "blocks": [block] * 3000},
        {"exception": "KeyError: 1", "blocks": [block] * 3000},
    ]
    record = json.loads(tracer._bounded({"kind": "trace", "truncated": False, "calls": calls}))

    assert record["truncated"]
    assert [len(call["blocks"]) for call in record["calls"]] == [0, 0, 3000]


def test_backend_matches_the_interpreter():
    tracer = plugin_module()
    backend = tracer._backend(tracer.Recorder(tracer.Scope(".")))

    expected = tracer.Monitor if sys.version_info >= (3, 12) else tracer.SetTrace
    assert type(backend) is expected


class Cart:
    def __init__(self):
        self.items = [("apple", 2)]
        self.discount = 0
        self._cache = {}


class Empty:
    pass


class Pair:
    __slots__ = ("_secret", "left", "right")

    def __init__(self, left):
        self.left = left  # right is never set


class Node:
    def __init__(self):
        self.value = 1
        self.next = self


class Wide:
    def __init__(self):
        for name in "abcdefghij":
            setattr(self, name, 0)


class Hostile:
    def __getattribute__(self, name):
        if name == "__class__":  # isinstance() asks for it, pytest's plugins call isinstance()
            return object.__getattribute__(self, name)
        raise RuntimeError(name)


class Lazy:
    def __init__(self):
        self.ready = True

    @property
    def broken(self):
        raise RuntimeError("never read")


class BadRepr:
    def __repr__(self):
        raise ValueError("no")


class Legacy:
    def __repr__(self):
        return object.__repr__(self)


@dataclasses.dataclass
class Point:
    x: int
    y: int
    cache: dict = dataclasses.field(default_factory=dict, repr=False)


@dataclasses.dataclass
class Named:
    name: str

    def __repr__(self):
        return f"<{self.name}>"


def helper():
    pass


def recursive_list():
    items = [1]
    items.append(items)
    return items


REPRS = {
    "an object with the default repr": (Cart(), "Cart(items=[('apple', 2)], discount=0)"),
    "no public attributes": (Empty(), "Empty()"),
    "a slots class, one slot unset": (Pair(3), "Pair(left=3)"),
    "a dataclass, its repr=False field left out": (Point(1, 2), "Point(x=1, y=2)"),
    "a dataclass with a repr of its own": (Named("n"), "<n>"),
    "a huge string field": (
        Point("x" * 10_000, 0),
        "Point(x='xxxxxxxxxxxxxxxxxxxxxxxxxxx...xxxxxxxxxxxxxxxxxxxxxxxxxxxx', y=0)",
    ),
    "an object that refers to itself": (
        Node(),
        "Node(value=1, next=Node(value=1, next=Node(value=1, next=Node(...))))",
    ),
    "a list that holds itself": (recursive_list(), "[1, [1, [1, [...]]]]"),
    "many attributes": (Wide(), "Wide(a=0, b=0, c=0, d=0, e=0, f=0, ...)"),
    "attribute access raises": (Hostile(), "<Hostile object>"),
    "a property is not read": (Lazy(), "Lazy(ready=True)"),
    "a repr that raises": (BadRepr(), "<BadRepr, repr failed: ValueError>"),
    "a repr with an address": (Legacy(), "<test_tracing.Legacy object>"),
    "a function": (helper, "<function helper>"),
    "objects in a list": ([Empty(), Pair(1)], "[Empty(), Pair(left=1)]"),
    "a huge string": ("y" * 10_000, "'yyyyyyyyyyyyyyyyyyyyyyyyyyy...yyyyyyyyyyyyyyyyyyyyyyyyyyyy'"),
}


@pytest.mark.parametrize("value, expected", REPRS.values(), ids=REPRS.keys())
def test_reprs_are_bounded_and_free_of_addresses(value, expected):
    assert plugin_module()._safe_repr(value) == expected


SHOP_OBJECTS = """\
import dataclasses


class Cart:
    def __init__(self):
        self.items = []

    def add(self, price, quantity):
        self.items.append((price, quantity))


@dataclasses.dataclass
class Line:
    price: float
    quantity: int


def total(cart):
    lines = [Line(p, q) for p, q in cart.items]
    return sum(line.price for line in lines)
"""

SHOP_OBJECTS_TEST = """\
from shop_objects import Cart, total


def test_total():
    cart = Cart()
    cart.add(10.0, 2)

    cart.add(1.0, 10)
    assert total(cart) == 30.0
"""


async def test_traced_objects_show_their_class_and_attributes(python, tmp_path):
    files = {"shop_objects.py": SHOP_OBJECTS, "test_shop_objects.py": SHOP_OBJECTS_TEST}
    trace = await run_trace(python, tmp_path, files, "test_shop_objects.py::test_total")
    text = trace.render(source=lines_in(tmp_path))

    assert "0x" not in text
    assert "total(cart=Cart(items=[(10.0, 2), (1.0, 10)])) at shop_objects.py:18" in text
    assert "lines=[Line(price=10.0, quantity=2), Line(price=1.0, quantity=10)]" in text
    # one entry per source line; a name's value sits on the last line that mentions it
    test_lines = text[text.index("test_total() at") :].splitlines()[1:5]
    assert test_lines == [
        "  [L5] cart = Cart()",
        "  [L6] cart.add(10.0, 2)",
        "  [L8] cart.add(1.0, 10)",
        "  [L9] assert total(cart) == 30.0  # cart=Cart(items=[(10.0, 2), (1.0, 10)])",
    ]
