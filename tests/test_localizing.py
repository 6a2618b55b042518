"""Fault localization: tables of (project facts, failing test) → expected ranking, then the same
on a real project whose helper breaks under a caller's test."""

import asyncio
from pathlib import Path

import pytest

from tracefix.localizing.gather import Localizer
from tracefix.localizing.rank import Evidence, Place, localize, ochiai
from tracefix.localizing.versions import Hunk, Version, revert
from tracefix.project import Project
from tracefix.tracing import Call, Trace

# A layered project: test_checkout → checkout → apply_discount; test_apply_discount → apply_discount;
# test_total → total → (apply_discount, tax).
PLACES = {
    ("shop/checkout.py", "checkout"): Place("shop/checkout.py", "checkout", 6, 8, 6),
    ("shop/checkout.py", "total"): Place("shop/checkout.py", "total", 11, 14, 11),
    ("shop/pricing.py", "apply_discount"): Place("shop/pricing.py", "apply_discount", 6, 8, 6),
    ("shop/pricing.py", "tax"): Place("shop/pricing.py", "tax", 11, 12, 11),
}
CHECKOUT, TOTAL = ("shop/checkout.py", "checkout"), ("shop/checkout.py", "total")
DISCOUNT, TAX = ("shop/pricing.py", "apply_discount"), ("shop/pricing.py", "tax")
EXECUTED = {
    "tests/test_shop.py::test_checkout": frozenset({CHECKOUT, DISCOUNT}),
    "tests/test_shop.py::test_apply_discount": frozenset({DISCOUNT}),
    "tests/test_shop.py::test_total": frozenset({TOTAL, DISCOUNT, TAX}),
    "tests/test_shop.py::test_tax": frozenset({TAX}),
}


def changed(node, line):
    return Version(node, "since the test last passed", "def f(): ...\n", (Hunk(node[0], line, line, ("old\n",)),))


def call(qualname, depth, returned=None, exception=None, path=None, exit_line=None):
    node = next(n for n in PLACES if n[1] == qualname) if path is None else (path, qualname)
    place = PLACES.get(node)
    first, last = (place.start_line, place.end_line) if place else (1, 9)
    return Call(node[0], qualname, first, last, depth, returned=returned, exception=exception, exit_line=exit_line)


def traced(name, *calls):
    return Trace(f"tests/test_shop.py::{name}", "failed", calls=[call(name, 0, path="tests/test_shop.py"), *calls])


CASES = {
    "a helper changed under an unchanged caller": (
        dict(
            nodeid="tests/test_shop.py::test_checkout",
            failing={"tests/test_shop.py::test_checkout"},
            changes={DISCOUNT: changed(DISCOUNT, 8)},
        ),
        ["apply_discount", "checkout"],
    ),
    "the helper made the value the assert got": (
        dict(
            nodeid="tests/test_shop.py::test_checkout",
            failing={"tests/test_shop.py::test_checkout"},
            trace=traced(
                "test_checkout",
                call("checkout", 1, returned="-300.0", exit_line=8),
                call("apply_discount", 2, returned="-300.0", exit_line=8),
            ),
            actual="-300.0",
        ),
        ["apply_discount", "checkout"],
    ),
    "a helper's result fed the caller's last step": (
        dict(
            nodeid="tests/test_shop.py::test_checkout",
            failing={"tests/test_shop.py::test_checkout"},
            trace=traced(
                "test_checkout",
                call("checkout", 1, returned="-360.0", exit_line=8),
                call("apply_discount", 2, returned="-300.0", exit_line=8),
                Call("shop/pricing.py", "tax", 11, 12, 2, args={"amount": "-300.0"}, returned="-360.0", exit_line=12),
            ),
            actual="-360.0",
        ),
        ["apply_discount", "checkout", "tax"],
    ),
    "the caller made the wrong value from a right one": (
        dict(
            nodeid="tests/test_shop.py::test_checkout",
            failing={"tests/test_shop.py::test_checkout"},
            trace=traced(
                "test_checkout",
                call("checkout", 1, returned="15.0", exit_line=8),
                call("apply_discount", 2, returned="150.0", exit_line=8),
            ),
            actual="15.0",
        ),
        ["checkout", "apply_discount"],
    ),
    "the helper raised": (
        dict(
            nodeid="tests/test_shop.py::test_total",
            failing={"tests/test_shop.py::test_total"},
            trace=traced(
                "test_total",
                call("total", 1, exception="ZeroDivisionError: division by zero", exit_line=13),
                call("apply_discount", 2, returned="90.0"),
                call("tax", 2, exception="ZeroDivisionError: division by zero", exit_line=12),
            ),
        ),
        ["tax", "total", "apply_discount"],
    ),
    "executed only by failing tests ranks first (Ochiai)": (
        dict(
            nodeid="tests/test_shop.py::test_total",
            failing={"tests/test_shop.py::test_total", "tests/test_shop.py::test_checkout"},
        ),
        ["apply_discount", "total", "tax"],
    ),
    "a changed caller outranks the unchanged callee that raised": (
        dict(
            nodeid="tests/test_shop.py::test_total",
            failing={"tests/test_shop.py::test_total"},
            changes={TOTAL: changed(TOTAL, 12)},
            trace=traced(
                "test_total",
                call("total", 1, exception="TypeError: bad operand", exit_line=13),
                call("tax", 2, exception="TypeError: bad operand", exit_line=12),
            ),
        ),
        ["total", "tax", "apply_discount"],
    ),
}


@pytest.mark.parametrize("facts, ranking", CASES.values(), ids=CASES.keys())
def test_ranking(facts, ranking):
    evidence = Evidence(places=PLACES, executed=EXECUTED, **{**facts, "failing": frozenset(facts["failing"])})
    assert [s.qualname for s in localize(evidence)] == ranking


def test_evidence_in_words():
    evidence = Evidence(
        nodeid="tests/test_shop.py::test_checkout",
        places=PLACES,
        executed=EXECUTED,
        failing=frozenset({"tests/test_shop.py::test_checkout", "tests/test_shop.py::test_apply_discount"}),
        changes={DISCOUNT: changed(DISCOUNT, 8)},
    )
    top, caller = localize(evidence)
    assert (top.qualname, top.line, top.lines) == ("apply_discount", 8, (8, 6))  # the changed line, and the def line
    assert top.describe() == (
        "changed at shop/pricing.py:8 since the test last passed; "
        "executed by 2 failing and 1 passing tests (Ochiai 0.82)"
    )
    assert caller.qualname == "checkout" and caller.line == 6  # nothing points inside it: its def line


def test_ochiai():
    assert ochiai(2, 0, 2) == 1.0
    assert ochiai(1, 1, 1) == pytest.approx(0.7071, abs=1e-4)
    assert ochiai(0, 3, 2) == 0.0


def test_revert_puts_back_only_the_hunks():
    text = "a\nB\nc\nD\ne\n"
    hunks = [Hunk("f.py", 2, 2, ("b\n",)), Hunk("f.py", 4, 3, ("x\n",))]  # a change, and a removal
    assert revert(text, hunks) == "a\nb\nc\nx\nD\ne\n"


CHECKOUT_PY = '''"""Checkout: what a customer pays for some prices and a coupon."""

from shop.pricing import apply_discount


def checkout(prices, coupon_percent=0):
    subtotal = sum(prices)
    return round(apply_discount(subtotal, coupon_percent), 2)
'''
TEST_CHECKOUT_PY = """from shop.checkout import checkout


def test_checkout():
    assert checkout([120.0, 80.0], 25) == 150.0
"""


def add_checkout(root: Path) -> Path:
    """The example shop with a caller of apply_discount and its test."""
    (root / "shop" / "checkout.py").write_text(CHECKOUT_PY)
    (root / "tests" / "test_checkout.py").write_text(TEST_CHECKOUT_PY)
    return root


def break_discount(root: Path) -> None:
    pricing = root / "shop" / "pricing.py"
    pricing.write_text(pricing.read_text().replace("percent / 100", "percent / 10"))


def test_a_broken_helper_is_blamed_at_the_changed_line_for_a_callers_test(fixed_shop):
    root = add_checkout(fixed_shop)

    async def scenario():
        project = Project(root)
        try:
            project.baseline_everything()
            project.record(await project.run([t.nodeid for t in project.index.tests()]))
            break_discount(root)
            project.file_changed("shop/pricing.py", (root / "shop" / "pricing.py").read_text())
            report = await project.run([t.nodeid for t in project.index.tests()])
            project.record(report)
            [result] = [r for r in report.failed if r.nodeid == "tests/test_checkout.py::test_checkout"]
            suspects = Localizer(project, report.results).suspects(result)
            return suspects, project.diagnostics([result])
        finally:
            project.close()

    suspects, diagnostics = asyncio.run(scenario())
    assert [s.qualname for s in suspects] == ["apply_discount", "checkout"]
    assert suspects[0].evidence[0] == "changed at shop/pricing.py:8 since the test last passed"
    code = [d for d in diagnostics if d.kind == "suspect"]
    assert [(d.path, d.line) for d in code] == [("shop/pricing.py", 8)]  # the changed line, not checkout
    assert not [d for d in diagnostics if d.path == "shop/checkout.py"]
