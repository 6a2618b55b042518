"""Document model: incremental re-parse, symbols, symbol diffs, syntax problems."""

import random
from pathlib import Path

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
    assert {"os.sep", "X"} <= set(f.uses["A"]) and f.uses["A"] == f.uses["C"]
    assert {"A"} <= set(f.uses["D"]) and "F.g" in f.uses[MODULE]


def test_facts_imports_uses_params():
    data = SOURCE.encode()
    f = facts(parse(data), data)
    assert [(i.module, i.names, i.level) for i in f.imports] == [
        ("os", (), 0),
        ("util", (("helper", "h"), ("other", "other")), 1),
    ]
    assert {"h", "os.sep", "inner"} <= set(f.uses["top"])  # names as written, attributes of a name with it
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


PRICING = (Path(__file__).parent.parent / "examples/shop/shop/pricing.py").read_text()


def broken(old, new):
    assert old in PRICING
    return PRICING.replace(old, new, 1)


# A broken buffer → its problems as (line, column, message), 0-based, columns in code points:
# where a person would look, said the way CPython says it.
SYNTAX = {
    "a call left open": (
        broken("percent), 2)", "percent, 2)"),
        [(21, 16, "'(' was never closed")],
    ),
    "a def without its colon, after a module docstring": (
        broken("def bulk_discount(quantity):", "def bulk_discount(quantity)"),
        [(10, 27, "expected ':'")],
    ),
    "the last def without its colon": (
        broken("def with_tax(amount):", "def with_tax(amount)"),
        [(24, 20, "expected ':'")],
    ),
    "an if without its colon": (broken("if quantity >= 10:", "if quantity >= 10"), [(14, 21, "expected ':'")]),
    "a module-level paren left open": (broken("TAX_RATE = 0.2", "TAX_RATE = (0.2"), [(2, 11, "'(' was never closed")]),
    "a list being typed": (
        broken("    percent = bulk", "    x = [1, 2\n    percent = bulk"),
        [(20, 8, "'[' was never closed")],
    ),
    "an operand missing": (broken("TAX_RATE = 0.2", "TAX_RATE = 0.2 +"), [(2, 16, "invalid syntax")]),
    "a keyword as a value": (broken("TAX_RATE = 0.2", "TAX_RATE = def"), [(2, 11, "invalid syntax")]),
    "else without a colon": (broken("    return 0", "    else return 0"), [(16, 9, "expected ':'")]),
    "an unterminated string": (
        broken("TAX_RATE = 0.2", "TAX_RATE = 'abc"),
        [(2, 11, "unterminated string literal (detected at line 3)")],
    ),
    "a stray closing paren": (PRICING + "\n)\n", [(27, 0, "unmatched ')'")]),
    "brackets that do not pair": (
        "x = (1]\n",
        [(0, 6, "closing parenthesis ']' does not match opening parenthesis '('")],
    ),
    "a forgotten comma": ('print("a" "b" c)\n', [(0, 6, "invalid syntax. Perhaps you forgot a comma?")]),
    "unexpected indent at the top": (broken("TAX_RATE = 0.2", "  TAX_RATE = 0.2"), [(2, 2, "unexpected indent")]),
    "unexpected indent in a body": (
        broken("    percent = bulk_discount(quantity)\n", "    percent = bulk_discount(quantity)\n      x = 1\n"),
        [(21, 6, "unexpected indent")],
    ),
    "a dedent to no level": (
        broken("    percent = bulk_discount(quantity)\n", "    percent = bulk_discount(quantity)\n  x = 1\n"),
        [(21, 2, "unindent does not match any outer indentation level")],
    ),
    "an empty body": ("if ready:\npass\n", [(1, 0, "expected an indented block after 'if' statement on line 1")]),
    "a body not yet typed": (
        "def f():\n    ",
        [(0, 8, "expected an indented block after function definition on line 1")],
    ),
    "columns count code points": ("s = '😀😀' + (1\n", [(0, 11, "'(' was never closed")]),
    "CRLF line ends": ("x = 1\r\nif x\r\n    pass\r\n", [(1, 4, "expected ':'")]),
    # CPython reports only its first error; tree-sitter says what the second one is
    "two independent errors": (
        "def a(x):\n    return x +\n\n\ndef b():\n    return [1, 2\n",
        [(1, 14, "invalid syntax"), (5, 11, "'[' was never closed")],
    ),
    # newer syntax than the server's Python may know: its error there is not the buffer's
    "a 3.12 type alias above the error": ("type Price = float\nif x\n    pass\n", [(1, 4, "expected ':'")]),
}


@pytest.mark.parametrize("text, expected", SYNTAX.values(), ids=SYNTAX.keys())
def test_syntax_problems_say_what_and_where(text, expected):
    problems = Document(text).syntax_problems()
    assert [(p.line, p.column, p.message) for p in problems] == expected
    for p in problems:
        assert (p.end_line, p.end_column) > (p.line, p.column)


@pytest.mark.parametrize(
    "text",
    [
        "x = 1; y = 2\nif x: pass\n",
        "def f():\n    x = 1\n  # a comment may sit anywhere\n    return x\n",
        "match x:\n    case 1:\n        pass\n    case _:\n        pass\n",
        "x = f(\n        1,\n  2)\ny = 3\n",
        PRICING,
    ],
)
def test_valid_code_has_no_syntax_problems(text):
    assert Document(text).syntax_problems() == []


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
            "a, (b, c) = f()\nfor i in r:\n    pass\nif X:\n    def g():\n        pass\nwhile Y:\n    def h():\n        pass\n",
            "assigned",
            {"a", "b", "c", "i", "h"},  # g, under an `if`, is a symbol as pytest's collection sees it
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
        got = set(got[MODULE]) if "class" not in source else set(got["C.m"]) - {"self", "cls", "x"}
    elif field in ("values", "mentions", "locals"):  # names per symbol, kept as sorted tuples
        got = {k: set(v) for k, v in got.items()}
    assert got == expected
