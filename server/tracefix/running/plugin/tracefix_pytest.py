"""pytest plugin that streams one JSON record per test to the fd in TRACEFIX_REPORT_FD.

Runs inside the user's test process: Python >= 3.9, stdlib and pytest only.
Records: those of REPORT_KINDS, shaped as tracefix_records declares them.
A collection or conftest error carries its cause: {"exception", "message", "path", "line"}, the
user's exception (not pytest's wrapper) and where it is in the workspace.
With TRACEFIX_TEST_TIMEOUT (seconds), a test whose setup, call and teardown run longer ends the
process: its result says "timeout" and where it was, and no "done" record follows.
PYTEST_DONT_REWRITE: it has no asserts, and the warm worker may import it ahead of runs.
"""

import json
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

if TYPE_CHECKING or __package__:  # mypy's import names the package
    from tracefix.running.plugin import tracefix_records as records
else:  # the test process has the plugins' directory on its path
    import tracefix_records as records

_out = None
_root = None
_last_compare = None
_SKIP_DIRS = ("site-packages", "dist-packages", os.sep + ".venv" + os.sep, os.sep + "venv" + os.sep)


def _open(fd):
    """The report stream, opened once, in the process that runs the session (never an xdist worker)."""
    global _out
    if _out is None:
        _out = os.fdopen(int(fd), "w", encoding="utf-8", buffering=1)


def _emit(record: "records.Report") -> None:
    if _out is None:
        return
    _out.write(json.dumps(record, default=repr) + "\n")
    _out.flush()


def _rel(path):
    try:
        return os.path.relpath(str(path), _root).replace(os.sep, "/")
    except ValueError:
        return str(path)


def _short(value, limit=200):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _in_workspace(path):
    path = str(path)
    return path.startswith(_root + os.sep) and not any(d in path for d in _SKIP_DIRS)


def _is_workspace_code(path, test_files):
    path = str(path)
    if not _in_workspace(path):
        return False
    name = os.path.basename(path)
    return path not in test_files and name != "conftest.py"


_WRAPPERS = ("CollectError", "ConftestImportFailure")  # pytest's, around the user's exception


def _unwrap(exc):
    if type(exc).__name__ not in _WRAPPERS:
        return exc
    inner = getattr(exc, "cause", None)  # ConftestImportFailure since pytest 8
    if inner is None and isinstance(getattr(exc, "excinfo", None), tuple):  # before pytest 8
        inner = exc.excinfo[1]
    if inner is None:  # CollectError, raised from the import's exception
        inner = exc.__cause__ or exc.__context__
    return exc if inner is None else _unwrap(inner)


def _cause(exc: BaseException) -> "records.Cause":
    """What stopped collection, and where in the workspace: a syntax error's own file and line,
    else the deepest workspace frame of the traceback (the conftest or module that raised)."""
    exc = _unwrap(exc)
    if isinstance(exc, SyntaxError) and exc.filename and _in_workspace(os.path.abspath(exc.filename)):
        return records.Cause(
            exception=type(exc).__name__, message=exc.msg, path=_rel(exc.filename), line=exc.lineno or 1
        )
    cause = records.Cause(exception=type(exc).__name__, message=str(exc))
    tb = exc.__traceback__
    while tb is not None:
        path = tb.tb_frame.f_code.co_filename
        if _in_workspace(path):
            cause["path"], cause["line"] = _rel(path), tb.tb_lineno
        tb = tb.tb_next
    return cause


def pytest_configure(config):
    global _root
    if os.environ.get("TRACEFIX_NICE"):
        os.nice(int(os.environ["TRACEFIX_NICE"]))  # a background audit leaves the CPU to the user
    _root = str(config.rootpath)
    fd = os.environ.get("TRACEFIX_REPORT_FD")
    if fd is None or hasattr(config, "workerinput"):
        return  # an xdist worker: its reports reach the controller, which writes the records
    _open(fd)
    _emit(
        records.Session(
            kind=records.SESSION,
            root=_root,
            python=sys.version.split()[0],
            xdist=config.pluginmanager.hasplugin("xdist"),
        )
    )


def pytest_assertrepr_compare(config, op, left, right):
    # Keep the operands of the failing comparison; return None so pytest still explains it.
    global _last_compare
    _last_compare = records.Compare(op=op, left=_short(left), right=_short(right))
    return


def pytest_runtest_logstart(nodeid: str, location: Tuple[str, Optional[int], str]) -> None:
    global _last_compare
    _last_compare = None
    _emit(records.Start(kind=records.START, nodeid=nodeid, time=time.time()))


def _failure_locations(item, excinfo):
    """The last traceback entry in the test's file, and the deepest in workspace non-test code."""
    test_file = str(item.path) if hasattr(item, "path") else str(item.fspath)
    test_files = {test_file}
    in_test = frame = None
    for entry in excinfo.traceback:
        path = str(entry.path)
        place = records.Place(path=_rel(path), line=entry.lineno + 1, function=entry.name)
        if path == test_file:
            in_test = place
        elif _is_workspace_code(path, test_files):
            frame = place
    return in_test, frame


MESSAGE_LIMIT = 20000  # characters; a test can raise a message of any size


def _message(report, excinfo):
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        text = crash.message
    elif excinfo is not None:
        text = excinfo.exconly()
    else:
        text = str(report.longrepr)[-2000:] if report.longrepr else ""
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + "… (truncated)"


_state: Dict[str, Dict[str, Any]] = {}


def _phase(item, call, report):
    """What one phase (setup, call, teardown) adds to the test's record. It is computed where the
    test runs and travels on the report, so it reaches the process that writes the records even
    when that is pytest-xdist's controller."""
    if report.when == "call" and report.skipped and hasattr(report, "wasxfail"):
        return {"outcome": "xfailed"}
    if report.skipped:
        return {"outcome": "skipped", "message": str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""}
    if not report.failed:
        return {}
    info = {
        "outcome": "failed" if report.when == "call" else "error",
        "when": report.when,
        "message": _message(report, call.excinfo),
    }
    if call.excinfo is not None:
        info["location"], info["frame"] = _failure_locations(item, call.excinfo)
        info["exception"] = call.excinfo.typename
    if _last_compare is not None and report.when == "call":
        info["compare"] = _last_compare
    return info


def _pytest_hookwrappers():
    import pytest

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item, call):
        outcome = yield
        report = outcome.get_result()
        report.tracefix = _phase(item, call, report)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_load_initial_conftests(early_config, parser, args):
        # a conftest that fails to import ends pytest before the session, with exit status 4
        global _root
        outcome = yield
        fd = os.environ.get("TRACEFIX_REPORT_FD")
        if outcome.excinfo is None or fd is None or os.environ.get("PYTEST_XDIST_WORKER"):
            return
        _root = str(early_config.rootpath)
        _open(fd)
        _emit(records.ConftestError(kind=records.CONFTEST_ERROR, cause=_cause(outcome.excinfo[1])))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        # runs where the test runs: this process, or a pytest-xdist worker
        _watch(item)
        try:
            yield
        finally:
            _unwatch()

    return pytest_runtest_makereport, pytest_load_initial_conftests, pytest_runtest_protocol


pytest_runtest_makereport, pytest_load_initial_conftests, pytest_runtest_protocol = _pytest_hookwrappers()


# The per-test limit: one watchdog thread, woken when a test starts or ends. Ending the process
# from it works while the test sleeps, waits or loops in Python; code that holds the GIL for good
# is stopped by tracefix's own limit on a silent process (Limits.silence).
_watched = threading.Condition()
_current: List[Any] = []  # [item, its thread, deadline, seconds] of the test in progress, or empty
_watchdog: List[threading.Thread] = []  # the thread, once started


def _limit():
    try:
        seconds = float(os.environ.get("TRACEFIX_TEST_TIMEOUT", ""))
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def _watch(item):
    seconds = _limit()
    if seconds is None:
        return
    with _watched:
        _current[:] = [item, threading.get_ident(), time.monotonic() + seconds, seconds]
        if not _watchdog:
            _watchdog.append(threading.Thread(target=_guard, name="tracefix per-test timeout", daemon=True))
            _watchdog[0].start()
        _watched.notify()


def _unwatch():
    if _current:
        with _watched:
            del _current[:]
            _watched.notify()


def _guard():
    with _watched:
        while True:
            if not _current:
                _watched.wait()
                continue
            left = _current[2] - time.monotonic()
            if left > 0:
                _watched.wait(left)
                continue
            _overrun(*_current)  # with the lock held: the test cannot report a result meanwhile


def _overrun(item, thread, deadline, seconds):
    """Report the test as timed out, where it is now, and end the process: pytest cannot stop a
    test from another thread."""
    path, line, _ = item.location
    message = "ran past the per-test timeout of %g s (tracefix's timeout setting)" % seconds
    record = records.Result(
        kind=records.RESULT,
        nodeid=item.nodeid,
        outcome="timeout",
        duration=round(time.monotonic() - deadline + seconds, 4),
        message=message,
        path=path.replace(os.sep, "/"),
        line=(line or 0) + 1,
    )
    record["location"], record["frame"] = _stuck_at(item, sys._current_frames().get(thread))
    try:
        _emit(record)
        sys.stderr.write("\ntracefix: %s %s\n" % (item.nodeid, message))
        sys.stderr.flush()
        sys.stdout.flush()
    finally:
        os._exit(1)


def _stuck_at(item, frame):
    """Where the test's thread is: the innermost line in the test's file, and the innermost in
    workspace non-test code."""
    test_file = str(item.path) if hasattr(item, "path") else str(item.fspath)
    in_test = code = None
    while frame is not None and in_test is None:
        path = frame.f_code.co_filename
        place = records.Place(path=_rel(path), line=frame.f_lineno, function=frame.f_code.co_name)
        if path == test_file:
            in_test = place
        elif code is None and _is_workspace_code(path, {test_file}):
            code = place
        frame = frame.f_back
    return in_test, code


def pytest_runtest_logreport(report):
    entry = _state.setdefault(report.nodeid, {"duration": 0.0, "outcome": "passed"})
    entry["duration"] += report.duration
    info = getattr(report, "tracefix", None)
    if info is None and report.failed:
        # not made by our hook: xdist's report of a worker that died in this test; no logfinish follows
        entry.update(outcome="crashed", message=_message(report, None))
        pytest_runtest_logfinish(report.nodeid, report.location)
    elif info and (info["outcome"] != "skipped" or entry["outcome"] == "passed"):
        entry.update(info)


def pytest_runtest_logfinish(nodeid, location):
    _unwatch()  # before the result: a test that finished in time is never also reported as a timeout
    entry = _state.pop(nodeid, {"outcome": "passed", "duration": 0.0})
    test_path, test_line, _ = location
    record = records.Result(
        kind=records.RESULT,
        nodeid=nodeid,
        outcome=entry.pop("outcome"),
        duration=entry.pop("duration"),
        path=test_path.replace(os.sep, "/"),
        line=(test_line or 0) + 1,
    )
    record.update(entry)  # what its phases added (_phase): message, when, location, frame, compare
    _emit(record)


def pytest_exception_interact(node, call, report):
    # the only hook that sees the exception behind a failed collection; like a test's phase, the
    # cause travels on the report to the process that writes the records
    if report.when == "collect" and call.excinfo is not None:
        report.tracefix = {"cause": _cause(call.excinfo.value)}


def pytest_collectreport(report):
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        message = crash.message if crash is not None else str(report.longrepr)[-2000:]
        record = records.CollectError(kind=records.COLLECT_ERROR, nodeid=report.nodeid, message=message)
        record.update(getattr(report, "tracefix", None) or {})  # its cause
        _emit(record)


def pytest_sessionfinish(session, exitstatus):
    _emit(records.Done(kind=records.DONE, exitstatus=int(exitstatus)))
