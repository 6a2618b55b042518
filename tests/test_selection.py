"""Selection v1: changed symbols → tests, each with its reason."""

from pathlib import Path

import pytest
from tests.support.projects import index_of, static_selection, write

from conftest import baselined
from tracefix.project import Project
from tracefix.selection.select import Changed, explain_skipped, select


@pytest.fixture
def project(shop: Path):
    with baselined(shop) as p:
        yield p


def edit(project: Project, rel: str, old: str, new: str) -> list[Changed]:
    text = (project.root / rel).read_text()
    assert old in text
    return project.changes_in(rel, text.replace(old, new, 1))


CASES = [
    # (file, old, new, tests expected, a word from the reason)
    (
        "shop/pricing.py",
        "return price * (1 - percent / 100)",
        "return price",
        {
            "tests/test_pricing.py::test_apply_discount",
            "tests/test_pricing.py::test_line_total_uses_bulk_discount",
            "tests/test_cart.py::test_empty_cart_totals_zero",
            "tests/test_cart.py::test_cart_total_with_tax",
            "tests/test_cart.py::test_rejects_zero_quantity",
        },
        "apply_discount",
    ),
    (
        "shop/text.py",
        'return f"{amount:,.2f} EUR"',
        "return ''",
        {
            "tests/test_text.py::test_money",
            "tests/test_text.py::test_receipt_line_width",
        },
        "money",
    ),
    (
        "shop/cart.py",
        "raise ValueError",
        "raise TypeError",
        {
            "tests/test_cart.py::test_empty_cart_totals_zero",
            "tests/test_cart.py::test_cart_total_with_tax",
            "tests/test_cart.py::test_rejects_zero_quantity",
        },
        "Cart.add",
    ),
    ("tests/test_text.py", "== 36", "== 37", {"tests/test_text.py::test_receipt_line_width"}, "the test itself"),
    (
        "shop/pricing.py",
        "TAX_RATE = 0.2",
        "TAX_RATE = 0.25",
        {  # a module-level name: what reads it (with_tax), not every test of the module
            "tests/test_cart.py::test_empty_cart_totals_zero",
            "tests/test_cart.py::test_cart_total_with_tax",
            "tests/test_cart.py::test_rejects_zero_quantity",
        },
        "TAX_RATE",
    ),
    (
        "shop/pricing.py",
        '"""Prices, discounts and carts for a small shop."""\n',
        '"""Prices, discounts and carts for a small shop."""\nimport math\n',
        {
            "tests/test_pricing.py::test_apply_discount",
            "tests/test_pricing.py::test_bulk_discount_tiers",
            "tests/test_pricing.py::test_line_total_uses_bulk_discount",
            "tests/test_cart.py::test_empty_cart_totals_zero",
            "tests/test_cart.py::test_cart_total_with_tax",
            "tests/test_cart.py::test_rejects_zero_quantity",
        },
        "module-level",  # an import: the module's own code
    ),
]


@pytest.mark.parametrize("rel, old, new, expected, word", CASES)
def test_selection(project, rel, old, new, expected, word):
    selected = project.select(edit(project, rel, old, new))
    assert {s.nodeid for s in selected} == expected
    assert all(word in s.reason for s in selected), [s.reason for s in selected]


def test_reason_names_the_path(project):
    selected = project.select(edit(project, "shop/pricing.py", "return 0\n", "return 1\n"))
    by_id = {s.nodeid: s.reason for s in selected}
    assert by_id["tests/test_cart.py::test_cart_total_with_tax"] == (
        "reaches bulk_discount (changed at shop/pricing.py:11) via cart.Cart → cart.Cart.subtotal → pricing.line_total"
    )
    skipped = {s.nodeid for s in explain_skipped(project.index, selected)}
    assert skipped == {
        "tests/test_pricing.py::test_apply_discount",
        "tests/test_text.py::test_money",
        "tests/test_text.py::test_receipt_line_width",
    }


def test_conftest_change_selects_its_scope(project):
    (project.root / "tests" / "conftest.py").write_text("import pytest\n")
    project.index.update_from_disk("tests/conftest.py")
    changes = project.changes_in("tests/conftest.py", "import pytest\n\n@pytest.fixture\ndef x():\n    return 1\n")
    assert len(project.select(changes)) == 8


def test_data_file_change_selects_everything(project):
    changes = project.changes_in("tests/data.json", "{}")
    assert changes[0].kind == "file"
    assert len(project.select(changes)) == 8


def test_modes(project):
    changes = edit(project, "shop/text.py", 'return f"{amount:,.2f} EUR"', "return ''")
    assert len(select(project.index, changes, "all")) == 8
    assert len(select(project.index, changes, "conservative")) == 2  # both tests are in one file
    assert select(project.index, [], "precise") == []


def test_comment_only_edit_in_a_function_still_counts(project):
    # comments can hide code (a commented-out line); tracefix errs on the side of running
    assert project.select(edit(project, "shop/text.py", "def money(amount):\n", "def money(amount):\n    # hi\n"))


def test_pytest_config_change_reloads_discovery(project):
    assert len(project.index.tests()) == 8
    (project.root / "pytest.ini").write_text("[pytest]\ntestpaths = tests\npython_functions = test_money\n")
    assert project.reload_pytest_config() == []
    assert [t.nodeid for t in project.index.tests()] == ["tests/test_text.py::test_money"]


# ---- names static analysis cannot resolve: the tests that can reach them are selected, saying so

CONSERVATIVE_CASES = {
    "a name a module-level __getattr__ answers": (
        {
            "pkg/__init__.py": (
                "import importlib\n\ndef __getattr__(name):\n    return getattr(importlib.import_module('.lazy', __name__), name)\n"
            ),
            "pkg/lazy.py": "def f():\n    return 1\n",
            "tests/test_a.py": "import pkg\n\ndef test_f():\n    assert pkg.f() == 1\n",
        },
        ("pkg/lazy.py", "return 1", "return 3"),
        "could not resolve f in pkg/__init__.py (its module __getattr__ answers): selected conservatively",
    ),
    "a module read with getattr": (
        {
            "pkg/__init__.py": "",
            "pkg/ops.py": "def add(a, b):\n    return a + b\n",
            "tests/test_a.py": (
                "import pkg.ops\n\ndef test_by_name():\n    assert getattr(pkg.ops, 'add')(1, 2) == 3\n"
            ),
        },
        ("pkg/ops.py", "return a + b", "return a - b"),
        "could not resolve which names of pkg/ops.py are used (the module is read with getattr or passed on)",
    ),
    "a star import of a project module that is not there": (
        {
            "pkg/__init__.py": ("try:\n    from ._speedups import *\nexcept ImportError:\n    from ._pure import *\n"),
            "pkg/_pure.py": "def f():\n    return 1\n",
            "pkg/util.py": "def helper():\n    return 2\n",
            "tests/test_a.py": "from pkg import f\n\ndef test_f():\n    assert f() == 1\n",
        },
        ("pkg/util.py", "return 2", "return 3"),
        "could not resolve module pkg._speedups.*: selected conservatively",
    ),
}


@pytest.mark.parametrize("files, edit, reason", CONSERVATIVE_CASES.values(), ids=CONSERVATIVE_CASES.keys())
def test_an_unresolved_name_selects_conservatively(tmp_path, files, edit, reason):
    write(tmp_path, {**files, "tests/test_other.py": "def test_other():\n    assert True\n"})
    selected = static_selection(tmp_path, *edit)
    assert set(selected) == {t.nodeid for t in index_of(tmp_path).tests("tests/test_a.py")}
    assert all(why.startswith(reason) for why in selected.values()), selected


REGISTRY = {
    "pkg/__init__.py": "",
    "pkg/reg.py": (
        "def build():\n    return {}\n\n\nREGISTRY = build()\nLIMIT = 3\n\n\n"
        "def limit():\n    return LIMIT\n\n\ndef other():\n    return 1\n"
    ),
    "tests/test_reg.py": (
        "from pkg.reg import limit, other\n\n\ndef test_limit():\n    assert limit() == 3\n\n\n"
        "def test_other():\n    assert other() == 1\n"
    ),
}


@pytest.mark.parametrize(
    "old, new, expected",
    [
        # its value runs the project's code at import: a change to the module's code
        ("REGISTRY = build()", "REGISTRY = build() or {}", {"test_limit", "test_other"}),
        ("LIMIT = 3", "LIMIT = 4", {"test_limit"}),  # a plain binding: what reads it
    ],
)
def test_a_name_whose_value_runs_project_code_counts_as_module_code(tmp_path, old, new, expected):
    write(tmp_path, REGISTRY)
    with baselined(tmp_path) as project:
        text = (tmp_path / "pkg/reg.py").read_text()
        changes, _ = project.file_changed("pkg/reg.py", text.replace(old, new))
        assert [c.kind for c in changes] == ["variable"]
        assert {s.nodeid.rpartition("::")[2] for s in project.select(changes)} == expected
