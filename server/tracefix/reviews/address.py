"""Checks the "Address review" action runs on a candidate edit."""

from __future__ import annotations

from collections.abc import Iterable
from difflib import SequenceMatcher

from tracefix.reviews.comment import Comment

SLACK = 3  # lines around the commented ones an edit may change and still be about them


def changed_lines(old: str, new: str) -> list[tuple[int, int]]:
    """Line ranges of `old` (1-based, inclusive) that `new` replaces or deletes.

    Lines inserted before line k and replacing nothing show as (k, k - 1).
    """
    matcher = SequenceMatcher(None, old.splitlines(), new.splitlines(), autojunk=False)
    return [(i1 + 1, i2) for tag, i1, i2, _, _ in matcher.get_opcodes() if tag != "equal"]


def touches(comment: Comment, changed: Iterable[tuple[int, int]], slack: int = SLACK) -> bool:
    """Whether an edit changing `changed` (ranges as changed_lines gives them) is about the
    commented lines: it changes them or lines within `slack` of them, such as a guard added
    just above. A comment above a definition covers the whole definition already.
    """
    low, high = comment.start_line - slack, comment.end_line + slack
    for start, end in changed:
        start, end = min(start, end), max(start, end)  # an insertion sits between its two lines
        if start <= high and end >= low:
            return True
    return False
