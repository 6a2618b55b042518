"""The review comment every source is turned into, and the change type a fix prompt starts from."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Literal

Source = Literal["inline", "github", "jsonl", "editor", "critic"]
State = Literal["open", "resolved", "outdated"]


@dataclass
class Comment:
    """One review thread anchored in the workspace.

    Lines are 1-based and inclusive and refer to the file as it is now (buffer or disk),
    not as it was when the comment was written. When that can't be established the state
    is "outdated" and the lines are the ones the source gave, not to be trusted.
    """

    id: str
    path: str  # relative to the workspace root, posix
    start_line: int
    end_line: int
    body: str
    symbol: str | None = None  # qualified name of the enclosing def/class, e.g. "Cart.total"
    author: str | None = None
    source: Source = "inline"
    state: State = "open"
    replies: list[tuple[str | None, str]] = field(default_factory=list)
    commit_id: str | None = None  # GitHub only
    diff_hunk: str | None = None  # GitHub only


def short_hash(*parts: object) -> str:
    return hashlib.sha1("\0".join(map(str, parts)).encode()).hexdigest()[:12]


# First match wins, so the more specific kinds come first: "crashes on an empty cart" is an
# edge case before it is a bug, "rename this duplicated helper" is naming before reuse.
_KINDS = [
    (
        "edge-case",
        r"edge.?case|corner.?case|empty|\bnone\b|\bnull\b|\bzero\b|negative|boundar|overflow|"
        r"out of range|\bnan\b|at least|at most|more than|less than|over \d|under \d|inclusive|exclusive",
    ),
    (
        "bug",
        r"\bbug|wrong|incorrect|crash|broken|off.by.one|\bfails?\b|raises?\b|exception|should (?:be|return)|"
        r"doesn'?t work|regress",
    ),
    (
        "performance",
        r"\bslow|perf|faster|quadratic|o\(n|complexity|cache|memo|allocat|inefficient|"
        r"n\+1|loop over|every call",
    ),
    (
        "style/naming",
        r"renam|\bnam(?:e|ing)|typo|spelling|pep ?8|format|style|consistent|unused|"
        r"snake.?case|camel.?case|readab",
    ),
    ("docs", r"docstring|document|\bdocs?\b|comment|explain|readme|type hint|annotat"),
    (
        "refactor/reuse",
        r"reuse|duplicat|refactor|extract|helper|already (?:exists|have)|\bdry\b|simplif|"
        r"split|inline this|move (?:this|it)",
    ),
]
_KIND_PATTERNS = [(kind, re.compile(pattern, re.IGNORECASE)) for kind, pattern in _KINDS]
CHANGE_TYPES = [kind for kind, _ in _KINDS] + ["other"]


def change_type(text: str) -> str:
    """Classify review text into one of CHANGE_TYPES by keyword rules."""
    for kind, pattern in _KIND_PATTERNS:
        if pattern.search(text):
            return kind
    return "other"


def describe(comment: Comment) -> str:
    """The comment staged as change type, then location, then the request itself.

    Naming the kind of change and where it applies before the text is what lets a model
    make the edit the reviewer asked for rather than a plausible nearby one.
    """
    where = f"{comment.path}:{comment.start_line}"
    if comment.end_line != comment.start_line:
        where += f"-{comment.end_line}"
    if comment.symbol:
        where += f", in {comment.symbol}"
    lines = [
        f"Change type: {change_type(comment.body)}",
        f"Location: {where}",
        f"Review{_by(comment.author)}: {comment.body}",
    ]
    lines += [f"  Reply{_by(author)}: {body}" for author, body in comment.replies]
    return "\n".join(lines)


def _by(author: str | None) -> str:
    return f" (@{author})" if author else ""
