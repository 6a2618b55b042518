"""Text that is safe to print or publish: no terminal or editor control sequences.

A test's assertion message, its output, a file name or a model's reply can hold ESC, BEL or C1
codes: printed raw they clear the screen, set the window title or write the clipboard (OSC 52);
bidirectional overrides make code read differently from how it runs. Every text tracefix prints
or sends to an editor goes through `printable`, which shows such characters as escapes (ESC as
`\\x1b`) and keeps newlines and tabs.
"""

from __future__ import annotations

import logging
import re

# C0 controls but tab and newline (a CR left after CRLF became LF too), DEL, C1 controls, and
# bidirectional marks, embeddings, overrides and isolates
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with control characters shown as escapes; newlines and tabs kept, CRLF becomes LF."""
    return _CONTROL.sub(_escape, text.replace("\r\n", "\n"))


def printable_data(value: object) -> object:
    """`value` (JSON-like: dicts, lists, strings, numbers) with every string made printable."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable_data(k): printable_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable_data(v) for v in value]
    return value


class Printable(logging.Formatter):
    """Log lines with control characters escaped: a log is read in a terminal too."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))
