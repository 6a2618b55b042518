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
        "LIMIT": ("variable", 4, 4),  # a module-level name
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
        ("LIMIT = 3", "LIMIT = 4", [("LIMIT", "changed")]),  # a name, not the module's code
        ("LIMIT = 3", "LIMIT = 3\nos.environ['X'] = '1'", [(MODULE, "changed")]),  # code with an effect
        ("LIMIT = 3", "LIMIT: int = 3", [("LIMIT", "changed")]),
        ("LIMIT = 3", "LIMIT = BASE = 3", [("BASE", "added"), ("LIMIT", "changed")]),
        ("LIMIT = 3", "LIMIT = os.LIMIT = 3", [(MODULE, "changed"), ("LIMIT", "removed")]),  # an attribute
        ("LIMIT = 3", "if os.sep:\n    LIMIT = 3", [(MODULE, "changed"), ("LIMIT", "removed")]),  # a block
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


def test_module_level_names_of_one_statement_share_what_it_reads():
    data = b"import os\nA, (B, *C) = os.sep, X\nD = E = A + 1\nD += 2\nF.g = 3\n"
    f = facts(parse(data), data)
    names = {s.qualname: s.kind for s in f.symbols}
    assert names == {
        MODULE: "module",
        "A": "variable",
        "B": "variable",
        "C": "variable",
        "D": "variable",
        "E": "variable",
    }
    assert {"os", "sep", "X"} <= f.uses["A"] and f.uses["A"] == f.uses["C"]
    assert {"A"} <= f.uses["D"] and "F" in f.uses[MODULE]


def test_facts_imports_uses_params():
    data = SOURCE.encode()
    f = facts(parse(data), data)
    assert [(i.module, i.names, i.level) for i in f.imports] == [("os", (), 0), ("util", ("helper", "other"), 1)]
    assert {"h", "os", "inner", "sep"} <= f.uses["top"]
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


def test_a_burst_of_edits_is_parsed_once_and_matches_a_fresh_parse():
    rng = random.Random(11)
    doc = Document(SOURCE)
    for burst in range(40):
        for _ in range(burst % 7 + 1):  # edits arrive before anything reads the tree
            lines = doc.text.split("\n")
            line = rng.randrange(len(lines))
            col = rng.randrange(len(lines[line]) + 1)
            doc.edit(
                (line, col), (line, min(col + rng.randrange(2), len(lines[line]))), rng.choice(["'", "(", "x", ""])
            )
        assert str(doc.tree.root_node) == str(parse(doc.source).root_node)


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
