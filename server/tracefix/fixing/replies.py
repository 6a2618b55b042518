"""Turn a model's reply into a candidate edit of one or more functions, or say why it cannot be one."""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass, field

from tracefix.fixing.prompt import FixRequest, Subject

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
    """A function being fixed, as it is in the file the editor has."""

    path: str
    name: str
    file_text: str
    start: int  # 1-based inclusive, the first decorator
    end: int
    indent: str  # the def's leading whitespace
    newline: str
    qualname: str = ""

    @classmethod
    def from_request(cls, request: FixRequest) -> Target:
        """The request's primary function."""
        return cls.of(request, request.subjects(wide=False)[0])

    @classmethod
    def of(cls, request: FixRequest, subject: Subject) -> Target:
        try:
            text = request.file_text(subject.path)
        except (OSError, UnicodeDecodeError) as exc:
            raise TargetError(f"cannot read {subject.path}: {exc}") from None
        lines = lines_of(text)
        start, end = subject.start_line, subject.end_line
        if not 1 <= start <= end <= len(lines):
            raise TargetError(f"{subject.path} has {len(lines)} lines, the request names lines {start}-{end}")
        source = "".join(lines[start - 1 : end])
        if not _same_code(source, subject.source):
            raise TargetError(
                f"{subject.qualname} in {subject.path} lines {start}-{end} differs from the request's "
                "function source; the file changed since the request was made"
            )
        first = lines[start - 1]
        return cls(
            path=subject.path,
            name=subject.name,
            file_text=text,
            start=start,
            end=end,
            indent=first[: len(first) - len(first.lstrip())],
            newline="\r\n" if first.endswith("\r\n") else "\n",
            qualname=subject.qualname,
        )

    @property
    def source(self) -> str:
        return "".join(lines_of(self.file_text)[self.start - 1 : self.end])

    @property
    def label(self) -> str:
        return f"{self.path}::{self.qualname or self.name}"


def targets_for(request: FixRequest, wide: bool) -> list[Target]:
    """The functions a round's candidates may rewrite; one nested in another is left to the outer."""
    found: list[Target] = []
    for subject in request.subjects(wide):
        target = Target.of(request, subject)
        if not any(t.path == target.path and t.start <= target.start <= t.end for t in found):
            found.append(target)
    return found


@dataclass
class Rewrite:
    path: str
    qualname: str
    source: str  # replaces lines[0]..lines[1] of the original file, indentation included
    lines: tuple[int, int]  # 1-based inclusive range of the original file that is replaced


@dataclass
class Candidate:
    texts: dict[str, str]  # path → the whole file with the candidate in place
    diff: str  # unified diff of every file it changes
    rewrites: list[Rewrite] = field(default_factory=list)  # the functions it rewrites
    title: str = ""  # a model-free candidate says what it is ("Revert the change at …")

    @property
    def file_text(self) -> str:
        """The text of the (first) file it changes."""
        return self.texts[self.rewrites[0].path] if self.rewrites else next(iter(self.texts.values()))

    @property
    def function_source(self) -> str:
        return "".join(r.source for r in self.rewrites)

    @property
    def size(self) -> int:
        """Changed lines, for preferring the smallest fix."""
        return sum(1 for line in self.diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---")))


@dataclass
class Rejected:
    reason: str


def parse_reply(
    text: str, targets: Target | list[Target], *, allow_signature_change: bool = False
) -> Candidate | Rejected:
    targets = [targets] if isinstance(targets, Target) else targets
    edits = SEARCH_REPLACE.findall(text)
    if edits:
        found = _edited(targets, edits)
    else:
        found = _functions_from_blocks(text, targets)
    if isinstance(found, Rejected):
        return found
    rewrites: list[tuple[Target, str]] = []
    for target, (source, def_column) in found:
        function = _reindent(source, def_column, target.indent)
        if target.newline != "\n":
            function = function.replace("\n", target.newline)
        rewrites.append((target, function))
    return _candidate(rewrites, allow_signature_change)


def _edited(targets: list[Target], edits: list[tuple[str, str]]) -> list[tuple[Target, tuple[str, int]]] | Rejected:
    """SEARCH/REPLACE edits apply to the first function they all match."""
    first: Rejected | None = None
    for target in targets:
        found = _apply_edits(target.source.replace("\r\n", "\n"), edits)
        if not isinstance(found, Rejected):
            return [(target, found)]
        first = first or found
    return first or Rejected("a SEARCH block does not match the function")


HEADER = re.compile(r"\A\s*#\s*(\S+?)\s*$", re.M)


def _named(block: str, targets: list[Target]) -> Target | None:
    """The target a block's first-line comment names (`# path::qualname`, or the qualname alone)."""
    match = HEADER.match(block)
    if match is None:
        return None
    name = match.group(1)
    return next((t for t in targets if name in (t.label, t.qualname, t.name)), None)


def _functions_from_blocks(text: str, targets: list[Target]) -> list[tuple[Target, tuple[str, int]]] | Rejected:
    """Each target's def from the fenced blocks (a later block wins); its source and column. A
    block named in its first line is that target's; an unnamed one gives every target it defines."""
    fenced = FENCE.findall(text)
    syntax_error = None
    found: dict[int, tuple[str, int]] = {}
    for block in reversed(fenced or [text]):  # no fence: maybe a bare function
        code = _dedent_block(block)
        try:
            tree = ast.parse(code)
        except SyntaxError as exc:
            syntax_error = syntax_error or exc
            continue
        named = _named(code, targets)
        for i, target in enumerate(targets):
            if i in found or (named is not None and target is not named):
                continue
            node = _find_def(tree, target.name)
            if node is not None:
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                found[i] = ("".join(lines_of(code)[start - 1 : node.end_lineno]), node.col_offset)
    if found:
        return [(targets[i], found[i]) for i in sorted(found)]
    names = " or ".join(t.name for t in targets)
    if not fenced:
        return Rejected(f"the reply has no ```python block with {names}")
    if syntax_error is not None:
        return Rejected(f"the reply's code does not parse: {syntax_error.msg} (line {syntax_error.lineno})")
    return Rejected(f"the reply does not define {names}")


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


def _checked(function: str, target: Target, allow_signature_change: bool) -> str | Rejected:
    """The rewritten function as it goes into the file, or why it cannot."""
    try:
        new_node = _parse_def(function, target.name)
    except SyntaxError as exc:
        return Rejected(f"the fixed {target.name} does not parse: {exc.msg} (line {exc.lineno})")
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
    if not target.source.endswith(("\n", "\r")):
        function = function.rstrip("\r\n")  # the function was the file's unterminated last line
    return function


def _candidate(rewrites: list[tuple[Target, str]], allow_signature_change: bool) -> Candidate | Rejected:
    kept: list[tuple[Target, str]] = []
    for target, function in rewrites:
        checked = _checked(function, target, allow_signature_change)
        if isinstance(checked, Rejected):
            return checked
        if not _same_code(checked, target.source):
            kept.append((target, checked))
    if not kept:
        which = " and ".join(t.name for t, _ in rewrites)
        return Rejected(f"the reply repeats {'the function' if len(rewrites) == 1 else which} unchanged")
    texts: dict[str, str] = {}
    diff = []
    for path in dict.fromkeys(t.path for t, _ in kept):
        mine = sorted(((t, f) for t, f in kept if t.path == path), key=lambda tf: tf[0].start, reverse=True)
        original = mine[0][0].file_text
        lines = lines_of(original)
        for target, function in mine:
            lines[target.start - 1 : target.end] = [function]
        new_text = "".join(lines)
        try:
            ast.parse(new_text)
        except SyntaxError as exc:
            if parses(original):  # an unsaved buffer that is already broken is not our fault
                return Rejected(f"{path} does not parse with the fix: {exc.msg} (line {exc.lineno})")
        texts[path] = new_text
        diff.append(unified(path, original, new_text))
    found = [Rewrite(t.path, t.qualname or t.name, f, (t.start, t.end)) for t, f in kept]
    return Candidate(texts, "".join(diff), found)


def unified(path: str, before: str, after: str) -> str:
    return "".join(difflib.unified_diff(lines_of(before), lines_of(after), fromfile=f"a/{path}", tofile=f"b/{path}"))


def parses(text: str) -> bool:
    try:
        ast.parse(text)
    except SyntaxError:
        return False
    return True
