"""Document model: incremental re-parse, symbols, symbol diffs, syntax problems."""

import random

import pytest

from tracefix.parsing.document import Document, parse
from tracefix.parsing.symbols import MODULE, diff, facts, outline

SOURCE = """import os
from .util import helper as h, other

LIMIT = 3


@decorate
def top(a, b=2, *args, c, **kw):
    def inner():
        return os.sep
    return h(a) + inner()


class Shape:
    sides = 0

    def area(self):
        return 0

    class Meta:
        def name(self):
            return "m"
"""


def symbols(text):
    data = text.encode()
    return outline(parse(data), data)


def changed(old, new):
    return sorted((c.qualname, c.what) for c in diff(symbols(old), symbols(new)))


def test_outline_names_kinds_and_lines():
    found = {s.qualname: (s.kind, s.start_line, s.end_line) for s in symbols(SOURCE)}
    assert found == {
        MODULE: ("module", 1, 23),
        "top": ("function", 7, 11),  # decorators belong to the function
        "Shape": ("class", 14, 22),
        "Shape.area": ("method", 17, 18),
        "Shape.Meta": ("class", 20, 22),
        "Shape.Meta.name": ("method", 21, 22),
    }


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("return 0", "return 1", [("Shape.area", "changed")]),
        ("sides = 0", "sides = 4", [("Shape", "changed")]),
        ("return os.sep", "return os.linesep", [("top", "changed")]),  # nested def is part of top
        ("LIMIT = 3", "LIMIT = 4", [(MODULE, "changed")]),
        ("@decorate\n", "@decorate(1)\n", [("top", "changed")]),
        ('return "m"', 'return "n"', [("Shape.Meta.name", "changed")]),
        ("    def area(self):\n        return 0\n", "", [("Shape.area", "removed")]),
        ("class Shape:", "def extra():\n    pass\n\n\nclass Shape:", [("extra", "added")]),
        ("\n\n@decorate", "\n\n\n\n@decorate", []),  # blank lines carry no meaning
    ],
)
def test_diff_reports_the_innermost_changed_symbol(old, new, expected):
    assert old in SOURCE
    assert changed(SOURCE, SOURCE.replace(old, new, 1)) == expected


def test_moving_a_function_down_changes_nothing_but_its_neighbourhood():
    shifted = "# a comment\n" + SOURCE
    assert changed(SOURCE, shifted) == [(MODULE, "changed")]


def test_facts_imports_uses_params():
    data = SOURCE.encode()
    f = facts(parse(data), data)
    assert [(i.module, i.names, i.level) for i in f.imports] == [
        ("os", (), 0),
        ("util", (("helper", "h"), ("other", "other")), 1),
    ]
    assert {"h", "os.sep", "inner"} <= f.uses["top"]  # names as written, attributes of a name with it
    assert "helper" not in f.uses[MODULE]  # import bindings are not uses
    assert f.params["top"] == ("a", "b", "args", "c", "kw")


def test_incremental_edits_match_a_fresh_parse():
    rng = random.Random(7)
    doc = Document(SOURCE)
    for _ in range(200):
        lines = doc.text.split("\n")
        line = rng.randrange(len(lines))
        col = rng.randrange(len(lines[line]) + 1)
        end_line = min(line + rng.randrange(2), len(lines) - 1)
        end_col = (
            rng.randrange(len(lines[end_line]) + 1) if end_line > line else rng.randrange(col, len(lines[line]) + 1)
        )
        text = rng.choice(["x", "\n", "", "é", "def f(:", "    ", "😀", "return 1\n"])
        doc.edit((line, col), (end_line, end_col), text)
        fresh = parse(doc.source)
        assert str(doc.tree.root_node) == str(fresh.root_node)


def test_positions_past_the_end_are_clamped():
    doc = Document("a = 1\n")
    doc.edit((10, 5), (12, 0), "b = 2\n")
    assert doc.text == "a = 1\nb = 2\n"


def test_multibyte_columns_are_code_points():
    doc = Document("s = 'é😀'\nx = 1\n")
    doc.edit((0, 7), (0, 7), "z")
    assert doc.text == "s = 'é😀z'\nx = 1\n"
    assert not doc.syntax_problems()


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("def f(:\n    pass\n", 0, "missing"),
        ("x = (1,\n", 0, ""),
        ("x = 1\ny = = 2\n", 1, ""),
        ("ok = 1\nclass :\n", 1, "syntax error"),
    ],
)
def test_syntax_problems(text, line, message):
    problems = Document(text).syntax_problems()
    assert problems, text
    assert problems[0].line == line
    assert message in problems[0].message


def test_never_valid_input_still_parses():
    for text in ["\x00\x00", "((((((((((", "ü" * 1000, "def" * 500, "\r\n\r\n\t", ""]:
        doc = Document(text)
        doc.syntax_problems()
        symbols(text)


def test_a_name_defined_twice_is_unchanged_until_one_definition_changes():
    source = (
        "class URL:\n    @property\n    def path(self):\n        return self._p\n\n"
        "    @path.setter\n    def path(self, value):\n        self._p = value\n"
    )
    assert changed(source, source) == []
    assert changed(source, source.replace("self._p = value", "self._p = str(value)")) == [("URL.path", "changed")]


@pytest.mark.parametrize(
    "source, field, expected",
    [
        ("__all__ = ['a', 'b']\n__all__ += ('c',)\n__all__.append('d')\n", "exports", ("a", "b", "c", "d")),
        ("__all__ = ['a']\n__all__.extend(other.__all__)\n", "exports", None),  # built at run time
        ("__all__ = base.__all__ + ['a']\n", "exports", None),
        ("x = 1\n", "exports", None),  # no __all__
        (
            "a, (b, c) = f()\nfor i in r:\n    pass\nif X:\n    def g():\n        pass\n",
            "assigned",
            {"a", "b", "c", "i", "g"},
        ),
        (
            "import m\ncomp = compose\nh = m.wrap(g, key=k)\n",
            "values",
            {"comp": {"compose"}, "h": {"m.wrap", "g", "k"}},
        ),
        # import runs m.wrap; it only passes g on, and keeps compose in a variable
        ("import m\ncomp = compose\nh = m.wrap(g)\nregister(f)\n", "uses", {"register", "f"}),
        ("import m\nh = m.Wrapper(g)\n", "made", {"m.Wrapper"}),
        (
            "def f(x: Item) -> Out:\n    if isinstance(x, (A, b.B)):\n        pass\n    try:\n        pass\n"
            "    except Err as e:\n        pass\n",
            "mentions",
            {"f": {"Item", "Out", "A", "b.B", "Err"}},
        ),
        ("def f(a):\n    b = a\n    for c in a:\n        pass\n    global g\n    g = 1\n", "locals", {"f": {"b", "c"}}),
        (
            "class C(Base):\n    def m(self):\n        return self.n() + super().m() + cls.k + x.y.z\n",
            "uses",
            {"self.n", "super().m", "cls.k", "x.y.z"},
        ),
    ],
)
def test_facts_the_graph_resolves_names_with(source, field, expected):
    data = source.encode()
    f = facts(parse(data), data)
    got = getattr(f, field)
    if field == "uses":
        got = got[MODULE] if "class" not in source else got["C.m"] - {"self", "cls", "x"}
    assert got == expected
