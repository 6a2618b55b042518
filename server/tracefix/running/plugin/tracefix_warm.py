"""A warm pytest worker: `python -m tracefix_warm` in the workspace, started by the tracefix server.

It imports pytest, its plugins and the third-party modules the tests used, and never the
workspace's own code. Each run is a fork of it that runs `python -m pytest` as a fresh process
would, so the project's modules, conftests and fixtures start from scratch every time and only
the expensive, unchanging imports are shared.

Protocol, over the Unix socket whose fd is TRACEFIX_WARM_FD (one JSON message per send):
  worker → {"ready": pid}
  server → {"args": [...], "cwd": ..., "env": {...}, "limits": {...}} with two fds attached:
           the run's output pipe and its report pipe
  worker → {"pid": child} then {"exit": code}, or {"stale": why} and the worker exits
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

MAX_MODULES = 5000  # third-party modules imported ahead of runs
MESSAGE = 1 << 20
UPDATED = "installed packages changed"  # why a worker quits after a pip install (not a fault)


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


def _send(sock, message):
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


def _outside(root):
    """Names of the imported modules that do not come from the workspace."""
    prefix = os.path.join(root, "")
    names = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name != "__main__" and path and not os.path.abspath(path).startswith(prefix):
            names.append(name)
    return names


def _preload(names, root):
    import importlib

    prefix = os.path.join(root, "")
    for name in sorted(names)[:MAX_MODULES]:  # sorted: a package before its submodules
        if name in sys.modules:
            continue
        try:
            spec = importlib.util.find_spec(name)
            if spec is None or (spec.origin and os.path.abspath(spec.origin).startswith(prefix)):
                continue  # the workspace shadows it now: it must be imported fresh in each run
            importlib.import_module(name)
        except BaseException:
            sys.modules.pop(name, None)


def _plugins():
    """pytest and the plugins it loads from entry points, as every run imports them first."""
    from importlib import metadata

    import pytest  # noqa: F401

    try:
        points = metadata.entry_points(group="pytest11")
    except TypeError:  # Python 3.9
        points = metadata.entry_points().get("pytest11", ())
    return [point.value.split(":")[0] for point in points] + ["tracefix_pytest", "tracefix_deps"]


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
        os.write(modules_fd, json.dumps(_outside(request["cwd"])).encode())
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


def main():
    sock = socket.socket(fileno=int(os.environ.pop("TRACEFIX_WARM_FD")))
    root = os.getcwd()
    started = time.monotonic()
    _preload(_plugins(), root)
    stamps = _path_stamps(root)
    _send(sock, {"ready": os.getpid(), "seconds": round(time.monotonic() - started, 3)})
    while True:
        request, fds = _receive(sock)
        stale = None
        if request is None:
            stale = "closed"
        elif _path_stamps(root) != stamps:
            stale = UPDATED
        elif threading.active_count() > 1:
            stale = "a module imported ahead of runs started a thread, which a fork would not copy"
        if stale or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            if request is not None:
                _send(sock, {"stale": stale or "bad request"})
            return
        modules_read, modules_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(modules_read)
            _child(sock, request, fds, modules_write)
        for fd in (*fds, modules_write):
            os.close(fd)
        _send(sock, {"pid": pid})
        code, used = _wait(sock, pid, modules_read)
        os.close(modules_read)
        _send(sock, {"exit": code})
        try:
            _preload(json.loads(used or b"[]"), root)
        except ValueError:
            pass


if __name__ == "__main__":
    main()
