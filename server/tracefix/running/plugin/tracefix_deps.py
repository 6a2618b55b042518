"""pytest plugin that records what each test used, for test selection: the workspace code it
executed, the fixtures it requested, the workspace data files it read or directories it listed,
and the installed distributions whose code it ran.

Appends one JSON line per test to the file named by TRACEFIX_DEPS (and one "env" line first):
the records of DEPS_KINDS in tracefix_records.
PYTEST_DONT_REWRITE: it has no asserts, and the warm worker may import it ahead of runs.
Runs inside the user's test process: Python >= 3.9, stdlib and pytest only. Python >= 3.12 uses
sys.monitoring PY_START events, disabled after each code object's first start and re-armed per
test; older versions use a 'call'-only sys.settrace hook (sys.setprofile when a debugger or
coverage already owns settrace).
"""

import json
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Set, Tuple

import pytest

if TYPE_CHECKING or __package__:  # mypy's import names the package
    from tracefix.running.plugin import tracefix_records as records
else:  # the test process has the plugins' directory on its path
    import tracefix_records as records

try:
    import _lsprof
except ImportError:  # not CPython
    _lsprof = None  # type: ignore[assignment]  # no profiler: the plugin records nothing

_PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))
_SKIP_DIRS = ("site-packages", "dist-packages", "__pycache__", ".tracefix", ".pytest_cache", ".git")
_MONITORING_TOOLS = (5, 3)  # 0 debuggers, 1 coverage, 2 profilers; tracefix_trace takes 4 then 3

_root = ""
_out = None
_hook = None
_used = None  # what the running test (or higher-scoped fixture setup, or collection) used so far
_scoped: Dict[Any, "_Used"] = {}  # FixtureDef → what its one-time setup used, shared by every test that requests it
_where: Dict[str, Optional[Tuple[str, str]]] = {}  # code filename → ("code", relpath) | ("dist", name) | None
_dists = None  # top-level module → distribution names
_versions = {}


class _Used:
    def __init__(self):
        self.code = set()  # (filename, a line in the code that ran)
        self.files = set()
        self.dirs = set()
        self.complete = True  # False once a test replaced our hook

    def merge(self, other):
        self.code |= other.code
        self.files |= other.files
        self.dirs |= other.dirs


_session = _Used()  # what ran or was read outside any test: at collection, between tests
_imports: Dict[str, "_Used"] = {}  # a workspace module's file → the functions its body ran when collection imported it
_seen: Set[Tuple[str, int]] = set()  # (file, line) already placed during the current collector's collection


def _use(used):
    """Make `used` the record that calls go to; None between tests."""
    global _used, _add_code
    if _hook is not None:
        _hook.flush()  # what ran so far belongs to the record that was current
    _used = used
    if used is not None:  # a thread that outlives its test keeps adding to that test's set
        _add_code = used.code.add


_add_code: Callable[..., None] = set().add  # adds a (filename, line)


if sys.version_info >= (3, 11):

    def _on_call(frame, event, arg):
        """The hot path: runs on every Python call while a test runs (settrace, profile). Records
        (file, first line), module code as line 0 (its f_lineno at the call).

        Not frame.f_code: reading it raises an audit event, which would call our audit hook too."""
        _add_code((frame.f_globals.get("__file__"), frame.f_lineno))  # returns None: no line events

    def _on_collect_call(frame, event, arg):
        _at_collection(frame.f_globals.get("__file__"), frame.f_lineno, frame)

else:

    def _on_call(frame, event, arg):
        """As above; module code starts at line 1 here, so a def on line 1 would be taken for it."""
        _add_code((frame.f_globals.get("__file__"), 0 if frame.f_locals is frame.f_globals else frame.f_lineno))

    def _on_collect_call(frame, event, arg):
        _at_collection(
            frame.f_globals.get("__file__"), 0 if frame.f_locals is frame.f_globals else frame.f_lineno, frame
        )


def _at_collection(filename, line, frame):
    """Workspace code run at collection, placed with the innermost module body that ran it: a
    test module's own imports (its decorators, parametrize factories) concern its tests only,
    while code run by another module's import, or by pytest's hooks, may shape any test."""
    key = (filename, line)
    if key in _seen:
        return
    _seen.add(key)
    where = _classify(filename) if filename else None
    if where is None or where[0] != "code":
        return
    body = frame
    while body is not None and not _module_body(body.f_code):
        body = body.f_back
    owner = body.f_globals.get("__file__") if line and body is not None else None  # not module code itself
    if owner and (_classify(owner) or ("",))[0] == "code":
        _imports.setdefault(owner, _Used()).code.add(key)
    else:
        _session.code.add(key)


class _Tracing:
    """Python < 3.12: a global trace function that only notes the code object of each call."""

    def __init__(self):
        self.usable = True
        self.hooks = None

    def start(self, collecting=False):
        # settrace only sees calls; setprofile when a debugger or coverage owns settrace
        self.on_call = _on_collect_call if collecting else _on_call
        if sys.gettrace() is None:
            self.hooks = (sys.settrace, sys.gettrace, threading.settrace)
        elif sys.getprofile() is None:
            self.hooks = (sys.setprofile, sys.getprofile, threading.setprofile)
        else:
            self.hooks = None
            return
        self.hooks[0](self.on_call)
        self.hooks[2](self.on_call)

    def rearm(self):
        pass  # every call is seen; nothing was disabled

    def flush(self):
        pass  # calls went straight to the record

    def stop(self):
        if self.hooks is None:
            return False
        set_hook, get_hook, set_threads = self.hooks
        intact = get_hook() is self.on_call  # a test that sets its own tracer blinds us
        set_hook(None)
        set_threads(None)
        return intact


class _Profiling(_Tracing):
    """Python < 3.12: cProfile's C profiler (_lsprof) counts the code objects that start, with no
    Python call per call (a trace function costs twice as much). In a test, what it counted goes
    to the record when the record changes; at collection it also counts who called whom, which
    tells the module body that ran each function. Traced instead when another profiler is on."""

    def __init__(self):
        super().__init__()
        self.profiler = None
        self.collecting = False

    def start(self, collecting=False):
        if sys.getprofile() is not None:
            super().start(collecting)
            return
        self.hooks, self.collecting = None, collecting
        if collecting:
            self.profiler = _lsprof.Profiler()
            self.profiler.enable(subcalls=True, builtins=False)
            return
        if self.profiler is None:
            self.profiler = _lsprof.Profiler()
        self.profiler.enable(subcalls=False, builtins=False)
        threading.setprofile(self._thread)

    def unwatched(self, function):
        """`function`, run with the profiler off: for pytest's code that runs none of the workspace's."""

        def run(*args, **kwargs):
            profiler = self.profiler if self.hooks is None else None
            if profiler is not None:
                profiler.disable()
            try:
                return function(*args, **kwargs)
            finally:
                if profiler is not None:
                    profiler.enable(subcalls=self.collecting, builtins=False)

        return run

    def _thread(self, frame, event, arg):
        """A thread started while watching: its own profiler, counting for the current record."""
        profiler = _lsprof.Profiler()
        _threads.append((profiler, _used))
        profiler.enable(subcalls=False, builtins=False)  # in place of this function, for this thread
        _on_call(frame, event, arg)  # the call that brought us here

    def flush(self):
        if self.profiler is not None and _used is not None and not self.collecting:
            _used.code.update(_counted(self.profiler))
            self.profiler.clear()
        for profiler, used in _threads:
            if used is not None:
                used.code.update(_counted(profiler))

    def stop(self):
        if self.hooks is not None or self.profiler is None:
            return super().stop()
        intact = sys.getprofile() is self.profiler  # a test that sets its own profiler blinds us
        self.profiler.disable()
        if self.collecting:
            _place(self.profiler.getstats())
            self.profiler, self.collecting = None, False
        else:
            threading.setprofile(None)
        return intact


_threads: List[Tuple[Any, _Used]] = []  # (profiler, record) of each thread started while a test ran


def _place(stats):
    """Collection, counted with who called whom: each workspace function goes with the module
    bodies that ran it (`_at_collection`), found by following calls down from each workspace
    module's body, and from everything else (pytest's hooks, other modules' bodies), without
    passing through another module's body."""
    callees = {}
    called = set()
    for e in stats:
        if not isinstance(e.code, str):
            callees[e.code] = [c.code for c in e.calls or () if not isinstance(c.code, str)]
            called.update(callees[e.code])
    bodies = [c for c in callees if _module_body(c) and (_classify(c.co_filename) or ("",))[0] == "code"]
    # everything else that started code: pytest's frames (no caller seen), other modules' bodies
    others = [c for c in callees if c not in bodies and (c not in called or _module_body(c))]
    for source, start in [(b.co_filename, [b]) for b in bodies] + [(None, others)]:
        seen, todo = set(start), list(start)
        while todo:
            code = todo.pop()
            if code.co_name != "<module>" and (_classify(code.co_filename) or ("",))[0] == "code":
                used = _imports.setdefault(source, _Used()) if source else _session
                used.code.add((code.co_filename, code.co_firstlineno))
            for callee in callees.get(code, ()):
                if callee not in seen and not _module_body(callee):
                    seen.add(callee)
                    todo.append(callee)
    _session.code.update((c.co_filename, 0) for c in bodies)  # module bodies themselves count for no module


def _module_body(code):
    """The body of a module file. Not a string exec() runs (namedtuple-style class templates): that
    is part of whatever code ran it."""
    return code.co_name == "<module>" and not code.co_filename.startswith("<")


def _counted(profiler):
    """(file, first line) of the code a profiler saw start, module code as line 0."""
    return [
        (e.code.co_filename, 0 if e.code.co_name == "<module>" else e.code.co_firstlineno)
        for e in profiler.getstats()
        if not isinstance(e.code, str)
    ]


class _Monitoring:
    """Python >= 3.12: PY_START on a free tool id, disabled per code object after its first start."""

    def __init__(self):
        mon = sys.monitoring
        self.tool = next((t for t in _MONITORING_TOOLS if mon.get_tool(t) is None), None)
        self.usable = self.tool is not None
        if self.usable:
            mon.use_tool_id(self.tool, "tracefix-deps")

    def _start(self, code, offset):
        _add_code((code.co_filename, 0 if code.co_name == "<module>" else code.co_firstlineno))
        return sys.monitoring.DISABLE

    def _start_collecting(self, code, offset):
        line = 0 if code.co_name == "<module>" else code.co_firstlineno
        _at_collection(code.co_filename, line, sys._getframe(1))  # the frame that starts
        return sys.monitoring.DISABLE

    def start(self, collecting=False):
        mon = sys.monitoring
        mon.register_callback(self.tool, mon.events.PY_START, self._start_collecting if collecting else self._start)
        sys.monitoring.restart_events()
        sys.monitoring.set_events(self.tool, sys.monitoring.events.PY_START)

    def rearm(self):
        sys.monitoring.restart_events()  # code the test already ran must be seen again

    def flush(self):
        pass  # calls went straight to the record

    def stop(self):
        sys.monitoring.set_events(self.tool, 0)
        return sys.monitoring.get_tool(self.tool) == "tracefix-deps"


def _rel(path):
    """Workspace-relative posix path of a data file or directory, or None."""
    path = os.path.abspath(os.fsdecode(path))
    if not path.startswith(_root + os.sep):
        return None
    rel = path[len(_root) + 1 :]
    parts = rel.split(os.sep)
    if any(part in _SKIP_DIRS or part.endswith((".egg-info", ".dist-info")) for part in parts):
        return None  # installed metadata: distributions are compared by version
    return rel.replace(os.sep, "/")


def _audit(event, args):
    if event == "open":
        path, mode, flags = args
        if not isinstance(path, (str, bytes)) or (mode and "+" not in mode and any(m in mode for m in "wxa")):
            return  # written, not read: its old content cannot change the outcome
        if mode is None and flags & os.O_ACCMODE == os.O_WRONLY:
            return
        rel = _rel(path)
        if rel is not None and not rel.endswith((".py", ".pyc")):
            (_used or _session).files.add(rel)
    elif event in ("os.listdir", "os.scandir") and _used is not None:
        path = args[0] if args[0] is not None else "."
        rel = _rel(path) if isinstance(path, (str, bytes)) else None  # not a directory fd
        if rel is not None and (_used is not _session or _by_workspace(sys._getframe(1))):
            _used.dirs.add(rel)


_STDLIB = os.path.dirname(os.__file__) + os.sep


def _by_workspace(frame):
    """Whether the workspace's own code lists a directory (to make parametrize cases), not pytest or
    a plugin looking for test files or entry points: that would make any new file a change for
    every test."""
    while frame is not None and frame.f_code.co_filename.startswith(_STDLIB):
        frame = frame.f_back
    return frame is not None and (_classify(frame.f_code.co_filename) or ("",))[0] == "code"


def _classify(filename):
    """("code", relpath) for workspace code, ("dist", name) for installed packages, else None."""
    if filename in _where:
        return _where[filename]
    found = None
    path = os.path.abspath(filename)
    if filename.startswith("<") or os.path.dirname(path) == _PLUGIN_DIR:
        pass
    elif path.startswith(_root + os.sep) and not any(d in path for d in ("site-packages", "dist-packages")):
        found = ("code", path[len(_root) + 1 :].replace(os.sep, "/"))
    else:
        found = _distribution(path)
    _where[filename] = found
    return found


def _packages_distributions():
    """importlib.metadata.packages_distributions, which Python 3.9 lacks."""
    from importlib import metadata

    if hasattr(metadata, "packages_distributions"):
        return metadata.packages_distributions()
    found = {}
    for dist in metadata.distributions():
        tops = (dist.read_text("top_level.txt") or "").split()
        if not tops:
            tops = {f.parts[0].split(".")[0] for f in dist.files or () if f.parts and f.suffix in ("", ".py")}
        for top in tops:
            found.setdefault(top, []).append(dist.metadata["Name"])
    return found


def _distribution(path):
    global _dists
    if _dists is None:
        _dists = _packages_distributions()
    for entry in sys.path:
        entry = os.path.abspath(entry) if entry else ""
        if entry and path.startswith(entry + os.sep):
            top = path[len(entry) + 1 :].split(os.sep)[0]
            names = _dists.get(top.split(".")[0])
            if names:
                return ("dist", names[0])
    return None


def _version(name):
    if name not in _versions:
        from importlib.metadata import PackageNotFoundError, version

        try:
            _versions[name] = version(name)
        except PackageNotFoundError:
            _versions[name] = ""
    return _versions[name]


def _fixture_defs(item):
    info = getattr(item, "_fixtureinfo", None)
    return [fd for defs in (info.name2fixturedefs.values() if info else ()) for fd in defs]


def _code_and_dists(used):
    code, dists = set(), {}
    for filename, line in used.code:
        where = _classify(filename) if filename else None
        if where is None:
            continue
        if where[0] == "code":
            code.add((where[1], line))
        else:
            dists[where[1]] = _version(where[1])
    return sorted(code), dists


def _record(item, used: _Used) -> "records.Deps":
    code, dists = _code_and_dists(used)
    fixtures = set()
    for fd in _fixture_defs(item):
        func = getattr(fd.func, "__code__", None)
        where = _classify(func.co_filename) if func is not None else None
        if func is not None and where is not None and where[0] == "code":
            fixtures.add((fd.argname, where[1], func.co_firstlineno))
    return records.Deps(
        kind=records.DEPS,
        nodeid=item.nodeid,
        complete=used.complete,
        code=code,
        fixtures=sorted(fixtures),
        files=sorted(used.files),
        dirs=sorted(used.dirs),
        dists=dists,
    )


def _emit(record):
    # flushed record by record, so each is one append: xdist workers share the file
    _out.write(json.dumps(record) + "\n")
    _out.flush()


def pytest_configure(config):
    global _out, _root, _hook
    path = os.environ.get("TRACEFIX_DEPS")
    if not path or (getattr(config.option, "dist", "no") != "no" and not hasattr(config, "workerinput")):
        return  # pytest-xdist's controller runs no test; each worker records its own
    _root = str(config.rootpath)
    _out = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the session, closed at its finish
    _hook = _Monitoring() if hasattr(sys, "monitoring") else _Profiling() if _lsprof is not None else _Tracing()
    if isinstance(_hook, _Profiling):
        # the assertion rewriter reads and compiles each test module (when no cached copy is
        # there): most of the calls of a collection, and none of them the workspace's
        from _pytest.assertion import rewrite

        if hasattr(rewrite, "_rewrite_test"):
            rewrite._rewrite_test = _hook.unwatched(rewrite._rewrite_test)
    sys.addaudithook(_audit)
    # installing or upgrading a distribution changes its sys.path directory's mtime
    paths = {
        p: os.stat(p).st_mtime_ns
        for p in map(os.path.abspath, sys.path)
        if os.path.isdir(p) and p != _root and not p.startswith(_root + os.sep)
    }
    _emit(records.Env(kind=records.ENV, executable=sys.executable, paths=paths))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    if _out is None or not _hook.usable:
        yield
        if _out is not None:
            _emit(records.Deps(kind=records.DEPS, nodeid=item.nodeid, complete=False))
        return
    used = _Used()
    _use(used)
    try:
        yield
    finally:
        _use(None)
        _threads[:] = [t for t in _threads if t[1] is not used]  # a thread that goes on counts for no later test
    for fd in _fixture_defs(item):
        if fd in _scoped:
            used.merge(_scoped[fd])
    _emit(_record(item, used))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def _phase(item):
    """Calls are watched in setup, call and teardown only: not in pytest's reporting between them."""
    used = _used
    if used is None:
        yield
        return
    _hook.start()
    try:
        yield
    finally:
        used.complete &= _hook.stop()


pytest_runtest_setup = pytest_runtest_call = pytest_runtest_teardown = _phase


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """A fixture set up once for many tests runs inside the first one only: remember its use."""
    if _used is None or fixturedef.scope == "function":
        yield
        return
    outer, inner = _used, _Used()
    _use(inner)
    _hook.rearm()
    try:
        yield
    finally:
        _use(outer)
        _scoped[fixturedef] = inner
        outer.merge(inner)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_collection(session):
    """Collection runs code no test runs again: pytest_* hooks, parametrize argument factories."""
    if _out is None or not _hook.usable:
        yield
        return
    _use(_session)
    _hook.start(collecting=True)
    try:
        yield
    finally:
        _hook.stop()
        _use(None)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_make_collect_report(collector):
    """Each module's import must see the code an earlier one ran, such as a shared decorator."""
    if _used is _session and _out is not None and isinstance(collector, pytest.Module):
        _seen.clear()
        _hook.rearm()
    yield


def pytest_sessionfinish(session, exitstatus):
    if _out is not None:
        code, _ = _code_and_dists(_session)
        imports = {_classify(f)[1]: _code_and_dists(used)[0] for f, used in _imports.items()}
        _emit(
            records.Collected(
                kind=records.SESSION,
                code=code,
                files=sorted(_session.files),
                dirs=sorted(_session.dirs),  # a data directory listed to make parametrize cases
                imports=imports,
            )
        )
        _out.close()
