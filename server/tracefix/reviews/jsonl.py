"""Review comments one JSON object a line: {path, line, body, author}, optional end_line and id."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from tracefix.parsing.document import Document
from tracefix.reviews.comment import Comment, short_hash

log = logging.getLogger(__name__)


def jsonl_comments(text: str, doc: Callable[[str], Document | None], origin: str = "<jsonl>") -> list[Comment]:
    """The comments in `text`; a line that isn't a usable object is skipped with a warning.

    There is no old text to re-anchor by, so the line numbers are taken as they are; a
    comment past the end of its file (or on a missing file) is outdated.
    """
    comments = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            path, body = str(record["path"]), str(record["body"])
            start = int(record["line"])
            end = int(record.get("end_line") or start)
        except (ValueError, KeyError, TypeError) as error:
            log.warning("%s:%d: skipped, not a {path, line, body} object (%s)", origin, number, error)
            continue
        cid = f"jsonl:{record['id']}" if record.get("id") is not None else f"jsonl:{short_hash(path, start, body)}"
        comment = Comment(cid, path, start, end, body, author=record.get("author"), source="jsonl")
        found = doc(path)
        if found is None or not 1 <= start <= end <= len(found.lines):
            comment.state = "outdated"
        else:
            comment.symbol = found.symbol_at(start)
        comments.append(comment)
    return comments
