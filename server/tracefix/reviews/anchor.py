"""Find the lines a comment was written about in a file that may have changed since."""

from __future__ import annotations

from collections.abc import Sequence
from difflib import SequenceMatcher

from tracefix.parsing.document import Document

FUZZY_RATIO = 0.7  # below this an edited line is taken for a different line
CONTEXT_LINES = 3  # lines kept from above a comment to tell identical lines apart


def relocate(
    doc: Document,
    target: Sequence[str],
    *,
    line: int,
    context: Sequence[str] = (),
    symbol: str | None = None,
    fuzzy: bool = True,
) -> int | None:
    """First line (1-based) where `target`, the commented lines' old text, is now; None if gone.

    Exact matches (ignoring indentation) win, the one with the most of `context` (the lines
    that stood just above) still above it, then the one nearest the old `line`. Failing
    that, and if `fuzzy`, the most similar lines inside the definition named `symbol`.
    """
    have = [text.strip() for text in doc.lines]
    want = [text.strip() for text in target]
    above = [text.strip() for text in context]
    n = len(want)
    exact = [i for i in range(len(have) - n + 1) if have[i : i + n] == want]
    if exact:
        return 1 + max(exact, key=lambda i: (_shared_above(have, i, above), -abs(i + 1 - line)))
    if not fuzzy or symbol is None or (definition := doc.find_symbol(symbol, line)) is None:
        return None
    joined = " ".join(want)
    starts = range(definition.start_line - 1, definition.end_line - n + 1)
    scored = [(SequenceMatcher(None, " ".join(have[i : i + n]), joined).ratio(), i) for i in starts]
    ratio, best = max(scored, default=(0.0, 0))
    return best + 1 if ratio >= FUZZY_RATIO else None


def _shared_above(have: list[str], start: int, above: list[str]) -> int:
    count = 0
    while count < len(above) and count < start and have[start - 1 - count] == above[-1 - count]:
        count += 1
    return count
