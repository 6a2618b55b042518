"""`# review: ...` comments written in the code itself.

A block starts at a comment that begins with `# review:` or `# review(@who):` (any case)
and takes in the comments on the following lines at the same column: more `# review`
lines by the same author, or plain `#` lines, continue the current entry; a `# review`
line by another author starts a reply. The block is about the statement that follows
it (or, for a trailing comment, the statement on its line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from tracefix.parsing.document import Document
from tracefix.reviews.comment import Comment, short_hash

_MARKER = re.compile(r"#\s*review\s*(?:\(\s*@?([^)]*?)\s*\))?\s*:(.*)", re.IGNORECASE)


@dataclass
class Block:
    first_row: int  # 0-based rows of the comment lines
    last_row: int
    column: int  # byte column of the first "#"
    standalone: bool  # nothing but the comment on its first line
    entries: list[tuple[str | None, list[str]]]  # (author, lines) of the comment, then replies


class Removal(NamedTuple):
    """Replace lines start_line..end_line (1-based, inclusive, line endings included) with `text`."""

    start_line: int
    end_line: int
    text: str


def inline_comments(path: str, text: str) -> list[Comment]:
    """The review comments written in `text`, the current (possibly unsaved) content of `path`."""
    return [comment for _, comment in parse(path, Document(text))]


def removal_edit(text: str, comment: Comment) -> Removal | None:
    """The edit that deletes an inline comment's lines from `text`, so addressing it removes it.

    A trailing comment keeps the code before it. None when the comment is not in `text`.
    """
    doc = Document(text)
    for block, found in parse(comment.path, doc):
        if found.id != comment.id:
            continue
        if block.standalone:
            return Removal(block.first_row + 1, block.last_row + 1, "")
        code = doc.before(block.first_row, block.column).rstrip()
        if block.last_row == len(doc.lines) - 1 and not text.endswith("\n"):
            newline = ""
        else:
            newline = "\r\n" if doc.lines[block.last_row].endswith("\r") else "\n"
        return Removal(block.first_row + 1, block.last_row + 1, code + newline)
    return None


def mentions_review(text: str) -> bool:
    """Cheap test that lets a workspace scan skip parsing files with no review comment."""
    return re.search(r"#\s*review", text, re.IGNORECASE) is not None


def parse(path: str, doc: Document) -> list[tuple[Block, Comment]]:
    """Each review comment block in `doc` with the comment it makes."""
    found = []
    seen: dict[str, int] = {}
    for block in _blocks(doc):
        (author, body), *rest = [(who, "\n".join(lines).strip()) for who, lines in block.entries]
        if not body:
            continue
        start, end = _anchor(doc, block)
        key = f"inline:{path}:{short_hash(body)}"
        seen[key] = seen.get(key, 0) + 1
        # The id follows the text, not the line, so resolving survives edits above it.
        cid = key if seen[key] == 1 else f"{key}-{seen[key]}"
        replies = [(who, said) for who, said in rest if said]
        comment = Comment(cid, path, start, end, body, doc.symbol_at(start), author, "inline", replies=replies)
        found.append((block, comment))
    return found


def _blocks(doc: Document) -> list[Block]:
    blocks: list[Block] = []
    current: Block | None = None
    for node in doc.comments():
        row, column = node.start_point
        text = (node.text or b"").decode(errors="replace").rstrip()
        standalone = not doc.before(row, column).strip()
        marker = _MARKER.match(text)
        if current and row == current.last_row + 1 and standalone and column == current.column:
            current.last_row = row
            author, lines = current.entries[-1]
            if marker is None:
                lines.append(text[1:].strip())
            elif _author(marker) in (None, author):
                lines.append(marker[2].strip())
            else:
                current.entries.append((_author(marker), [marker[2].strip()]))
        elif marker:
            current = Block(row, row, column, standalone, [(_author(marker), [marker[2].strip()])])
            blocks.append(current)
        else:
            current = None
    return blocks


def _author(marker: re.Match) -> str | None:
    return marker[1] or None


def _anchor(doc: Document, block: Block) -> tuple[int, int]:
    if not block.standalone:
        return doc.statement_at(block.first_row, _indent(doc, block.first_row), starting=False)
    after = next((r for r in range(block.last_row + 1, len(doc.lines)) if _is_code(doc, r)), None)
    # A comment that closes a body (the next code is dedented) is about what came before it.
    if after is not None and _indent(doc, after) >= block.column:
        return doc.statement_at(after, _indent(doc, after), starting=True)
    before = next((r for r in range(block.first_row - 1, -1, -1) if _is_code(doc, r)), None)
    if before is not None:
        return doc.statement_at(before, _indent(doc, before), starting=False)
    return block.first_row + 1, block.last_row + 1


def _is_code(doc: Document, row: int) -> bool:
    stripped = doc.lines[row].strip()
    return bool(stripped) and not stripped.startswith("#")


def _indent(doc: Document, row: int) -> int:
    line = doc.lines[row]
    return len(line) - len(line.lstrip())
