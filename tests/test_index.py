"""Project index: pytest config, test discovery, module resolution, the static graph, the store."""

import json
import sqlite3
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.projects import index_of, static_selection, write

from tracefix.index.graph import ROWS, ProjectIndex, derived
from tracefix.index.pytestconfig import PytestConfig, load
from tracefix.index.store import Store
from tracefix.parsing.symbols import MODULE
from tracefix.project import Project
from tracefix.selection.select import select


@pytest.mark.parametrize(
    "files, expected",
    [
        (
            {"pytest.ini": "[pytest]\ntestpaths = checks\npython_files = check_*.py\n"},
            dict(testpaths=("checks",), python_files=("check_*.py",)),
        ),
        (
            {"pyproject.toml": "[tool.pytest.ini_options]\npython_functions = ['should_*']\n"},
            dict(python_functions=("should_*",)),
        ),
        ({"setup.cfg": "[tool:pytest]\npython_classes = Check Test\n"}, dict(python_classes=("Check", "Test"))),
        ({"tox.ini": "[pytest]\npythonpath = src lib\n"}, dict(pythonpath=("src", "lib"))),
        ({"pyproject.toml": "[project]\nname='x'\n", "tox.ini": "[pytest]\ntestpaths = t\n"}, dict(testpaths=("t",))),
    ],
)
def test_pytest_config(tmp_path, files, expected):
    config, warnings = load(write(tmp_path, files))
    assert not warnings
    for key, value in expected.items():
        assert getattr(config, key) == value


def test_broken_pytest_config_warns_and_defaults(tmp_path):
    config, warnings = load(write(tmp_path, {"pyproject.toml": "[tool.pytest.ini_options\n"}))
    assert config == PytestConfig()
    assert "pyproject.toml" in warnings[0]


def test_discovery_follows_pytest_rules(tmp_path):
    write(
        tmp_path,
        {
            "tests/test_a.py": (
                "import pytest, unittest\n"
                "def test_one(): pass\n"
                "def helper(): pass\n"
                "@pytest.fixture\ndef test_data(): return 1\n"
                "class TestGroup:\n    def test_two(self): pass\n    def other(self): pass\n"
                "class TestWithInit:\n    def __init__(self): pass\n    def test_skipped(self): pass\n"
                "class Legacy(unittest.TestCase):\n    def test_three(self): pass\n"
            ),
            "tests/b_test.py": "def test_four(): pass\n",
            "tests/helpers.py": "def test_not_collected(): pass\n",
            "build/test_x.py": "def test_in_build(): pass\n",
        },
    )
    nodeids = [t.nodeid for t in index_of(tmp_path).tests()]
    assert nodeids == [
        "tests/b_test.py::test_four",
        "tests/test_a.py::test_one",
        "tests/test_a.py::TestGroup::test_two",
        "tests/test_a.py::Legacy::test_three",
    ]


def test_configured_names_and_testpaths(tmp_path):
    write(
        tmp_path,
        {
            "pytest.ini": "[pytest]\ntestpaths = checks\npython_files = check_*.py\npython_functions = should_*\n",
            "checks/check_x.py": "def should_work(): pass\ndef test_ignored(): pass\n",
            "tests/test_y.py": "def test_outside_testpaths(): pass\n",
        },
    )
    assert [t.nodeid for t in index_of(tmp_path).tests()] == ["checks/check_x.py::should_work"]


PROJECT = {
    "src/app/__init__.py": "",
    "src/app/core.py": "from .util import clamp\n\ndef compute(x):\n    return clamp(x) * 2\n\ndef unused():\n    return 0\n",
    "src/app/util.py": "def clamp(x):\n    return max(0, x)\n",
    "src/app/models.py": "class Item:\n    def price(self):\n        return 1\n",
    "tests/test_core.py": "from app.core import compute\n\ndef test_compute():\n    assert compute(1) == 2\n",
    "tests/test_models.py": "import app.models\n\ndef test_item():\n    assert app.models.Item().price() == 1\n",
    "tests/test_star.py": "from app.util import *\n\ndef test_clamp():\n    assert clamp(-1) == 0\n",
}


def test_modules_resolve_src_layout(tmp_path):
    idx = index_of(write(tmp_path, PROJECT))
    assert idx.modules()["app.core"] == "src/app/core.py"
    assert idx.modules()["app"] == "src/app/__init__.py"


@pytest.mark.parametrize(
    "target, tests",
    [
        (("src/app/util.py", "clamp"), ["tests/test_core.py::test_compute", "tests/test_star.py::test_clamp"]),
        (("src/app/core.py", "unused"), []),
        (("src/app/models.py", "Item.price"), ["tests/test_models.py::test_item"]),
        (("src/app/core.py", MODULE), ["tests/test_core.py::test_compute"]),
        (("tests/test_core.py", "test_compute"), ["tests/test_core.py::test_compute"]),
    ],
)
def test_reachability(tmp_path, target, tests):
    idx = index_of(write(tmp_path, PROJECT))
    assert sorted(idx.tests_reaching({target})) == tests


def test_graph_follows_incremental_updates(tmp_path):
    idx = index_of(write(tmp_path, PROJECT))
    assert "tests/test_models.py::test_item" not in idx.tests_reaching({("src/app/util.py", "clamp")})
    idx.update(
        "src/app/models.py",
        b"from app.util import clamp\n\nclass Item:\n    def price(self):\n        return clamp(1)\n",
    )
    assert "tests/test_models.py::test_item" in idx.tests_reaching({("src/app/util.py", "clamp")})


def test_store_round_trip_and_reuse(tmp_path):
    write(tmp_path, PROJECT)
    store = Store(tmp_path)
    idx = ProjectIndex(tmp_path, PytestConfig())
    rows, removed = idx.load(store.load_files())
    assert len(rows) == len(PROJECT) and not removed
    store.save_files(rows, removed)
    store.close()
    assert (tmp_path / ".tracefix" / ".gitignore").read_text().strip().endswith("*")
    again = ProjectIndex(tmp_path, PytestConfig())
    rows, _ = again.load(Store(tmp_path).load_files())
    assert rows == []  # nothing re-parsed
    assert [t.nodeid for t in again.tests()] == [t.nodeid for t in idx.tests()]


def test_corrupt_store_is_rebuilt_with_a_warning(tmp_path):
    (tmp_path / ".tracefix").mkdir()
    (tmp_path / ".tracefix" / "index.sqlite").write_bytes(b"not a database" * 100)
    store = Store(tmp_path)
    assert "corrupt" in store.warnings[0]
    store.put("k", 1)
    assert store.get("k") == 1
    assert list((tmp_path / ".tracefix").glob("index.sqlite.broken-*"))


def test_store_from_another_version_is_rebuilt(tmp_path):
    Store(tmp_path).close()
    db = sqlite3.connect(tmp_path / ".tracefix" / "index.sqlite")
    db.execute("update meta set value='999' where key='schema'")
    db.commit()
    db.close()
    store = Store(tmp_path)
    assert "another tracefix version" in store.warnings[0]


def test_inherited_tests_follow_pytest_collection(tmp_path):
    write(
        tmp_path,
        {
            "tests/__init__.py": "",
            "tests/base.py": "class Shared:\n    def test_shared(self):\n        pass\n",
            "tests/test_a.py": (
                "import unittest\nfrom .base import Shared\n\n"
                "class SimplifiedTestCaseProtocol:\n    pass\n\n"
                "class Mixin(SimplifiedTestCaseProtocol):\n    def test_inherited(self):\n        pass\n\n"
                "class CacheTest(unittest.TestCase, Mixin):\n    def test_own(self):\n        pass\n\n"
                "class TestFromOther(Shared):\n    pass\n"
            ),
        },
    )
    idx = index_of(tmp_path)
    tests = {t.nodeid: t.source for t in idx.tests()}
    assert tests == {  # the mixin itself is not collected; what it gives its subclasses is
        "tests/test_a.py::CacheTest::test_inherited": ("tests/test_a.py", "Mixin.test_inherited"),
        "tests/test_a.py::CacheTest::test_own": None,
        "tests/test_a.py::TestFromOther::test_shared": ("tests/base.py", "Shared.test_shared"),
    }
    # a change to the inherited method selects every class that inherits it
    assert sorted(idx.tests_reaching({("tests/base.py", "Shared.test_shared")})) == [
        "tests/test_a.py::TestFromOther::test_shared"
    ]


def test_tests_defined_under_if_try_and_with_are_found_as_pytest_collects_them(tmp_path):
    write(
        tmp_path,
        {
            "tests/test_c.py": (
                "import sys\nimport contextlib\n\n"
                "if sys.version_info >= (3,):\n    def test_new():\n        pass\n"
                "elif True:\n    def test_never():\n        pass\n"
                "else:\n    def test_old():\n        pass\n\n"
                "try:\n    import json\nexcept ImportError:\n    pass\n"
                "else:\n    def test_json():\n        assert json\n\n"
                "with contextlib.suppress(Exception):\n    class TestGuarded:\n        def test_in_class(self):\n"
                "            pass\n\n"
                "class TestIf:\n    if True:\n        def test_method(self):\n            pass\n"
            ),
        },
    )
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests/test_c.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    ).stdout
    by_pytest = {line for line in collected.splitlines() if "::" in line}
    # pytest collects what the module defines once it has run: test_never and test_old are not
    # defined, so it has no name to collect; the index cannot know which branch runs and lists them
    assert by_pytest <= {t.nodeid for t in index_of(tmp_path).tests()}
    assert by_pytest == {
        "tests/test_c.py::test_new",
        "tests/test_c.py::test_json",
        "tests/test_c.py::TestGuarded::test_in_class",
        "tests/test_c.py::TestIf::test_method",
    }
    # a check of every test runs what pytest collects and skips the branches not taken, saying why
    check = subprocess.run(
        [sys.executable, "-m", "tracefix", "check", str(tmp_path), "--all", "--no-trace", "--format", "json"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    outcomes = {r["nodeid"]: r["outcome"] for r in json.loads(check.stdout)["results"]}
    assert outcomes == dict.fromkeys(by_pytest, "passed") | dict.fromkeys(
        ["tests/test_c.py::test_never", "tests/test_c.py::test_old"], "skipped"
    )


def test_store_deleted_in_use_is_recreated_with_a_warning(tmp_path):
    store = Store(tmp_path)
    store.put("k", 1)
    for path in (tmp_path / ".tracefix").iterdir():
        path.unlink()
    store.put("k", 2)  # not lost into the unlinked file
    assert "deleted while in use" in store.warnings[0]
    assert Store(tmp_path).get("k") == 2


# ---- static selection with nothing recorded: one small project per way code reaches code
# Each project: the package, a test that reaches the code an edit changes only through the pattern
# in its name, and a bystander test that must stay unselected.


BYSTANDER = {"tests/test_other.py": "import pkg\n\ndef test_other():\n    assert pkg.other() == 0\n"}
OTHER = "def other():\n    return 0\n"

STATIC_CASES = {
    "star import without __all__": (
        {
            "pkg/__init__.py": "from .core import *\nfrom .more import other\n",
            "pkg/core.py": "def f():\n    return 1\n\ndef _private():\n    return 2\n",
            "pkg/more.py": OTHER,
            "tests/test_a.py": "from pkg import f\n\ndef test_f():\n    assert f() == 1\n",
        },
        ("pkg/core.py", "return 1", "return 3"),
    ),
    "star import with __all__": (
        {
            "pkg/__init__.py": "from .core import *\n",
            "pkg/core.py": "__all__ = ['f', 'other']\n\ndef f():\n    return 1\n\n" + OTHER,
            "tests/test_a.py": "import pkg\n\ndef test_f():\n    assert pkg.f() == 1\n",
        },
        ("pkg/core.py", "return 1", "return 3"),
    ),
    "__all__ of the package": (
        {
            "pkg/__init__.py": "from .core import f, other\n__all__ = ['f', 'other']\n",
            "pkg/core.py": "def f():\n    return 1\n\n" + OTHER,
            "tests/test_a.py": "from pkg import *\n\ndef test_f():\n    assert f() == 1\n",
        },
        ("pkg/core.py", "return 1", "return 3"),
    ),
    "re-export under another name": (
        {
            "pkg/__init__.py": "from .core import f as g\nfrom .core import other\n",
            "pkg/core.py": "def f():\n    return 1\n\n" + OTHER,
            "tests/test_a.py": "from pkg import g\n\ndef test_f():\n    assert g() == 1\n",
        },
        ("pkg/core.py", "return 1", "return 3"),
    ),
    "attribute of a subpackage's module": (
        {
            "pkg/__init__.py": "from . import sub\nfrom .more import other\n",
            "pkg/more.py": OTHER,
            "pkg/sub/__init__.py": "from . import core\n",
            "pkg/sub/core.py": "def f():\n    return 1\n",
            "tests/test_a.py": "import pkg\n\ndef test_f():\n    assert pkg.sub.core.f() == 1\n",
        },
        ("pkg/sub/core.py", "return 1", "return 3"),
    ),
    "module imported under an alias": (
        {
            "pkg/__init__.py": "from .more import other\n",
            "pkg/more.py": OTHER,
            "pkg/core.py": "def f():\n    return 1\n",
            "tests/test_a.py": "from pkg import core as c\n\ndef test_f():\n    assert c.f() == 1\n",
        },
        ("pkg/core.py", "return 1", "return 3"),
    ),
    "function imported under an alias": (
        {
            "pkg/__init__.py": "from .more import other\n",
            "pkg/more.py": OTHER,
            "pkg/core.py": "def f():\n    return 1\n",
            "tests/test_a.py": "from pkg.core import f as _f\n\ndef test_f():\n    assert _f() == 1\n",
        },
        ("pkg/core.py", "return 1", "return 3"),
    ),
    "method inherited from a base class in another module, called on self": (
        {
            "pkg/__init__.py": "from .impl import *\nfrom .more import other\n",
            "pkg/more.py": OTHER,
            "pkg/base.py": "class Base:\n    def run(self):\n        return self.step()\n\n    def step(self):\n        return 1\n",
            "pkg/impl.py": "from .base import Base\n\n__all__ = ['Impl']\n\nclass Impl(Base):\n    pass\n",
            "tests/test_a.py": "from pkg import Impl\n\ndef test_run():\n    assert Impl().run() == 1\n",
        },
        ("pkg/base.py", "return 1", "return 3"),
    ),
    "classmethod calling cls.method": (
        {
            "pkg/__init__.py": "from .shapes import Square as Sq\nfrom .more import other\n",
            "pkg/more.py": OTHER,
            "pkg/shapes.py": (
                "class Square:\n    @classmethod\n    def unit(cls):\n        return cls.sides()\n\n"
                "    @classmethod\n    def sides(cls):\n        return 4\n"
            ),
            "tests/test_a.py": "from pkg import Sq\n\ndef test_unit():\n    assert Sq.unit() == 4\n",
        },
        ("pkg/shapes.py", "return 4", "return 5"),
    ),
    "super() call into a base class re-exported by the package": (
        {
            "pkg/__init__.py": "from .base import *\nfrom .more import other\n",
            "pkg/more.py": OTHER,
            "pkg/base.py": "class Base:\n    def value(self):\n        return 1\n",
            "tests/test_a.py": (
                "import pkg\n\nclass Twice(pkg.Base):\n    def value(self):\n        return 2 * super().value()\n\n"
                "def test_twice():\n    assert Twice().value() == 2\n"
            ),
        },
        ("pkg/base.py", "return 1", "return 3"),
    ),
    "override in a subclass that only a registry names": (
        {
            "pkg/__init__.py": "from .more import other\n",
            "pkg/more.py": OTHER,
            "pkg/shapes.py": (
                "class Shape:\n    kinds = {}\n\n    def __init_subclass__(cls):\n"
                "        Shape.kinds[cls.__name__.lower()] = cls\n\n    @classmethod\n"
                "    def make(cls, kind):\n        return cls.kinds[kind]()\n\n"
                "    def describe(self):\n        return str(self.area())\n\n    def area(self):\n        return 0\n"
            ),
            "pkg/square.py": "from .shapes import Shape\n\nclass Square(Shape):\n    def area(self):\n        return 4\n",
            "tests/test_a.py": (
                "import pkg.square  # puts Square in Shape.kinds\nfrom pkg.shapes import Shape\n\ndef test_square():\n"
                "    assert Shape.make('square').describe() == '4'\n"
            ),
        },
        ("pkg/square.py", "return 4", "return 5"),
    ),
    "fixture from a conftest": (
        {
            "pkg/__init__.py": "from .more import other\n",
            "pkg/more.py": OTHER,
            "pkg/core.py": "def make():\n    return 1\n",
            "tests/conftest.py": "import pytest\nfrom pkg.core import make\n\n@pytest.fixture\ndef thing():\n    return make()\n",
            "tests/test_a.py": "def test_thing(thing):\n    assert thing == 1\n",
        },
        ("pkg/core.py", "return 1", "return 3"),
    ),
    "module variable bound to a function": (
        {
            "pkg/__init__.py": "from .core import f\nfrom .more import other\ng = f\n",
            "pkg/more.py": OTHER,
            "pkg/core.py": "def f():\n    return 1\n",
            "tests/test_a.py": "from pkg import g\n\ndef test_f():\n    assert g() == 1\n",
        },
        ("pkg/core.py", "return 1", "return 3"),
    ),
}


@pytest.mark.parametrize("files, edit", STATIC_CASES.values(), ids=STATIC_CASES.keys())
def test_static_selection_follows_how_code_is_reached(tmp_path, files, edit):
    write(tmp_path, {**BYSTANDER, **files})
    selected = static_selection(tmp_path, *edit)
    assert set(selected) == {t.nodeid for t in index_of(tmp_path).tests() if t.path == "tests/test_a.py"}
    assert not any("conservatively" in reason for reason in selected.values())


FUNCTIONS = ("alpha", "beta", "gamma")


def _module(calls: dict[str, list[str]], extra: str = "") -> str:
    """A module of FUNCTIONS, each calling the names given for it."""
    body = {name: "    return " + (" + ".join(f"{c}()" for c in calls.get(name, [])) or "0") for name in FUNCTIONS}
    return (
        "import pkg\nfrom pkg import b\nfrom .b import *\n"
        + extra
        + "".join(f"\n\ndef {name}():\n{body[name]}\n" for name in FUNCTIONS)
    )


CALLABLE = ["alpha", "beta", "b.gamma", "pkg.a.beta", "pkg.lazy", "missing", "pkg.b.alpha"]


@given(
    edits=st.lists(
        st.tuples(
            st.sampled_from(["pkg/a.py", "pkg/b.py"]),
            st.dictionaries(st.sampled_from(FUNCTIONS), st.lists(st.sampled_from(CALLABLE), max_size=3)),
            st.booleans(),  # also bind a new module-level name: every file's edges may change
        ),
        min_size=1,
        max_size=6,
    )
)
@settings(max_examples=40, deadline=None)
def test_graph_updated_for_edits_equals_a_graph_built_anew(tmp_path_factory, edits):
    root = write(
        tmp_path_factory.mktemp("p"),
        {
            "pkg/__init__.py": "from . import a, b\n\ndef __getattr__(name):\n    return getattr(a, name)\n",
            "pkg/a.py": _module({}),
            "pkg/b.py": _module({}),
            "tests/test_x.py": "from pkg.a import alpha\nfrom pkg import b\n\ndef test_a():\n    assert alpha() == b.beta()\n",
        },
    )
    idx = index_of(root)
    idx.graph()
    for rel, calls, binds in edits:
        text = _module(calls, "NEW = 1\n" if binds else "")
        (root / rel).write_text(text)
        idx.update(rel, text.encode())
        fresh = index_of(root)
        assert idx.graph() == fresh.graph()
        assert idx.reverse() == fresh.reverse()
        for path in fresh.files:  # one file's own edges alone, as module-level names need them
            own = {n: e for n, e in fresh.graph().items() if n[0] == path and not derived(n)}
            assert idx.file_edges(path) == own


@pytest.mark.parametrize(
    "old, new, reused",
    [
        ("return price * (1 - percent / 100)", "return price * (1 - percent / 100.0)", True),  # a body
        ("percent = bulk_discount(quantity)", "percent = bulk_discount(quantity) + apply_discount(1, 0)", True),  # uses
        ("def with_tax(amount):", "def tax_of(amount):\n    return amount\n\n\ndef with_tax(amount):", False),  # names
    ],
)
def test_a_saved_graph_is_the_graph_built_afresh(shop, old, new, reused):
    """A check or server start reuses the graph the store kept, for files edited since too: its
    edges and selection are those of the graph built from scratch; an edit that changes the names
    a file binds has it built anew."""
    first = Project(shop)
    first.baseline_everything()
    first.select([])  # the first selection builds the graph and saves it
    assert first.index.unsaved() is None
    first.close()
    pricing = shop / "shop" / "pricing.py"
    pricing.write_text(pricing.read_text().replace(old, new))
    project = Project(shop)
    try:
        changes = project.changes_since_snapshot()
        assert changes
        assert (project.index.unsaved() is None) == reused  # None: the store's graph holds
        selected = project.select(changes)
        graph = {n: set(e) for n, e in project.index.graph().items()}
        reverse = {n: set(e) for n, e in project.index.reverse().items()}
        project.index.invalidate()
        assert project.select(changes) == selected
        assert graph == project.index.graph()
        assert reverse == project.index.reverse()
    finally:
        project.close()
    # a server's edit after the start: now one that changes what a function uses
    project = Project(shop)
    try:
        cart = shop / "shop" / "cart.py"
        text = cart.read_text().replace("return round(", "return with_tax(0) + round(", 1)
        assert text != cart.read_text()
        cart.write_text(text)
        changes, _ = project.file_changed("shop/cart.py", text)
        assert project.index.unsaved() is None  # still the saved graph, with cart.py's edges stale
        selected = select(project.index, changes)
        fresh = index_of(shop)
        assert select(fresh, changes) == selected
        assert project.index.graph() == fresh.graph()
        assert project.index.reverse() == fresh.reverse()
    finally:
        project.close()


def test_a_saved_graph_that_does_not_fit_is_ignored(shop):
    """Parts of a saved graph that are damaged or of another layout: the graph is built again."""
    first = Project(shop)
    first.select([])
    parts = first.store.load_graph()
    first.close()
    head = json.loads(parts["head"])
    for broken in (
        {**parts, "head": b"{"},
        {**parts, "head": json.dumps({**head, "files": {p: [1, 2] for p in head["files"]}}).encode()},
        {**parts, "head": json.dumps({**head, "files": []}).encode()},
        {**parts, "head": json.dumps({k: v for k, v in head.items() if k != "key"}).encode()},
        {**parts, ROWS[1]: parts[ROWS[1]][:-4]},
        {},
    ):
        project = Project(shop)
        try:
            project.store.save_graph(broken)
            project.index.invalidate()
            project.index.restore(project.store.load_graph())
            assert project.index.unsaved() is not None  # built
            assert project.index.tests_reaching({("shop/pricing.py", "apply_discount")})
        finally:
            project.close()
