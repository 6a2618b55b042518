"""pytest plugin that streams one JSON record per test to the fd in TRACEFIX_REPORT_FD.

Runs inside the user's test process: Python >= 3.9, stdlib and pytest only.
Records: {"kind": "start"|"result"|"collect_error"|"done", ...}.
PYTEST_DONT_REWRITE: it has no asserts, and the warm worker may import it ahead of runs.
"""

import json
import os
import sys
import time

_out = None
_root = None
_last_compare = None
_SKIP_DIRS = ("site-packages", "dist-packages", os.sep + ".venv" + os.sep, os.sep + "venv" + os.sep)


def _emit(record):
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


def _is_workspace_code(path, test_files):
    path = str(path)
    if not path.startswith(_root + os.sep) or any(d in path for d in _SKIP_DIRS):
        return False
    name = os.path.basename(path)
    return path not in test_files and name != "conftest.py"


def pytest_configure(config):
    global _out, _root
    if os.environ.get("TRACEFIX_NICE"):
        os.nice(int(os.environ["TRACEFIX_NICE"]))  # a background audit leaves the CPU to the user
    _root = str(config.rootpath)
    fd = os.environ.get("TRACEFIX_REPORT_FD")
    if fd is None or hasattr(config, "workerinput"):
        return  # an xdist worker: its reports reach the controller, which writes the records
    _out = os.fdopen(int(fd), "w", encoding="utf-8", buffering=1)
    _emit(
        {
            "kind": "session",
            "root": _root,
            "python": sys.version.split()[0],
            "xdist": config.pluginmanager.hasplugin("xdist"),
        }
    )


def pytest_assertrepr_compare(config, op, left, right):
    # Keep the operands of the failing comparison; return None so pytest still explains it.
    global _last_compare
    _last_compare = {"op": op, "left": _short(left), "right": _short(right)}
    return


def pytest_runtest_logstart(nodeid, location):
    global _last_compare
    _last_compare = None
    _emit({"kind": "start", "nodeid": nodeid, "time": time.time()})


def _failure_locations(item, excinfo):
    """The last traceback entry in the test's file, and the deepest in workspace non-test code."""
    test_file = str(item.path) if hasattr(item, "path") else str(item.fspath)
    test_files = {test_file}
    in_test = frame = None
    for entry in excinfo.traceback:
        path = str(entry.path)
        place = {"path": _rel(path), "line": entry.lineno + 1, "function": entry.name}
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


_state = {}


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


def _pytest_hookwrapper():
    import pytest

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item, call):
        outcome = yield
        report = outcome.get_result()
        report.tracefix = _phase(item, call, report)

    return pytest_runtest_makereport


pytest_runtest_makereport = _pytest_hookwrapper()


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
    entry = _state.pop(nodeid, {"outcome": "passed", "duration": 0.0})
    test_path, test_line, _ = location
    entry.update(kind="result", nodeid=nodeid, path=test_path.replace(os.sep, "/"), line=(test_line or 0) + 1)
    _emit(entry)


def pytest_collectreport(report):
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        message = crash.message if crash is not None else str(report.longrepr)[-2000:]
        _emit({"kind": "collect_error", "nodeid": report.nodeid, "message": message})


def pytest_sessionfinish(session, exitstatus):
    _emit({"kind": "done", "exitstatus": int(exitstatus)})
