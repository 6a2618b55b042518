"""pytest plugin that records a block-level execution trace of workspace code for each test.

Runs inside the user's test process: Python >= 3.9, stdlib and pytest only.
Config: TRACEFIX_TRACE_ROOT (the workspace; code under it, outside virtualenvs, is traced) and
TRACEFIX_REPORT_FD (where JSON lines go). Each test gets one tracefix_records.Trace record
after it finishes. When the step budget runs out mid-test, a record with "partial": true is
written at that moment too, so a test that then hangs still leaves its trace behind.

Each traced function is split into basic blocks with `ast`; for every block executed we keep
the locals it changed. Loops are condensed per invocation: the first iteration, iterations
whose block path differs from the one before, the last two, and a "…×N iterations" marker
carrying the net changes of the ones dropped, so replaying the kept changes stays exact.
Python >= 3.12 uses sys.monitoring with events scoped to the traced code objects; older
versions use sys.settrace.
"""

import ast
import dataclasses
import dis
import json
import os
import re
import reprlib
import sys
import tokenize
from collections import deque
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING or __package__:  # mypy's import names the package
    from tracefix.running.plugin import tracefix_records as records
else:  # the test process has the plugins' directory on its path
    import tracefix_records as records

MAX_STEPS = 100_000  # blocks processed per test; then only calls, returns and raises are kept
MAX_VARIANTS = 8  # iterations kept per loop because their block path changed
FIRST_INVOCATIONS = 3  # invocations kept per function besides the last one
MAX_CALLS = 300  # invocations in one trace
MAX_CHANGED = 20  # variables written per block
MAX_BLOCKS = 5000  # blocks in one record
MAX_RECORD_CHARS = 1_500_000
SKIP_DIRS = {
    "site-packages",
    "dist-packages",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    ".tracefix",
    ".git",
    "node_modules",
    "__pypackages__",
}
CO_OPTIMIZED = 0x1  # set on function code, not on module or class bodies
CO_SUSPENDABLE = 0x20 | 0x80 | 0x200  # generator, coroutine, async generator
IMMUTABLE = {int, float, complex, bool, str, bytes, type(None), range}
LOOPS = (ast.For, ast.AsyncFor, ast.While)
TRY = tuple(getattr(ast, name) for name in ("Try", "TryStar") if hasattr(ast, name))
BLOCK_ENDERS = (ast.Return, ast.Raise, ast.Break, ast.Continue)
YIELD_VALUE = dis.opmap["YIELD_VALUE"]
YIELD_FROM = dis.opmap.get("YIELD_FROM")  # Python < 3.11

ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # "<function f at 0x7f…>": differs on every run


class BoundedRepr(reprlib.Repr):
    """reprlib's bounds, and no memory addresses: an object without a repr of its own (or with
    the one @dataclass wrote) shows as its class and a few public attributes, Cart(items=[…],
    discount=0), each one bounded in turn; any other repr loses its " at 0x…"."""

    maxattrs = 6  # attributes shown per object
    maxobject = 120  # characters of one object's rendering

    def repr_instance(self, obj, level):
        cls = type(obj)
        name = cls.__name__
        if cls.__repr__ is object.__repr__:
            fields = _attributes(obj)
        elif _dataclass_repr(cls):
            fields = ((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.repr)
        else:
            return _shorten(ADDRESS.sub("", repr(obj)), self.maxother)
        if level <= 0:
            return name + "(...)"
        try:
            parts = []
            size = len(name) + 2
            for count, (attribute, value) in enumerate(fields):
                part = f"{attribute}={self.repr1(value, level - 1)}"
                size += len(part) + 2
                if count == self.maxattrs or size > self.maxobject:
                    parts.append("...")
                    break
                parts.append(part)
        except Exception:  # an attribute, or __dict__ itself, that raises when read
            return f"<{name} object>"
        return f"{name}({', '.join(parts)})"


def _attributes(obj):
    """The public attributes the object itself holds, in __dict__ and in __slots__ (no
    properties: reading one runs code)."""
    try:
        held = vars(obj)
    except TypeError:  # no __dict__
        held = {}
    for attribute, value in held.items():
        if not attribute.startswith("_"):
            yield attribute, value
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for attribute in (slots,) if isinstance(slots, str) else slots:
            if not attribute.startswith("_") and attribute not in held:
                try:
                    value = getattr(obj, attribute)
                except AttributeError:  # a slot never set
                    continue
                yield attribute, value


def _dataclass_repr(cls):
    """Whether cls's repr is the one @dataclass generated (not one written in its body)."""
    wrapped = getattr(cls.__repr__, "__wrapped__", None)
    code = getattr(wrapped, "__code__", None)
    return dataclasses.is_dataclass(cls) and code is not None and code.co_filename == "<string>"


def _shorten(text, limit):
    if len(text) <= limit:
        return text
    head = (limit - 3) // 2
    return text[:head] + "..." + text[len(text) - (limit - 3 - head) :]


_repr = BoundedRepr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxfrozenset = _repr.maxdeque = 6
_repr.maxdict = _repr.maxarray = 6
_repr.maxlevel = 3


def _safe_repr(value):
    try:
        return _repr.repr(value)
    except Exception as exc:  # a broken __repr__ must not break the test
        return f"<{type(value).__name__}, repr failed: {type(exc).__name__}>"


def _describe(exc):
    try:
        detail = ADDRESS.sub("", str(exc))
        text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    except Exception:
        text = type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# ---------------------------------------------------------------- block plans


class LoopSpec:
    __slots__ = ("first", "head", "last")  # header block, and the lines of header and body

    def __init__(self, head, first, last):
        self.head, self.first, self.last = head, first, last


class Plan:
    """How one function's lines group into blocks, and where its loops are."""

    __slots__ = ("_run", "blocks", "entries", "first", "heads", "last", "line_block", "line_stmt", "path", "qualname")

    def __init__(self, path, qualname, node):
        self.path, self.qualname = path, qualname
        self.first, self.last = _start(node), node.end_lineno
        self.blocks = []  # (first line, last line)
        self.line_block = {}  # line -> block index
        self.line_stmt = {}  # line -> (first line of its statement, statement is one line)
        self.heads = {}  # loop header block -> LoopSpec
        self.entries = {}  # first block of a loop body -> LoopSpec
        self._run = []
        body = node.body
        if (
            isinstance(body[0], ast.Expr)
            and isinstance(getattr(body[0], "value", None), ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            body = body[1:]  # a docstring runs no code
        self._visit(body)

    def _flush(self):
        if not self._run:
            return
        index = len(self.blocks)
        fresh = False  # a one-line compound statement's body shares its header's line
        for start, end in self._run:
            for line in range(start, end + 1):
                if line not in self.line_block:
                    self.line_block[line], self.line_stmt[line] = index, (start, start == end)
                    fresh = True
        if fresh:
            self.blocks.append((self._run[0][0], max(end for _, end in self._run)))
        self._run = []

    def _header(self, start, node):
        self._flush()
        self._run.append((start, _header_end(node, start)))
        self._flush()
        return len(self.blocks) - 1

    def _visit(self, stmts):
        for node in stmts:
            if isinstance(node, LOOPS):
                head = self._header(node.lineno, node)
                entry = len(self.blocks)
                self._visit(node.body)
                spec = LoopSpec(head, node.lineno, max(s.end_lineno for s in node.body))
                self.heads[head] = spec
                if entry < len(self.blocks):
                    self.entries[entry] = spec
                self._visit(node.orelse)
            elif isinstance(node, (ast.If, ast.With, ast.AsyncWith)):
                self._header(node.lineno, node)
                self._visit(node.body)
                self._visit(getattr(node, "orelse", ()))
            elif isinstance(node, TRY):
                self._flush()
                self._visit(node.body)
                for handler in node.handlers:
                    self._header(handler.lineno, handler)
                    self._visit(handler.body)
                self._visit(node.orelse)
                self._visit(node.finalbody)
            elif type(node).__name__ == "Match":
                self._header(node.lineno, node)
                for case in node.cases:
                    self._header(case.pattern.lineno, case)
                    self._visit(case.body)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self._run.append((_start(node), node.lineno))  # the body is another code object
            else:
                self._run.append((node.lineno, node.end_lineno))
                if isinstance(node, BLOCK_ENDERS):
                    self._flush()
        self._flush()


def _start(node):
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", ())])


def _header_end(node, start):
    parts = [getattr(node, name, None) for name in ("test", "target", "iter", "subject", "type", "pattern", "guard")]
    for item in getattr(node, "items", ()):
        parts += [item.context_expr, item.optional_vars]
    return max([start] + [p.end_lineno for p in parts if isinstance(p, ast.AST)])


def _functions(tree):
    """(first line as code objects report it, name) -> (node, qualname) for every function."""
    found = {}

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qualname = prefix + child.name
                found[(_start(child), child.name)] = (child, qualname)
                walk(child, qualname + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                walk(child, prefix + child.name + ".")
            else:
                walk(child, prefix)

    walk(tree, "")
    return found


class Scope:
    """Decides which code is workspace code and caches its plans across tests."""

    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.excluded = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
        self.excluded.add(os.path.realpath(__file__))
        self.modules = {}  # co_filename -> (relative path, functions) or None
        self.plans = {}  # code -> Plan or None

    def plan(self, code):
        try:
            return self.plans[code]
        except KeyError:
            pass
        plan = None
        if code.co_flags & CO_OPTIMIZED and not code.co_name.startswith("<"):
            module = self._module(code.co_filename)
            found = module and module[1].get((code.co_firstlineno, code.co_name))
            if found:
                try:
                    plan = Plan(module[0], found[1], found[0])
                except (AttributeError, TypeError, ValueError):
                    pass  # a syntax shape this version's ast walk does not know: leave it untraced
        self.plans[code] = plan
        return plan

    def _module(self, filename):
        if filename in self.modules:
            return self.modules[filename]
        self.modules[filename] = module = None
        path = os.path.realpath(filename)
        rel = os.path.relpath(path, self.root)
        parts = rel.split(os.sep)
        if (
            parts[0] != os.pardir
            and not SKIP_DIRS.intersection(parts)
            and os.path.isfile(path)
            and not any(path == p or path.startswith(p + os.sep) for p in self.excluded)
        ):
            try:
                with tokenize.open(path) as f:
                    tree = ast.parse(f.read(), path)
            except (OSError, SyntaxError, ValueError):
                tree = None
            if tree is not None:
                self.modules[filename] = module = ("/".join(parts), _functions(tree))
        return module


# ---------------------------------------------------------------- recording


class LoopRun:
    """One activation of a loop: buffers the last two iterations until it knows they are last."""

    def __init__(self, spec, out):
        self.spec, self.out = spec, out
        self.current = []
        self.recent = deque()  # (keep, items) of the latest two iterations
        self.count = self.variants = self.skipped = 0
        self.previous = None
        self.skipped_changes = {}

    def next_iteration(self):
        items, self.current = self.current, []
        path = tuple(dict.fromkeys((item[0], item[1]) for item in items))
        self.count += 1
        keep = self.count == 1
        if not keep and path != self.previous and self.variants < MAX_VARIANTS:
            keep = True
            self.variants += 1
        self.previous = path
        self.recent.append((keep, items))
        if len(self.recent) > 2:
            self._emit(*self.recent.popleft())

    def close(self):
        if self.current:
            self.next_iteration()
        while self.recent:
            self._emit(True, self.recent.popleft()[1])

    def _emit(self, keep, items):
        if not keep:
            self.skipped += 1
            for item in items:
                self.skipped_changes.update(item[2])
            return
        if self.skipped:
            unit = "iteration" if self.skipped == 1 else "iterations"
            note = f"…×{self.skipped} {unit}"
            self.out.append((self.spec.first, self.spec.last, self.skipped_changes, note))
            self.skipped, self.skipped_changes = 0, {}
        self.out.extend(items)


class Invocation:
    """One execution of a traced function; items are (first line, last line, changed, note)."""

    def __init__(self, recorder, plan, frame, seq, index, depth):
        self.recorder, self.plan, self.frame = recorder, plan, frame
        self.seq, self.index, self.depth = seq, index, depth
        self.reprs, self.objects = {}, {}
        self.args = self._changes(frame)
        self.items, self.loops = [], []
        self.block = self.stmt = None
        self.lines = recorder.lines
        self.returned = self.exception = self.exit_line = None

    def _changes(self, frame):
        changed = {}
        for name, value in frame.f_locals.items():
            if not name.isidentifier():
                continue  # pytest's assertion temporaries (@py_assert1) and comprehension args
            if self.objects.get(name, self) is value:
                continue  # the same immutable object: no need to repr it again
            text = _safe_repr(value)
            if self.reprs.get(name) != text:
                self.reprs[name] = changed[name] = text
            if type(value) in IMMUTABLE:
                self.objects[name] = value
            else:
                self.objects.pop(name, None)
        return changed

    def _sink(self):
        return self.loops[-1].current if self.loops else self.items

    def _close_block(self, frame):
        if self.block is not None:
            start, end = self.plan.blocks[self.block]
            self._sink().append((start, end, self._changes(frame), ""))
            self.block = None

    def line(self, frame, lineno):
        plan = self.plan
        block = plan.line_block.get(lineno)
        if block is None:
            return
        stmt, one_line = plan.line_stmt[lineno]
        # Still the same block unless control went back: to an earlier statement, or to the
        # start of a one-line statement (a multi-line statement revisits its lines on its own).
        if block == self.block and (stmt > self.stmt or (stmt == self.stmt and not one_line)):
            self.stmt = stmt
            return
        recorder = self.recorder
        recorder.steps += 1
        if recorder.steps > MAX_STEPS:
            recorder.saturate()
            return
        previous = self.block
        self._close_block(frame)
        first = plan.blocks[block][0]
        while self.loops and not self.loops[-1].spec.first <= first <= self.loops[-1].spec.last:
            self.loops.pop().close()
        spec = plan.heads.get(block)
        if spec is None:
            # Reaching a loop body's first block other than from its header is a new iteration
            # too (`while True:` may not revisit its header line).
            spec = plan.entries.get(block)
            if spec is not None and previous == spec.head:
                spec = None
        if spec is not None:
            if self.loops and self.loops[-1].spec is spec:
                self.loops[-1].next_iteration()
            else:
                self.loops.append(LoopRun(spec, self._sink()))
        self.block, self.stmt = block, stmt

    def stop_lines(self):
        self._close_block(self.frame)
        while self.loops:
            self.loops.pop().close()
        self.items.append((self.plan.first, self.plan.last, {}, "… step budget reached; later blocks not traced"))
        self.lines = False

    def exit(self, frame, kind, value):
        """kind: "return", "raise", "yield", or "end" for one still running when the test ended."""
        if kind == "yield":
            # The block stays open: what it does after resuming is part of it, and the line
            # the frame resumes on is no jump back.
            self.stmt = 0
            return
        if self.lines:
            self._close_block(frame)
        else:
            block = self.plan.line_block.get(frame.f_lineno)
            if block is not None:  # without line events, at least the block it left from
                start, end = self.plan.blocks[block]
                self.items.append((start, end, self._changes(frame), ""))
        while self.loops:
            self.loops.pop().close()
        self.exit_line = frame.f_lineno
        if kind == "return":
            self.returned = _safe_repr(value)
        elif kind == "raise":
            self.exception = _describe(value)

    def to_record(self):
        plan = self.plan
        return records.Call(
            path=plan.path,
            qualname=plan.qualname,
            first_line=plan.first,
            last_line=plan.last,
            depth=self.depth,
            index=self.index,
            args=_capped(self.args),
            returned=self.returned,
            exception=self.exception,
            exit_line=self.exit_line,
            blocks=[
                records.Block(start_line=start, end_line=end, changed=_capped(changed), note=note)
                for start, end, changed, note in self.items
            ],
        )


def _capped(changed):
    if len(changed) <= MAX_CHANGED:
        return changed
    return dict(list(changed.items())[:MAX_CHANGED])


class Recorder:
    """Invocations of workspace functions during one test, whatever delivers the events."""

    def __init__(self, scope):
        self.scope = scope
        self.active = {}  # frame -> Invocation still running or suspended
        self.kept = {}  # seq -> finished Invocation that goes into the trace
        self.latest = {}  # code -> seq of its kept last invocation beyond the first few
        self.counts = {}
        self.seq = self.depth = self.steps = 0
        self.lines = True
        self.truncated = False
        self.on_saturate = None

    def enter(self, frame):
        plan = self.scope.plan(frame.f_code)
        if plan is None:
            return None
        invocation = self.active.get(frame)
        if invocation is None:  # otherwise a generator resuming
            code = frame.f_code
            self.counts[code] = index = self.counts.get(code, 0) + 1
            self.seq += 1
            invocation = Invocation(self, plan, frame, self.seq, index, self.depth)
            self.active[frame] = invocation
        self.depth += 1
        return invocation

    def leave(self, invocation, frame, kind, value):
        self.depth -= 1
        invocation.exit(frame, kind, value)
        if kind != "yield":
            del self.active[frame]
            self._keep(invocation)

    def _keep(self, invocation):
        code = invocation.frame.f_code
        invocation.frame = None  # let the frame and its locals go
        if invocation.index > FIRST_INVOCATIONS:
            # The one that started last is kept: in a recursion that is the deepest, where it failed.
            previous = self.latest.get(code)
            if previous is not None and previous > invocation.seq:
                return
            if previous is not None:
                del self.kept[previous]
        if len(self.kept) >= MAX_CALLS:
            self.truncated = True
            return
        self.kept[invocation.seq] = invocation
        if invocation.index > FIRST_INVOCATIONS:
            self.latest[code] = invocation.seq

    def saturate(self):
        self.lines = False
        self.truncated = True
        for invocation in self.active.values():
            invocation.stop_lines()
        if self.on_saturate is not None:
            self.on_saturate()

    def finish(self):
        for frame, invocation in list(self.active.items()):
            invocation.exit(frame, "end", None)
            self._keep(invocation)
        self.active.clear()

    def calls(self):
        invocations = sorted(list(self.kept.values()) + list(self.active.values()), key=lambda i: i.seq)
        return [invocation.to_record() for invocation in invocations]


def _suspended(frame):
    """Whether a "return" trace event is really a yield (settrace has no separate event)."""
    if not frame.f_code.co_flags & CO_SUSPENDABLE:
        return False
    code, at = frame.f_code.co_code, frame.f_lasti
    # Before 3.11 a frame suspended in `yield from`/`await` points one instruction before it.
    return code[at] == YIELD_VALUE or (YIELD_FROM is not None and code[at + 2 : at + 3] == bytes([YIELD_FROM]))


class SetTrace:
    """Events from sys.settrace (Python < 3.12, or when no sys.monitoring tool id is free)."""

    def __init__(self, recorder):
        self.recorder = recorder
        self.previous = None

    def start(self):
        self.previous = sys.gettrace()
        sys.settrace(self._call)

    def stop(self):
        sys.settrace(self.previous)

    def lines_off(self):
        for frame in self.recorder.active:
            frame.f_trace_lines = False

    def _call(self, frame, event, arg):
        recorder = self.recorder
        invocation = recorder.enter(frame)
        if invocation is None:
            return None
        frame.f_trace_lines = recorder.lines
        raising = None

        def local(frame, event, arg):
            nonlocal raising
            if event == "line":
                raising = None  # an exception seen earlier was handled
                if invocation.lines:
                    invocation.line(frame, frame.f_lineno)
            elif event == "exception":
                raising = arg[1]
            elif event == "return":
                if raising is not None and arg is None:
                    recorder.leave(invocation, frame, "raise", raising)
                else:
                    recorder.leave(invocation, frame, "yield" if _suspended(frame) else "return", arg)
            return local

        return local


class Monitor:
    """Events from sys.monitoring (Python >= 3.12): PY_START is global and disabled at once for
    code outside the workspace; line and return events are switched on per traced code object.
    CPython does not deliver events caused by a callback itself, so repr() here cannot recurse."""

    def __init__(self, recorder, tool):
        self.recorder, self.tool = recorder, tool
        self.codes = set()
        mon = sys.monitoring
        self.events = mon.events
        self.callbacks = {
            self.events.PY_START: self._start,
            self.events.PY_RESUME: self._resume,
            self.events.LINE: self._line,
            self.events.PY_RETURN: self._return,
            self.events.PY_YIELD: self._yield,
            self.events.PY_UNWIND: self._unwind,
            self.events.PY_THROW: self._resume,
        }

    @staticmethod
    def free_tool():
        return next((tool for tool in (4, 3) if sys.monitoring.get_tool(tool) is None), None)

    def _local_events(self):
        events = self.events.PY_RESUME | self.events.PY_RETURN | self.events.PY_YIELD
        return events | self.events.LINE if self.recorder.lines else events

    def start(self):
        mon = sys.monitoring
        mon.use_tool_id(self.tool, "tracefix")
        for event, callback in self.callbacks.items():
            mon.register_callback(self.tool, event, callback)
        # PY_UNWIND and PY_THROW cannot be set per code object
        mon.set_events(self.tool, self.events.PY_START | self.events.PY_UNWIND | self.events.PY_THROW)

    def stop(self):
        # free_tool_id does not clear events or callbacks before Python 3.14
        mon = sys.monitoring
        mon.set_events(self.tool, 0)
        for code in self.codes:
            mon.set_local_events(self.tool, code, 0)
        for event in self.callbacks:
            mon.register_callback(self.tool, event, None)
        mon.free_tool_id(self.tool)

    def lines_off(self):
        for code in self.codes:
            sys.monitoring.set_local_events(self.tool, code, self._local_events())

    def _start(self, code, offset):
        if self.recorder.enter(sys._getframe(1)) is None:
            return sys.monitoring.DISABLE
        if code not in self.codes:
            self.codes.add(code)
            sys.monitoring.set_local_events(self.tool, code, self._local_events())
        return None

    def _resume(self, code, offset, exc=None):
        self.recorder.enter(sys._getframe(1))

    def _line(self, code, line):
        frame = sys._getframe(1)
        invocation = self.recorder.active.get(frame)
        if invocation is not None and invocation.lines:
            invocation.line(frame, line)

    def _leave(self, kind, value):
        frame = sys._getframe(2)
        invocation = self.recorder.active.get(frame)
        if invocation is not None:
            self.recorder.leave(invocation, frame, kind, value)

    def _return(self, code, offset, value):
        self._leave("return", value)

    def _yield(self, code, offset, value):
        self._leave("yield", value)

    def _unwind(self, code, offset, exc):
        self._leave("raise", exc)


def _backend(recorder):
    if sys.version_info >= (3, 12):
        tool = Monitor.free_tool()
        if tool is not None:
            return Monitor(recorder, tool)
    return SetTrace(recorder)


# ---------------------------------------------------------------- pytest hooks


class TracePlugin:
    def __init__(self, root, fd):
        self.scope = Scope(root)
        self.fd = fd
        self.recorders = {}  # nodeid -> Recorder of its call phase
        self.outcomes = {}  # nodeid -> (outcome, exception text)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        recorder = Recorder(self.scope)
        backend = _backend(recorder)

        def saturated():
            backend.lines_off()
            self._write(item.nodeid, recorder, partial=True)

        recorder.on_saturate = saturated
        backend.start()
        try:
            yield
        finally:
            backend.stop()
            recorder.finish()
            self.recorders[item.nodeid] = recorder

    def pytest_runtest_logreport(self, report):
        # The call phase decides; a setup that failed or skipped stands in when there is none.
        if report.when == "call" or (not report.passed and report.nodeid not in self.outcomes):
            outcome = report.outcome if report.when == "call" or report.skipped else "error"
            self.outcomes[report.nodeid] = (outcome, _message(report))

    def pytest_runtest_logfinish(self, nodeid, location):
        recorder = self.recorders.pop(nodeid, None) or Recorder(self.scope)  # setup failed: no calls
        self._write(nodeid, recorder, partial=False)

    def _write(self, nodeid, recorder, partial):
        outcome, exception = self.outcomes.pop(nodeid, (None, None)) if not partial else (None, None)
        record = records.Trace(
            kind=records.TRACE,
            nodeid=nodeid,
            outcome=outcome,
            exception=exception,
            partial=partial,
            truncated=recorder.truncated,
            calls=recorder.calls(),
        )
        data = _bounded(record).encode("utf-8", "replace")
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:
            pass  # the server went away; the test run itself goes on


def _message(report):
    if report.passed:
        return None
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        text = crash.message
    elif isinstance(report.longrepr, tuple):  # a skip: (path, line, reason)
        text = report.longrepr[-1]
    else:
        text = str(report.longrepr)
    return ADDRESS.sub("", text)[-2000:]


def _bounded(record):
    """The record as one JSON line within MAX_BLOCKS and MAX_RECORD_CHARS, dropping the blocks
    of calls that did not raise, oldest first."""
    line = json.dumps(record) + "\n"
    blocks = sum(len(call["blocks"]) for call in record["calls"])
    size = len(line)
    dropped = False
    for call in record["calls"]:
        if blocks <= MAX_BLOCKS and size <= MAX_RECORD_CHARS:
            break
        if call["exception"] is None and call["blocks"]:
            blocks -= len(call["blocks"])
            size -= len(json.dumps(call["blocks"])) - 2
            call["blocks"] = []
            record["truncated"] = dropped = True
    return json.dumps(record) + "\n" if dropped else line


def pytest_configure(config):
    root, fd = os.environ.get("TRACEFIX_TRACE_ROOT"), os.environ.get("TRACEFIX_REPORT_FD")
    if root and fd:
        config.pluginmanager.register(TracePlugin(root, int(fd)), "tracefix-trace")
