"""What a traced test run recorded, and how to read it: as text, as inline values, as JSON."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tracefix.paths import read_text

LINE_CHARS = 300  # one rendered line at most, so one wide block cannot eat the budget
GAP_CHARS = 32  # room kept for each "… N lines omitted" marker
CODE_CHARS = 100  # one line of code shown beside its values

Source = Callable[[str, int], str]  # (workspace-relative path, 1-based line) -> that line's text


@dataclass
class Block:
    """One executed basic block (or, with a note, a run of loop iterations condensed into one)."""

    start_line: int
    end_line: int
    changed: dict[str, str] = field(default_factory=dict)  # locals it changed -> repr
    note: str = ""  # "…×7 iterations": the iterations dropped; changed is their net effect

    @property
    def label(self) -> str:
        lines = f"L{self.start_line}" if self.start_line == self.end_line else f"L{self.start_line}-L{self.end_line}"
        return f"[{self.note} {lines}]" if self.note else f"[block {lines}]"


@dataclass
class Call:
    """One invocation of a workspace function, its blocks in execution order."""

    path: str  # relative to the workspace root, '/'-separated
    qualname: str
    first_line: int
    last_line: int
    depth: int = 0  # nesting among traced calls; the test function is 0
    index: int = 1  # this was the function's index-th invocation in the test
    args: dict[str, str] = field(default_factory=dict)
    returned: str | None = None
    exception: str | None = None  # what it raised, when it exited by an exception
    exit_line: int | None = None
    blocks: list[Block] = field(default_factory=list)

    def contains(self, path: str, line: int) -> bool:
        return self.path == path and self.first_line <= line <= self.last_line

    def state_after(self, line: int) -> dict[str, str] | None:
        """Locals after the last execution of the block holding line; None if it never ran."""
        state = dict(self.args)
        body = min((b.start_line for b in self.blocks if not b.note), default=self.first_line + 1)
        found = dict(state) if line < body else None  # the signature: the arguments
        for block in self.blocks:
            state.update(block.changed)
            if not block.note and block.start_line <= line <= block.end_line:
                found = dict(state)
        return found


@dataclass
class Trace:
    nodeid: str
    outcome: str | None = None  # passed / failed / skipped / error; None when the test never finished
    exception: str | None = None  # the test's failure message
    calls: list[Call] = field(default_factory=list)  # in the order they started
    truncated: bool = False  # budgets dropped some of what ran
    error: str | None = None  # why the trace is missing or incomplete (timeout, crash)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Trace:
        calls = [
            Call(**{**call, "blocks": [Block(**block) for block in call.get("blocks", ())]})
            for call in data.get("calls", ())
        ]
        return cls(
            nodeid=data["nodeid"],
            outcome=data.get("outcome"),
            exception=data.get("exception"),
            calls=calls,
            truncated=bool(data.get("truncated")),
            error=data.get("error"),
        )

    def failing_call(self, path: str, line: int) -> Call | None:
        """The invocation of the innermost function around line that matters: the last one that
        raised, else the last one."""
        around = [c for c in self.calls if c.contains(path, line)]
        if not around:
            return None
        innermost = max(c.first_line for c in around)
        candidates = [c for c in around if c.first_line == innermost]
        raised = [c for c in candidates if c.exception is not None]
        return (raised or candidates)[-1]

    def values_at(self, path: str, line: int) -> list[tuple[str, str]]:
        """(name, repr) of the locals after the block holding line ran, in the failing invocation."""
        call = self.failing_call(path, line)
        state = call.state_after(line) if call else None
        return list(state.items()) if state else []

    def render(self, max_chars: int = 6000, source: Source | None = None) -> str:
        """Readable text of the trace (LDB style), at most max_chars; when it must shrink, the
        blocks of calls that raised and the last blocks of every call are the last to go.
        With `source`, each block shows its code, one entry per line, next to the values it set,
        so a reader (or a model) need not map line numbers back to the function."""
        lines = self._lines(source)
        kept = [True] * len(lines)
        size = sum(len(text) + 1 for _, text in lines)
        gaps = 0
        for index in sorted(range(len(lines)), key=lambda i: (lines[i][0], i)):
            if size + gaps * GAP_CHARS <= max_chars or lines[index][0] >= _ESSENTIAL:
                break
            kept[index] = False
            size -= len(lines[index][1]) + 1
            before = index > 0 and not kept[index - 1]
            after = index + 1 < len(lines) and not kept[index + 1]
            gaps += 1 - before - after
        out: list[str] = []
        for index, (_, text) in enumerate(lines):
            if kept[index]:
                out.append(text)
            elif index == 0 or kept[index - 1]:
                run = next((j for j in range(index, len(lines)) if kept[j]), len(lines)) - index
                out.append(f"{_indent(text)}… {run} line{'s' if run > 1 else ''} omitted")
        text = "\n".join(out)
        return text if len(text) <= max_chars else text[: max_chars - 1] + "…"

    def _lines(self, source: Source | None) -> list[tuple[int, str]]:
        """(priority, text); lower priorities are dropped first when the text must shrink."""
        title = f"Trace of {self.nodeid}" + (f" ({self.outcome})" if self.outcome else "")
        lines = [(_ESSENTIAL, title)]
        if self.error:
            lines.append((_ESSENTIAL, f"error: {self.error}"))
        if self.exception:
            lines += [(_ESSENTIAL, _clip(line)) for line in self.exception.splitlines()[:8] if line.strip()]
        if self.truncated:
            lines.append((_ESSENTIAL, "(budgets reached: some calls or blocks were not recorded)"))
        for call in self.calls:
            pad = "  " * call.depth
            raised = call.exception is not None
            args = ", ".join(f"{name}={value}" for name, value in call.args.items())
            nth = f" [call #{call.index}]" if call.index > 1 else ""
            header = f"{pad}{call.qualname}({args}) at {call.path}:{call.first_line}{nth}"
            lines.append((_ESSENTIAL if raised else 3, _clip(header)))
            last = len(call.blocks) - 2
            for position, block in enumerate(call.blocks):
                priority = (2 + raised) if position >= last else (1 + raised)
                # a raising block ran only up to the raise
                stop = call.exit_line if raised and position == len(call.blocks) - 1 else None
                code = _code(source, call.path, block, stop) if source and not block.note else []
                if not code:
                    values = " ".join(f"{name}={value}" for name, value in block.changed.items())
                    lines.append((priority, _clip(f"{pad}  {block.label} {values}".rstrip())))
                for number, text, values in code:
                    lines.append((priority, _clip(f"{pad}  [L{number}] {text}" + (f"  # {values}" if values else ""))))
            if call.exception is not None:
                where = f" at L{call.exit_line}" if call.exit_line else ""
                lines.append((_ESSENTIAL, _clip(f"{pad}  raised {call.exception.splitlines()[0]}{where}")))
            elif call.returned is not None:
                lines.append((3, _clip(f"{pad}  returned {call.returned}")))
        return lines


_ESSENTIAL = 4  # never dropped: the title, the failure, and the headers and exits of raising calls


def lines_in(root: Path) -> Source:
    """A `source` for Trace.render that reads the workspace's files (each once)."""
    files: dict[str, list[str]] = {}

    def line(path: str, number: int) -> str:
        if path not in files:
            files[path] = (read_text(Path(root) / path) or "").splitlines()
        text = files[path]
        return text[number - 1] if 0 < number <= len(text) else ""

    return line


def _code(source: Source, path: str, block: Block, stop: int | None) -> list[tuple[int, str, str]]:
    """(line number, code, values) for each line of the block up to line stop, one per source
    line; a value goes on the last line that mentions its name (the block's last line when none
    does): what the name holds once that line ran, since the rest of the block leaves it alone."""
    end = min(block.end_line, stop) if stop and stop >= block.start_line else block.end_line
    code = [(n, source(path, n).strip()) for n in range(block.start_line, end + 1)]
    code = [(n, text) for n, text in code if text and not text.startswith("#")]
    if not code:
        return []
    values: dict[int, list[str]] = {}
    for name, value in block.changed.items():
        word = re.compile(rf"(?<![\w.]){re.escape(name)}(?!\w)")
        at = next((n for n, text in reversed(code) if word.search(text)), code[-1][0])
        values.setdefault(at, []).append(f"{name}={value}")
    return [(n, _shorten(text), " ".join(values.get(n, ()))) for n, text in code]


def _shorten(code: str) -> str:
    return code if len(code) <= CODE_CHARS else code[: CODE_CHARS - 1] + "…"


def _clip(text: str) -> str:
    return text if len(text) <= LINE_CHARS else text[: LINE_CHARS - 1] + "…"


def _indent(text: str) -> str:
    return text[: len(text) - len(text.lstrip())]
