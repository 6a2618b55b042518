"""Turn a model's reply into a candidate edit of one function, or say why it cannot be one."""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass

from tracefix.fixing.prompt import FixRequest

FENCE = re.compile(r"^[ \t]*```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.S | re.M | re.I)
SEARCH_REPLACE = re.compile(r"^<{5,9} ?SEARCH[^\n]*\n(.*?)^={5,9}[ \t]*\n(.*?)^>{5,9} ?REPLACE[^\n]*$", re.S | re.M)
FUNCTION = (ast.FunctionDef, ast.AsyncFunctionDef)
# Lines as editors count them; str.splitlines also splits at form feeds and other separators.
LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def lines_of(text: str) -> list[str]:
    """The lines of text, each with its line ending."""
    return LINE.findall(text)


def _same_code(a: str, b: str) -> bool:
    return [line.rstrip() for line in lines_of(a.strip())] == [line.rstrip() for line in lines_of(b.strip())]


class TargetError(Exception):
    """The function to fix is not where the request says, or cannot be tested safely."""


@dataclass
class Target:
    """The function being fixed, as it is in the file the editor has."""

    path: str
    name: str
    file_text: str
    start: int  # 1-based inclusive, the first decorator
    end: int
    indent: str  # the def's leading whitespace
    newline: str

    @classmethod
    def from_request(cls, request: FixRequest) -> Target:
        try:
            text = request.file_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise TargetError(f"cannot read {request.path}: {exc}") from None
        lines = lines_of(text)
        start, end = request.function_start_line, request.function_end_line
        if not 1 <= start <= end <= len(lines):
            raise TargetError(f"{request.path} has {len(lines)} lines, the request names lines {start}-{end}")
        source = "".join(lines[start - 1 : end])
        if not _same_code(source, request.function_source):
            raise TargetError(
                f"{request.qualname} in {request.path} lines {start}-{end} differs from the request's "
                "function source; the file changed since the request was made"
            )
        first = lines[start - 1]
        return cls(
            path=request.path,
            name=request.name,
            file_text=text,
            start=start,
            end=end,
            indent=first[: len(first) - len(first.lstrip())],
            newline="\r\n" if first.endswith("\r\n") else "\n",
        )

    @property
    def source(self) -> str:
        return "".join(lines_of(self.file_text)[self.start - 1 : self.end])


@dataclass
class Candidate:
    function_source: str  # replaces lines[0]..lines[1] of the original file, indentation included
    file_text: str  # the whole file with the candidate in place
    diff: str  # unified diff of the file
    lines: tuple[int, int]  # 1-based inclusive range of the original file that is replaced

    @property
    def size(self) -> int:
        """Changed lines, for preferring the smallest fix."""
        return sum(1 for line in self.diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---")))


@dataclass
class Rejected:
    reason: str


def parse_reply(text: str, target: Target, *, allow_signature_change: bool = False) -> Candidate | Rejected:
    edits = SEARCH_REPLACE.findall(text)
    found = (
        _apply_edits(target.source.replace("\r\n", "\n"), edits) if edits else _function_from_blocks(text, target.name)
    )
    if isinstance(found, Rejected):
        return found
    source, def_column = found
    function = _reindent(source, def_column, target.indent)
    if target.newline != "\n":
        function = function.replace("\n", target.newline)
    return _candidate(function, target, allow_signature_change)


def _function_from_blocks(text: str, name: str) -> tuple[str, int] | Rejected:
    """The def of `name` from the fenced blocks (last one wins); its source and column."""
    fenced = FENCE.findall(text)
    syntax_error = None
    for block in reversed(fenced or [text]):  # no fence: maybe a bare function
        code = _dedent_block(block)
        try:
            tree = ast.parse(code)
        except SyntaxError as exc:
            syntax_error = exc
            continue
        node = _find_def(tree, name)
        if node is not None:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            return "".join(lines_of(code)[first - 1 : node.end_lineno]), node.col_offset
    if not fenced:
        return Rejected(f"the reply has no ```python block with {name}")
    if syntax_error is not None:
        return Rejected(f"the reply's code does not parse: {syntax_error.msg} (line {syntax_error.lineno})")
    return Rejected(f"the reply does not define {name}")


def _dedent_block(block: str) -> str:
    """Strip the indentation common to all lines, so a method quoted alone parses."""
    lines = lines_of(block)
    widths = [len(line) - len(line.lstrip(" \t")) for line in lines if line.strip()]
    cut = min(widths, default=0)
    return "".join(line[cut:] if line.strip() else line.lstrip(" \t") for line in lines)


def _find_def(tree: ast.AST, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """A top-level def of `name`, else one nested anywhere (a method quoted with its class)."""
    top = [n for n in getattr(tree, "body", []) if isinstance(n, FUNCTION) and n.name == name]
    if top:
        return top[-1]
    nested = [n for n in ast.walk(tree) if isinstance(n, FUNCTION) and n.name == name]
    return nested[0] if nested else None


def _apply_edits(source: str, edits: list[tuple[str, str]]) -> tuple[str, int] | Rejected:
    for search, replace in edits:
        search, replace = search.rstrip("\n"), replace.rstrip("\n")
        count = source.count(search) if search else 0
        if count != 1:
            where = "does not match" if count == 0 else f"matches {count} places in"
            return Rejected(f"a SEARCH block {where} the function")
        source = source.replace(search, replace, 1)
    first = lines_of(source)[0] if source.strip() else ""
    return source, len(first) - len(first.lstrip())


def _reindent(source: str, column: int, indent: str) -> str:
    """Move the function from `column` to `indent`, lines inside strings included."""
    out = []
    for line in lines_of(source):
        line = line.rstrip("\r\n")
        if not line.strip():
            out.append("")
            continue
        lead = len(line) - len(line.lstrip(" \t"))
        out.append(indent + line[min(lead, column) :])
    return "\n".join(out) + "\n"


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """Name, parameters and defaults: what callers depend on. Annotations are left out, since a
    model that drops or adds a type hint has not changed how the function is called."""
    args = node.args
    names = [[a.arg for a in group] for group in (args.posonlyargs, args.args, args.kwonlyargs)]
    stars = [a.arg if a else None for a in (args.vararg, args.kwarg)]
    defaults = [ast.dump(d) if d is not None else None for d in (*args.defaults, *args.kw_defaults)]
    return f"{type(node).__name__} {node.name} {names} {stars} {defaults}"


def _parse_def(source: str, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    return _find_def(ast.parse(_dedent_block(source)), name)


def _candidate(function: str, target: Target, allow_signature_change: bool) -> Candidate | Rejected:
    try:
        new_node = _parse_def(function, target.name)
    except SyntaxError as exc:
        return Rejected(f"the fixed function does not parse: {exc.msg} (line {exc.lineno})")
    if new_node is None:
        return Rejected(f"the reply does not define {target.name}")
    try:
        old_node = _parse_def(target.source, target.name)
    except SyntaxError:
        old_node = None  # an unsaved buffer in the middle of an edit: nothing to compare with
    if not allow_signature_change and old_node is not None and _signature(old_node) != _signature(new_node):
        return Rejected(
            f"the reply changes the signature of {target.name} (name, parameters or defaults), "
            "which is not allowed for this fix"
        )
    lines = lines_of(target.file_text)
    old = "".join(lines[target.start - 1 : target.end])
    if not old.endswith(("\n", "\r")):
        function = function.rstrip("\r\n")  # the function was the file's unterminated last line
    if _same_code(function, old):
        return Rejected("the reply repeats the function unchanged")
    new_text = "".join(lines[: target.start - 1]) + function + "".join(lines[target.end :])
    try:
        ast.parse(new_text)
    except SyntaxError as exc:
        if parses(target.file_text):  # an unsaved buffer that is already broken is not our fault
            return Rejected(f"the file does not parse with the fix: {exc.msg} (line {exc.lineno})")
    diff = "".join(
        difflib.unified_diff(
            lines_of(target.file_text),
            lines_of(new_text),
            fromfile=f"a/{target.path}",
            tofile=f"b/{target.path}",
        )
    )
    return Candidate(function, new_text, diff, (target.start, target.end))


def parses(text: str) -> bool:
    try:
        ast.parse(text)
    except SyntaxError:
        return False
    return True
