"""A warm pytest worker: `python -m tracefix_warm` in the workspace, started by the tracefix server.

It imports pytest, then the third-party modules the tests used, and never the workspace's own
code. Each run is a fork of it that runs `python -m pytest` as a fresh process would, so the
project's modules, conftests and fixtures start from scratch every time and only the expensive,
unchanging imports are shared.

A fork must be what a fresh process would be, so the worker never imports ahead of a run:
- a module pytest's assertion rewriting loads in a run (pytest plugins' distributions, `-p`
  plugins, test-named files): imported already, pytest could not rewrite it and would warn
  "Module already imported so cannot be rewritten", an error under `filterwarnings = error`;
  nor a module whose import pulls one of those in (that worker quits: its replacement is told
  to skip it, TRACEFIX_WARM_SKIP);
- anything after a module it imported changed on disk, or a sys.path directory did (an install):
  it quits and the server starts a new one.

Protocol, over the Unix socket whose fd is TRACEFIX_WARM_FD (one JSON message per send; their
shapes are in tracefix_records):
  worker → {"ready": pid}
  server → {"args": [...], "cwd": ..., "env": {...}, "limits": {...}} with two fds attached:
           the run's output pipe and its report pipe
  worker → {"pid": child} then {"exit": code}, or {"stale": why, "skip": [...]} and the worker exits
Runs in the user's interpreter: Python >= 3.9, stdlib and pytest only.
"""

import json
import os
import select
import signal
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING or __package__:  # the server's import (and mypy's) name the package
    from tracefix.running.plugin import tracefix_records as records
else:  # the test process has the plugins' directory on its path
    import tracefix_records as records

MAX_MODULES = 5000  # third-party modules imported ahead of runs
MESSAGE = 1 << 20
# why a worker quits when it is out of date (not a fault)
UPDATED = "installed packages changed"
CHANGED = "a module imported ahead of runs changed on disk"
PULLED = "a module imported ahead of runs imports one that pytest rewrites"


def apply_limits(limits):
    """setrlimit for each of cpu_seconds/memory_bytes/processes/file_bytes that is set; a limit the
    OS refuses is skipped (the server's timeout still bounds the run)."""
    import resource

    pairs = (
        (resource.RLIMIT_CPU, limits.get("cpu_seconds")),
        (resource.RLIMIT_AS, limits.get("memory_bytes")),
        (resource.RLIMIT_NPROC, limits.get("processes")),
        (resource.RLIMIT_FSIZE, limits.get("file_bytes")),
    )
    for res, value in pairs:
        if not value:
            continue
        try:
            _, hard = resource.getrlimit(res)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(res, (value, hard))
        except (ValueError, OSError):
            pass


def _send(sock, message: "records.Reply") -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


def _path_stamps(root):
    """mtimes of the sys.path directories outside the workspace: installing or upgrading a
    distribution changes them, and then the modules imported here are out of date."""
    prefix = os.path.join(root, "")
    stamps = {}
    for entry in sys.path:
        path = os.path.abspath(entry or ".")
        if path != root and not path.startswith(prefix):
            try:
                stamps[entry] = os.stat(path).st_mtime_ns
            except OSError:
                stamps[entry] = None
    return stamps


def _stat(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _stamp(stamps):
    """Add the files of newly imported modules to stamps (path → mtime and size): the code the
    worker holds is what those files held then."""
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path not in stamps:
            stamps[path] = _stat(path)


def _changed(stamps):
    """The first imported module's file that changed since it was stamped, or None."""
    return next((path for path, stamp in stamps.items() if _stat(path) != stamp), None)


def _imported(root):
    """What the run imported from outside the workspace: (names it imported as they are, names
    pytest's assertion rewriting rewrote). A module that opts out of rewriting (PYTEST_DONT_REWRITE
    in its docstring, like tracefix's plugins) is imported as it is, and pytest does not mind it
    being imported early."""
    rewrite = sys.modules.get("_pytest.assertion.rewrite")
    rewriter = getattr(rewrite, "AssertionRewritingHook", None)
    prefix = os.path.join(root, "")
    plain, rewritten = [], []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name == "__main__" or not path or os.path.abspath(path).startswith(prefix):
            continue
        doc = getattr(module, "__doc__", None)
        opted_out = isinstance(doc, str) and "PYTEST_DONT_REWRITE" in doc
        if rewriter is not None and isinstance(getattr(module, "__loader__", None), rewriter) and not opted_out:
            rewritten.append(name)
        else:
            plain.append(name)
    return plain, rewritten


def _outermost(names):
    """names without those under a package among them: what skip needs, short enough for an
    environment variable."""
    return sorted(n for n in names if not any(n.startswith(other + ".") for other in names))


def _preload(names, root, skip):
    """Import names ahead of runs, but none in skip, under a package in skip, or from the
    workspace. A name whose import pulls in one in skip joins skip; True if that happened."""
    import importlib

    prefix = os.path.join(root, "")
    pulled = False
    for name in sorted(names)[:MAX_MODULES]:  # sorted: a package before its submodules
        parts = name.split(".")
        if name in sys.modules or any(".".join(parts[:i]) in skip for i in range(1, len(parts) + 1)):
            continue
        before = set(sys.modules)
        try:
            spec = importlib.util.find_spec(name)  # imports its parent packages
            if spec is None or (spec.origin and os.path.abspath(spec.origin).startswith(prefix)):
                continue  # the workspace shadows it now: it must be imported fresh in each run
            importlib.import_module(name)
        except BaseException:
            sys.modules.pop(name, None)
        new = set(sys.modules) - before
        if skip.intersection(new):
            for module in new:  # so that the rest of the batch does not find them imported
                sys.modules.pop(module, None)
            skip.add(name)
            pulled = True
    return pulled


def _child(sock, request, fds, modules_fd):
    """The forked run: become `python -m pytest` with the request's arguments, then exit."""
    code = 70
    try:
        os.setsid()
        sock.close()
        output, report = fds
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
        os.close(null)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ["TRACEFIX_REPORT_FD"] = str(report)
        apply_limits(request.get("limits") or {})
        import runpy

        sys.argv = ["pytest"] + request["args"]
        try:
            runpy.run_module("pytest", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    try:
        import atexit

        atexit._run_exitfuncs()  # what a normal interpreter exit runs
        sys.stdout.flush()
        sys.stderr.flush()
        plain, rewritten = _imported(request["cwd"])
        os.write(modules_fd, json.dumps(records.Imported(plain=plain, rewritten=rewritten)).encode())
    except BaseException:
        pass
    os._exit(code)


def _wait(sock, pid, modules_fd):
    """The child's exit code and the modules it imported; if the server goes away meanwhile,
    kill the run and quit."""
    watch = [sock, modules_fd]
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(pid)
            watch.append(pidfd)
        except OSError:
            pass
    used = []
    while True:
        ready, _, _ = select.select(watch, [], [], None if pidfd is not None else 0.01)
        if sock in ready and _closed(sock):
            try:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)  # reaped here: an init that reaps no orphans would keep a zombie
            except OSError:
                pass
            os._exit(0)
        if modules_fd in ready:
            chunk = os.read(modules_fd, 65536)  # read as it comes: a full pipe would block the child
            if chunk:
                used.append(chunk)
            else:
                watch.remove(modules_fd)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if pidfd is not None:
                os.close(pidfd)
            while True:  # the rest, written just before the child exited
                chunk = os.read(modules_fd, 65536)
                if not chunk:
                    break
                used.append(chunk)
            return os.waitstatus_to_exitcode(status), b"".join(used)


def _closed(sock):
    try:
        return not sock.recv(1, socket.MSG_PEEK)
    except OSError:  # ECONNRESET: the server closed with a reply unread
        return True


def _receive(sock):
    """One request: a b"<size>\n" header carrying the fds, then the JSON body. (None, fds) at EOF."""
    data, fds, _, _ = socket.recv_fds(sock, MESSAGE, 2)
    head, _, body = data.partition(b"\n")
    if not head:
        return None, fds
    size = int(head)
    while len(body) < size:
        more = sock.recv(size - len(body))
        if not more:
            return None, fds
        body += more
    return json.loads(body), fds


def _stale(root, paths, files, pulled):
    """Why the worker can no longer fork what a fresh process would be, or None."""
    if _path_stamps(root) != paths:
        return UPDATED
    if pulled:
        return PULLED
    changed = _changed(files)
    if changed:
        return "%s: %s" % (CHANGED, changed)
    if threading.active_count() > 1:
        return "a module imported ahead of runs started a thread, which a fork would not copy"
    return None


def main():
    sock = socket.socket(fileno=int(os.environ.pop("TRACEFIX_WARM_FD")))
    skip = set(json.loads(os.environ.pop("TRACEFIX_WARM_SKIP", "[]")))
    root = os.getcwd()
    started = time.monotonic()
    import pytest  # noqa: F401 - each run imports it first; what it imports pytest never rewrites

    paths, files, pulled = _path_stamps(root), {}, False
    _stamp(files)
    _send(sock, records.Ready(ready=os.getpid(), seconds=round(time.monotonic() - started, 3)))
    while True:
        request, fds = _receive(sock)
        stale = "closed" if request is None else _stale(root, paths, files, pulled)
        if stale or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            if request is not None:
                _send(sock, records.Stale(stale=stale or "bad request", skip=_outermost(skip)))
            return
        modules_read, modules_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(modules_read)
            _child(sock, request, fds, modules_write)
        for fd in (*fds, modules_write):
            os.close(fd)
        _send(sock, records.Forked(pid=pid))
        code, used = _wait(sock, pid, modules_read)
        os.close(modules_read)
        _send(sock, records.Exited(exit=code))
        try:
            imported = json.loads(used or b"{}")
        except ValueError:
            continue
        skip.update(imported.get("rewritten", ()))
        pulled = _preload(imported.get("plain", ()), root, skip) or pulled
        _stamp(files)


if __name__ == "__main__":
    main()
