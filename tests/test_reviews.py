import json
import logging
import os
from pathlib import Path
from textwrap import dedent

import pytest

from tracefix.parsing.document import Document
from tracefix.reviews import (
    Comment,
    ReviewSet,
    change_type,
    changed_lines,
    collect,
    comments_for_symbol,
    describe,
    export_items,
    github_comments,
    inline_comments,
    jsonl_comments,
    removal_edit,
    touches,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

PRICING = dedent('''\
    TAX_RATE = 0.2


    def apply_discount(price, percent):
        """Price after taking `percent` percent off."""
        return price * (1 - percent / 100)


    def bulk_discount(quantity):
        if quantity > 50:
            return 10
        return 0


    class Cart:
        def total(self):
            total = 0
            for price in self.prices:
                total += price
            return total
    ''')


def apply(text, removal):
    lines = text.splitlines(keepends=True)
    return "".join(lines[: removal.start_line - 1] + [removal.text] + lines[removal.end_line :])


# --- inline comments ---------------------------------------------------------------------

INLINE_CASES = {
    "author in any case, anchored to the next statement": (
        """\
        def f(x):
            # Review(@ana): x may be None
            return x + 1
        """,
        [("x may be None", "ana", 3, 3, "f", [])],
    ),
    "continuation lines join": (
        """\
        def f(x):
            # review: this loops twice;
            # one pass is enough
            for a in x:
                print(a)
        """,
        [("this loops twice;\none pass is enough", None, 4, 5, "f", [])],
    ),
    "another author's review line is a reply, the same author's continues": (
        """\
        # review(@ana): name is vague
        # review(@ana): call it limit
        # review(@bo): agreed
        N = 3
        """,
        [("name is vague\ncall it limit", "ana", 4, 4, None, [("bo", "agreed")])],
    ),
    "reviewer is not a marker": (
        """\
        # reviewer: nobody
        # reviews: none
        x = 1
        """,
        [],
    ),
    "marker inside strings is not a comment": (
        '''\
        s = "# review: not a comment"
        t = """
        # review: still a string
        """
        ''',
        [],
    ),
    "trailing comment is about its own, multi-line statement": (
        """\
        total = sum(
            xs
        )  # review: use math.fsum
        """,
        [("use math.fsum", None, 1, 3, None, [])],
    ),
    "comment above a method is about the whole method": (
        """\
        class Cart:
            # review: cache this
            @property
            def total(self):
                return 1
        """,
        [("cache this", None, 3, 5, "Cart.total", [])],
    ),
    "a function nested in a function counts as the outer one, as in the index": (
        """\
        def outer():
            def inner():
                # review: name this
                return 1
        """,
        [("name this", None, 4, 4, "outer", [])],
    ),
    "comment closing a body is about the statement before it": (
        """\
        def f():
            return 1
            # review: unreachable below?
        x = 2
        """,
        [("unreachable below?", None, 2, 2, "f", [])],
    ),
    "comment above else is about the else clause": (
        """\
        def f(x):
            if x:
                return 1
            # review: say why
            else:
                return 2
        """,
        [("say why", None, 5, 6, "f", [])],
    ),
    "a comment at another column ends the block": (
        """\
        def f():
            x = 1  # review: why 1
            # unrelated note
            return x
        """,
        [("why 1", None, 2, 2, "f", [])],
    ),
    "a blank line ends the block": (
        """\
        # review: first

        # review: second
        x = 1
        """,
        [("first", None, 4, 4, None, []), ("second", None, 4, 4, None, [])],
    ),
    "a buffer in mid-edit still has its comments": (
        """\
        def
        # review: x
        y = 1
        """,
        [("x", None, 3, 3, None, [])],
    ),
    "an empty review says nothing": (
        """\
        # review:
        x = 1
        """,
        [],
    ),
}


@pytest.mark.parametrize("source, expected", INLINE_CASES.values(), ids=INLINE_CASES.keys())
def test_inline_comments(source, expected):
    comments = inline_comments("m.py", dedent(source))
    got = [(c.body, c.author, c.start_line, c.end_line, c.symbol, c.replies) for c in comments]
    assert got == expected
    assert all(c.source == "inline" and c.state == "open" and c.id.startswith("inline:m.py:") for c in comments)


def test_inline_comments_survive_expressions_nested_past_the_recursion_limit():
    text = "def f():\n    # review: too long\n    return " + " + ".join(["1"] * 5000) + "\n"
    assert [(c.symbol, c.start_line) for c in inline_comments("m.py", text)] == [("f", 3)]


def test_inline_ids_follow_the_text_not_the_line():
    text = "# review: same\nx = 1\n# review: same\ny = 2\n"
    first, second = inline_comments("m.py", text)
    assert first.id != second.id
    moved = inline_comments("m.py", "import os\n\n" + text)
    assert [c.id for c in moved] == [first.id, second.id]


REMOVALS = {
    "standalone block goes whole": (
        "def f():\n    # review: x\n    # more\n    return 1\n",
        "def f():\n    return 1\n",
    ),
    "trailing comment leaves the code": (
        "x = 1  # review: why\ny = 2\n",
        "x = 1\ny = 2\n",
    ),
    "trailing comment keeps CRLF": (
        "x = 1  # review: why\r\ny = 2\r\n",
        "x = 1\r\ny = 2\r\n",
    ),
    "trailing comment on a last line without newline": (
        "x = 1  # review: why",
        "x = 1",
    ),
}


@pytest.mark.parametrize("text, expected", REMOVALS.values(), ids=REMOVALS.keys())
def test_removal_edit(text, expected):
    (comment,) = inline_comments("m.py", text)
    assert apply(text, removal_edit(text, comment)) == expected


def test_removal_edit_finds_the_comment_after_edits_and_not_when_gone():
    text = "# review: why\nx = 1\n"
    (comment,) = inline_comments("m.py", text)
    edited = "import os\n" + text
    assert removal_edit(edited, comment) == (2, 2, "")
    assert removal_edit("x = 1\n", comment) is None


# --- GitHub ------------------------------------------------------------------------------

DISCOUNT_HUNK = (
    "@@ -1,4 +1,6 @@\n"
    " TAX_RATE = 0.2\n"
    " \n"
    " \n"
    " def apply_discount(price, percent):\n"
    '+    """Price after taking `percent` percent off."""\n'
    "+    return price * (1 - percent / 100)"
)


def github_item(id, line=6, body="percent over 100 goes negative", hunk=DISCOUNT_HUNK, **extra):
    item = {
        "id": id,
        "path": "shop/pricing.py",
        "line": line,
        "original_line": 6,
        "side": "RIGHT",
        "body": body,
        "diff_hunk": hunk,
        "commit_id": "c1",
        "user": {"login": "ana"},
        "created_at": f"2026-11-20T09:00:{id:02d}Z",
    }
    return item | extra


def one_github(text, **item):
    (comment,) = github_comments([github_item(1, **item)], lambda path: Document(text))
    return comment


def test_github_threads_gather_replies_in_order():
    items = [
        github_item(3, body="and a test", in_reply_to_id=2, user={"login": "cy"}),
        github_item(1),
        github_item(2, body="agreed", in_reply_to_id=1, user={"login": "bo"}),
        github_item(4, body="other thread"),
    ]
    root, other = github_comments(items, lambda path: Document(PRICING))
    assert (root.id, root.author, root.source, root.commit_id) == ("github:1", "ana", "github", "c1")
    assert root.replies == [("bo", "agreed"), ("cy", "and a test")]
    assert (other.id, other.replies) == ("github:4", [])


REANCHOR_CASES = {
    "unchanged file": (PRICING, {}, ("open", 6, 6, "apply_discount")),
    "lines added above": ('"""Doc."""\nimport math\n\n' + PRICING, {}, ("open", 9, 9, "apply_discount")),
    "line edited slightly: found by the symbol": (
        PRICING.replace("percent / 100)", "percent / 100.0)"),
        {},
        ("open", 6, 6, "apply_discount"),
    ),
    "commented line deleted": (
        PRICING.replace("    return price * (1 - percent / 100)\n", "    return price\n"),
        {},
        ("outdated", 6, 6, None),
    ),
    "github outdated (line null) but the text is still there": (
        "\n" + PRICING,
        {"line": None},
        ("open", 7, 7, "apply_discount"),
    ),
    "github outdated and edited: no fuzzy guess": (
        PRICING.replace("percent / 100)", "percent / 100.0)"),
        {"line": None},
        ("outdated", 6, 6, None),
    ),
    "no hunk: the line number is trusted": (PRICING, {"diff_hunk": None}, ("open", 6, 6, "apply_discount")),
    "no hunk, past the end of the file": ("x = 1\n", {"diff_hunk": None}, ("outdated", 6, 6, None)),
    "comment on the whole file": (PRICING, {"line": None, "original_line": None}, ("open", 1, 1, None)),
}


@pytest.mark.parametrize("text, item, expected", REANCHOR_CASES.values(), ids=REANCHOR_CASES.keys())
def test_github_reanchoring(text, item, expected):
    comment = one_github(text, **item)
    assert (comment.state, comment.start_line, comment.end_line, comment.symbol) == expected


def test_github_identical_lines_are_told_apart_by_the_hunk_context():
    # b's `return total` was line 8; b has since moved above a, whose identical line is now 8.
    text = "def b(x):\n    z = x\n    return total\n\n\ndef a(x):\n    y = x\n    return total\n"
    hunk = "@@ -6,3 +6,3 @@\n def b(x):\n     z = x\n     return total"
    comment = one_github(text, line=8, hunk=hunk)
    assert (comment.start_line, comment.symbol) == (3, "b")


def test_github_fuzzy_match_uses_the_def_in_the_hunk_over_the_header():
    # The header names the function the hunk starts in; the commented line is in the next one.
    hunk = (
        "@@ -8,3 +8,6 @@ def apply_discount(price, percent):\n"
        " \n"
        " \n"
        "+def bulk_discount(quantity):\n"
        "+    if quantity > 50:"
    )
    edited = PRICING.replace("if quantity > 50:", "if quantity >= 50:")
    comment = one_github(edited, line=10, hunk=hunk)
    assert (comment.state, comment.start_line, comment.symbol) == ("open", 10, "bulk_discount")


def test_github_multi_line_range_moves_as_a_whole():
    hunk = (
        "@@ -15,4 +15,4 @@ class Cart:\n"
        "     def total(self):\n"
        "         total = 0\n"
        "         for price in self.prices:\n"
        "             total += price"
    )
    comment = one_github("import os\n" + PRICING, start_line=17, line=19, hunk=hunk)
    assert (comment.start_line, comment.end_line, comment.symbol) == (18, 20, "Cart.total")


def test_github_left_side_comment_on_a_deleted_line_is_outdated():
    hunk = "@@ -4,3 +4,3 @@\n def apply_discount(price, percent):\n-    return price - percent"
    assert one_github(PRICING, side="LEFT", line=5, hunk=hunk).state == "outdated"


def test_github_comment_on_a_missing_file_is_outdated():
    (comment,) = github_comments([github_item(1)], lambda path: None)
    assert comment.state == "outdated"


@pytest.mark.parametrize(
    "text",
    ['[{"id": 1}, {"id": 2}]', '[{"id": 1}]\n[{"id": 2}]', '[[{"id": 1}], [{"id": 2}]]'],
    ids=["one page", "paginate", "slurp"],
)
def test_export_items_reads_gh_api_output(text):
    assert [item["id"] for item in export_items(text)] == [1, 2]


def test_export_items_rejects_non_objects():
    with pytest.raises(ValueError):
        export_items("[1, 2]")


# --- JSONL -------------------------------------------------------------------------------


def test_jsonl_comments(caplog):
    text = "\n".join(
        [
            json.dumps({"path": "shop/pricing.py", "line": 6, "body": "clamp percent", "author": "dee"}),
            json.dumps({"id": "n2", "path": "shop/pricing.py", "line": 17, "end_line": 19, "body": "use sum"}),
            json.dumps({"path": "shop/pricing.py", "line": 99, "body": "past the end"}),
            json.dumps({"path": "gone.py", "line": 1, "body": "missing file"}),
            json.dumps({"path": "shop/pricing.py", "body": "no line"}),
            "[1, 2]",
            "not json",
            "",
        ]
    )
    files = {"shop/pricing.py": Document(PRICING)}
    with caplog.at_level(logging.WARNING):
        comments = jsonl_comments(text, files.get, "notes.jsonl")
    got = [(c.start_line, c.end_line, c.symbol, c.author, c.state) for c in comments]
    assert got == [
        (6, 6, "apply_discount", "dee", "open"),
        (17, 19, "Cart.total", None, "open"),
        (99, 99, None, None, "outdated"),
        (1, 1, None, None, "outdated"),
    ]
    assert comments[1].id == "jsonl:n2"
    assert [r.message.split(":")[:2] for r in caplog.records] == [
        ["notes.jsonl", "5"],
        ["notes.jsonl", "6"],
        ["notes.jsonl", "7"],
    ]
    assert comments[0].id == jsonl_comments(text, files.get)[0].id  # without an id, the same one each time


# --- workspace, store --------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path):
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "pricing.py").write_text(PRICING)
    return tmp_path


def write_reviews(root, name, text):
    folder = root / ".tracefix" / "reviews"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def test_collect_reads_every_source(workspace):
    (workspace / "shop" / "cart.py").write_text(
        "class Cart:\n    # review(@ana): reuse total()\n    def sum(self):\n        pass\n"
    )
    write_reviews(workspace, "pr-7.json", json.dumps([github_item(1)]))
    write_reviews(workspace, "notes.jsonl", json.dumps({"path": "shop/pricing.py", "line": 10, "body": "x"}) + "\n")
    # Neither a hidden directory nor a virtualenv is the project's code.
    for folder in (".git", "venv"):
        (workspace / folder).mkdir()
        (workspace / folder / "m.py").write_text("# review: not mine\nx = 1\n")
    (workspace / "venv" / "pyvenv.cfg").write_text("")
    comments = collect(workspace)
    assert [(c.source, c.path, c.start_line, c.symbol) for c in comments] == [
        ("inline", "shop/cart.py", 3, "Cart.sum"),
        ("github", "shop/pricing.py", 6, "apply_discount"),
        ("jsonl", "shop/pricing.py", 10, "bulk_discount"),
    ]


def test_collect_anchors_in_unsaved_buffers(workspace):
    write_reviews(workspace, "pr-7.json", json.dumps([github_item(1)]))
    (workspace / "shop" / "cart.py").write_text("# review: emptied in the editor\nx = 1\n")
    buffers = {
        str(workspace / "shop" / "pricing.py"): "import math\n" + PRICING + "\n# review: new file\nx = 1\n",
        f"file://{workspace}/shop/cart.py": "",
        "scratch.py": "# review: hi\ny = 2\n",
    }
    comments = collect(workspace, buffers)
    assert [(c.path, c.start_line) for c in comments] == [
        ("scratch.py", 2),
        ("shop/pricing.py", 7),
        ("shop/pricing.py", 24),
    ]


def test_collect_takes_extra_paths_and_skips_bad_files(workspace, caplog):
    def comment_file(relative, line):
        path = workspace / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"path": "shop/pricing.py", "line": line, "body": "x"}))

    (workspace / "pr.json").write_text(json.dumps([github_item(5)]))
    comment_file("more/n.jsonl", 1)
    comment_file("reviews/2026/a.jsonl", 2)
    comment_file("reviews/b.jsonl", 3)
    comment_file("reviews/b.txt", 4)
    write_reviews(workspace, "broken.json", "{not json")
    extra = ["pr.json", str(workspace / "more"), "reviews/**/*.jsonl", "pr.json", "nowhere.json"]
    with caplog.at_level(logging.WARNING):
        comments = collect(workspace, extra_paths=extra)
    assert [(c.source, c.start_line) for c in comments] == [
        ("jsonl", 1),
        ("jsonl", 2),
        ("jsonl", 3),
        ("github", 6),
    ]
    assert "broken.json" in caplog.text
    assert "nowhere.json matches no" in caplog.text


def test_extra_paths_come_from_the_review_settings(workspace, caplog):
    assert ReviewSet.from_settings(workspace, {"paths": ["a.json", "r/**/*.jsonl"]}).extra_paths == [
        "a.json",
        "r/**/*.jsonl",
    ]
    with caplog.at_level(logging.WARNING):
        assert ReviewSet.from_settings(workspace, {"paths": "a.json"}).extra_paths == []
    assert "review.paths" in caplog.text


def test_editor_comments_persist_reanchor_and_resolve(workspace):
    reviews = ReviewSet(workspace)
    added = reviews.add(f"file://{workspace}/shop/pricing.py", 10, 10, "use >=", author="me")
    assert (added.path, added.symbol, added.source, added.id[:7]) == (
        "shop/pricing.py",
        "bulk_discount",
        "editor",
        "editor:",
    )
    critic = reviews.add("shop/pricing.py", 6, 6, "negative prices", source="critic", text=PRICING)
    assert critic.id.startswith("critic:")

    (workspace / "shop" / "pricing.py").write_text("import math\n" + PRICING)
    found = {c.id: c for c in ReviewSet(workspace).collect()}
    assert (found[added.id].start_line, found[added.id].state, found[added.id].author) == (11, "open", "me")

    ReviewSet(workspace).resolve(critic.id)
    ReviewSet(workspace).resolve("inline:elsewhere.py:abc")  # any source's id can be resolved
    states = {c.id: c.state for c in ReviewSet(workspace).collect()}
    assert states == {added.id: "open", critic.id: "resolved"}

    (workspace / "shop" / "pricing.py").write_text("x = 1\n")
    assert {c.id: c.state for c in ReviewSet(workspace).collect()} == {
        added.id: "outdated",
        critic.id: "resolved",
    }


def test_add_to_a_missing_file_fails(workspace):
    with pytest.raises(FileNotFoundError):
        ReviewSet(workspace).add("nope.py", 1, 1, "x")


def test_state_write_is_atomic(workspace, monkeypatch):
    reviews = ReviewSet(workspace)
    reviews.add("shop/pricing.py", 6, 6, "kept")
    before = reviews.state_path.read_text()

    def torn(data, file, **kwargs):
        file.write('{"comments": [')
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", torn)
    with pytest.raises(OSError):
        reviews.resolve("github:1")
    assert reviews.state_path.read_text() == before
    assert os.listdir(reviews.state_path.parent) == ["state.json"]


@pytest.mark.parametrize(
    "content",
    [
        "{torn",
        '["a list"]',
        '{"resolved": "github:1"}',
        '{"comments": [{"id": "x"}]}',
        b"\xff\xfe".decode("latin-1"),
    ],
    ids=["bad json", "not an object", "resolved not a list", "comment without fields", "not utf-8"],
)
def test_corrupt_state_is_set_aside(workspace, content, caplog):
    reviews = ReviewSet(workspace)
    reviews.state_path.parent.mkdir(parents=True)
    reviews.state_path.write_text(content, encoding="latin-1")
    with caplog.at_level(logging.WARNING):
        assert reviews.collect() == []
        reviews.resolve("github:1")
    aside = [p.name for p in reviews.state_path.parent.iterdir() if p.name.startswith("state.json.corrupt-")]
    assert len(aside) == 1
    assert (reviews.state_path.parent / aside[0]).read_text(encoding="latin-1") == content
    assert json.loads(reviews.state_path.read_text())["resolved"] == ["github:1"]
    assert "moved it to" in caplog.text


def test_comments_for_symbol_keeps_open_comments_on_the_symbol_and_inside_it():
    def at(symbol, state="open", path="a.py"):
        return Comment(f"x:{symbol}:{state}:{path}", path, 1, 1, "b", symbol, state=state)

    comments = [
        at("Cart"),
        at("Cart.total"),
        at("Carts"),
        at(None),
        at("Cart", "resolved"),
        at("Cart", "outdated"),
        at("Cart", path="b.py"),
    ]
    assert [c.symbol for c in comments_for_symbol(comments, "a.py", "Cart")] == ["Cart", "Cart.total"]
    assert [c.symbol for c in comments_for_symbol(comments, "a.py", "Cart.total")] == ["Cart.total"]
    assert [c.symbol for c in comments_for_symbol(comments, "a.py", None)] == [None]


# --- addressing --------------------------------------------------------------------------

CHANGE_TYPES_CASES = {
    "Crashes on an empty cart": "edge-case",
    "What if percent is negative?": "edge-case",
    "This returns the wrong total": "bug",
    "Off by one, should be >=": "bug",
    "This is quadratic, use a set": "performance",
    "Reuse line_total here instead of duplicating it": "refactor/reuse",
    "Rename to unit_price": "style/naming",
    "Add a docstring": "docs",
    "Nice!": "other",
}


@pytest.mark.parametrize("text, kind", CHANGE_TYPES_CASES.items(), ids=CHANGE_TYPES_CASES.keys())
def test_change_type(text, kind):
    assert change_type(text) == kind


def test_describe_stages_change_type_location_request():
    comment = Comment(
        "github:1",
        "shop/pricing.py",
        6,
        7,
        "Crashes on empty input",
        "apply_discount",
        "ana",
        replies=[("bo", "yes")],
    )
    assert describe(comment) == (
        "Change type: edge-case\n"
        "Location: shop/pricing.py:6-7, in apply_discount\n"
        "Review (@ana): Crashes on empty input\n"
        "  Reply (@bo): yes"
    )


@pytest.mark.parametrize(
    "old, new, ranges",
    [
        ("a\nb\nc\n", "a\nB\nc\n", [(2, 2)]),
        ("a\nb\nc\n", "a\nc\n", [(2, 2)]),
        ("a\nb\nc\n", "a\nx\nb\nc\n", [(2, 1)]),
        ("a\nb\n", "a\nb\n", []),
    ],
    ids=["replace", "delete", "insert", "same"],
)
def test_changed_lines(old, new, ranges):
    assert changed_lines(old, new) == ranges


@pytest.mark.parametrize(
    "changed, expected",
    [
        ([(10, 10)], True),
        ([(12, 14)], True),  # within the slack below
        ([(7, 6)], True),  # insertion three lines above
        ([(15, 20)], False),
        ([(1, 5)], False),
        ([], False),
    ],
)
def test_touches(changed, expected):
    comment = Comment("x", "a.py", 10, 11, "b")
    assert touches(comment, changed) is expected


def test_addressing_an_inline_comment_touches_it_and_removes_it():
    text = PRICING.replace("    return price * (1", "    # review: clamp percent to 0..100\n    return price * (1")
    (comment,) = inline_comments("shop/pricing.py", text)
    fixed = apply(text, removal_edit(text, comment)).replace(
        "    return price", "    percent = min(max(percent, 0), 100)\n    return price"
    )
    assert touches(comment, changed_lines(text, fixed))
    assert inline_comments("shop/pricing.py", fixed) == []


# --- the shipped examples ----------------------------------------------------------------


def test_example_reviews_anchor_in_the_example_project():
    shop = EXAMPLES / "shop"
    if not (shop / "shop" / "pricing.py").exists():
        pytest.skip("examples/shop is not in this checkout")
    comments = collect(shop, extra_paths=[EXAMPLES / "reviews"])
    got = [(c.source, c.path, c.start_line, c.end_line, c.symbol, c.state) for c in comments if c.source != "inline"]
    assert got == [
        ("jsonl", "shop/cart.py", 11, 12, "Cart.add", "open"),
        ("github", "shop/cart.py", 16, 18, "Cart.subtotal", "open"),
        ("github", "shop/pricing.py", 8, 8, "apply_discount", "open"),
        ("github", "shop/pricing.py", 13, 13, "bulk_discount", "open"),
        ("github", "shop/pricing.py", 22, 22, None, "outdated"),
        ("jsonl", "shop/pricing.py", 25, 26, "with_tax", "open"),
        ("jsonl", "shop/text.py", 9, 9, "receipt_line", "open"),
    ]
    thread = next(c for c in comments if c.id == "github:1001")
    assert [author for author, _ in thread.replies] == ["bo"]
