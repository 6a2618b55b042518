"""Pull-request review comments as `GET /repos/{o}/{r}/pulls/{n}/comments` returns them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable

from tracefix.parsing.document import Document
from tracefix.reviews.anchor import CONTEXT_LINES, relocate
from tracefix.reviews.comment import Comment

_HEADER = re.compile(r"@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@ ?(.*)")
_DEFINITION = re.compile(r"\s*(?:async\s+)?(?:def|class)\s+(\w+)")


def export_items(text: str) -> list[dict]:
    """The comment objects in a saved response: one array, the arrays `gh api --paginate`
    prints back to back, or the array of pages `--slurp` makes. Raises ValueError."""
    decoder = json.JSONDecoder()
    items: list[dict] = []
    text = text.strip()
    pos = 0
    while pos < len(text):
        value, pos = decoder.raw_decode(text, pos)
        items += _objects(value)
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return items


def _objects(value: object) -> list[dict]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [item for element in value for item in _objects(element)]
    raise ValueError(f"expected comment objects, found {type(value).__name__}")


def github_comments(items: Iterable[dict], doc: Callable[[str], Document | None]) -> list[Comment]:
    """One comment per thread, replies in order, anchored in the files `doc(path)` gives."""
    items = [item for item in items if "id" in item and item.get("path")]
    by_id = {item["id"]: item for item in items}
    threads: dict[object, list[dict]] = {}
    for item in sorted(items, key=lambda item: (item.get("created_at") or "", str(item["id"]))):
        threads.setdefault(_root(item, by_id)["id"], []).append(item)
    comments = []
    for root_id, thread in threads.items():
        root = by_id[root_id]
        replies = [(_login(item), item.get("body") or "") for item in thread if item is not root]
        comments.append(_anchored(root, replies, doc(root["path"])))
    return comments


def _root(item: dict, by_id: dict) -> dict:
    seen = set()
    while (parent := by_id.get(item.get("in_reply_to_id"))) is not None and parent["id"] not in seen:
        seen.add(item["id"])
        item = parent
    return item


def _login(item: dict) -> str | None:
    return (item.get("user") or {}).get("login")


def _anchored(item: dict, replies: list, doc: Document | None) -> Comment:
    # `line` is null once the pull request's latest diff no longer shows the line: GitHub
    # calls that outdated, so only an exact match of the old text brings it back.
    live = item.get("line") is not None
    side = item.get("side") or "RIGHT"
    end = item.get("line") if live else item.get("original_line")
    start = (item.get("start_line") if live else item.get("original_start_line")) or end
    comment = Comment(
        id=f"github:{item['id']}",
        path=item["path"],
        start_line=start or 1,
        end_line=end or 1,
        body=item.get("body") or "",
        author=_login(item),
        source="github",
        replies=replies,
        commit_id=item.get("commit_id"),
        diff_hunk=item.get("diff_hunk"),
    )
    if doc is None:
        comment.state = "outdated"
    elif end is not None:  # no line at all: a comment on the whole file, left at line 1
        # A comment on the left side is about a line the pull request removed: exact or nothing.
        _reanchor(comment, doc, start or end, end, side, fuzzy=live and side == "RIGHT")
    return comment


def _reanchor(comment: Comment, doc: Document, start: int, end: int, side: str, fuzzy: bool) -> None:
    start = min(start, end)
    text, symbol = _hunk_side(comment.diff_hunk or "", side)
    count = min(end - start + 1, len(text))  # a hunk can stop short of a long range's top
    if count:
        found = relocate(
            doc,
            text[-count:],
            line=end - count + 1,
            context=text[:-count][-CONTEXT_LINES:],
            symbol=_enclosing(text, count) or symbol,
            fuzzy=fuzzy,
        )
        found = None if found is None else found + count - 1
    else:
        found = end if end <= len(doc.lines) else None  # nothing to check the numbers against
    if found is None:
        comment.state = "outdated"
        return
    comment.start_line = max(1, found - (end - start))
    comment.end_line = found
    comment.symbol = doc.symbol_at(comment.start_line)


def _hunk_side(hunk: str, side: str) -> tuple[list[str], str | None]:
    """The hunk's lines as they read on the commented side, and the definition its header names.

    GitHub cuts the hunk at the commented line, so that line is the last one.
    """
    dropped = "-" if side == "RIGHT" else "+"
    text: list[str] = []
    symbol = None
    for line in hunk.split("\n") if hunk else []:
        if header := _HEADER.match(line):
            symbol = _definition_name(header[1])
        elif line[:1] != dropped and line[:1] != "\\":  # "\ No newline at end of file"
            text.append(line[1:])
    return text, symbol


def _enclosing(text: list[str], count: int) -> str | None:
    """Name of the def/class the commented lines sit in (or start), from the hunk's own text."""
    first = text[-count]
    if name := _definition_name(first):
        return name
    indent = len(first) - len(first.lstrip())
    for line in reversed(text[:-count]):
        depth = len(line) - len(line.lstrip())
        if line.strip() and depth < indent:
            if name := _definition_name(line):
                return name
            indent = depth  # an outer if/for/with: only a def further out encloses both
    return None


def _definition_name(line: str) -> str | None:
    match = _DEFINITION.match(line)
    return match[1] if match else None
