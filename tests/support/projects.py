"""Small projects written to a directory, and what static selection makes of an edit to one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tracefix.fixing.prompt import FixRequest
from tracefix.index.graph import ProjectIndex
from tracefix.index.pytestconfig import PytestConfig, load
from tracefix.parsing.symbols import diff
from tracefix.selection.select import Changed, select
from tracefix.tracing import Call, Trace


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# pytest imports the project's modules from its root, as an installed package would be
ROOT_ON_PATH = {"pyproject.toml": '[tool.pytest.ini_options]\npythonpath = ["."]\n'}

# A discount off by a factor of ten, and a request to fix it: what the checks beyond the tests (a
# candidate against the version the tests passed with, and on generated inputs) are tried on.
PRICING = '''\
def apply_discount(price, percent):
    """Price after taking `percent` percent off."""
    return price * (1 - percent / 10)
'''
PRICING_GREEN = PRICING.replace("percent / 10)", "percent / 100)")
PRICING_TESTS = """\
from pricing import apply_discount


def test_discount():
    assert apply_discount(200, 25) == 150


def test_no_discount():
    assert apply_discount(80, 0) == 80
"""
PRICING_NODEID = "tests/test_pricing.py::test_discount"
PRICING_LABEL = "pricing.py::apply_discount"


def pricing(root: Path) -> Path:
    return write(root, {"pricing.py": PRICING, "tests/test_pricing.py": PRICING_TESTS, **ROOT_ON_PATH})


def pricing_request(root: Path, **changes: Any) -> FixRequest:
    """The request for apply_discount as the fix job builds it, with `changes` to its fields."""
    fields: dict[str, Any] = dict(
        root=root,
        python=sys.executable,
        path="pricing.py",
        qualname="apply_discount",
        function_source=PRICING,
        function_start_line=1,
        function_end_line=3,
        signature="def apply_discount(price, percent):",
        test_nodeid=PRICING_NODEID,
        test_source=PRICING_TESTS,
        failure_message="assert -300.0 == 150",
        affected_tests=["tests/test_pricing.py::test_no_discount"],
        trace=Trace(
            PRICING_NODEID,
            "failed",
            calls=[Call("pricing.py", "apply_discount", 1, 3, 1, args={"price": "200", "percent": "25"})],
        ),
        inputs={PRICING_LABEL: [{"price": "80", "percent": "0"}]},
    )
    fields.update(changes)
    return FixRequest(**fields)


def index_of(root: Path, config: PytestConfig | None = None) -> ProjectIndex:
    idx = ProjectIndex(root, config or load(root)[0])
    idx.load({})
    return idx


def static_selection(root: Path, rel: str, old: str, new: str) -> dict[str, str]:
    """nodeid → reason of the tests static evidence (all a test with no record has) selects once
    `old` is replaced with `new` in `rel`."""
    idx = index_of(root)
    before = idx.files[rel].facts.symbols
    text = (root / rel).read_text()
    assert old in text
    idx.update(rel, text.replace(old, new, 1).encode())
    changes = [Changed(rel, c.qualname, c.kind, c.what, c.line) for c in diff(before, idx.files[rel].facts.symbols)]
    assert changes
    return {s.nodeid: s.reason for s in select(idx, changes)}
