"""`tracefix serve` (the language server) and `tracefix check` (the same loop, headless)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracefix import __version__
from tracefix.sanitize import Printable

if TYPE_CHECKING:
    from tracefix.running.warm import Pool

CLOSED_PIPE = 128 + 13  # the exit status a shell reports for a process ended by SIGPIPE


def _tcp(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracefix", description=__doc__)
    p.add_argument("--version", action="version", version=f"tracefix {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the language server (stdio by default)")
    serve.add_argument("--tcp", type=_tcp, metavar="HOST:PORT", help="listen on TCP instead of stdio")
    serve.add_argument("--log-file", type=Path, help="write the server log to this file")
    serve.add_argument("--verbose", action="store_true", help="debug logging")

    stop = sub.add_parser("stop", help="end the check daemon of a workspace (see check --daemon)")
    stop.add_argument("path", nargs="?", type=Path, default=Path("."), help="project root (default: .)")

    check = sub.add_parser("check", help="select, run and report the tests affected by changes")
    check.add_argument("path", nargs="?", type=Path, default=Path("."), help="project root (default: .)")
    since = check.add_mutually_exclusive_group()
    since.add_argument(
        "--since", metavar="REV", help="changes since a git revision (default: since the last run, else git HEAD)"
    )
    since.add_argument("--all", action="store_true", help="run every test")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.add_argument("--explain", action="store_true", help="say why each test was selected or skipped")
    check.add_argument("--no-run", action="store_true", help="only say what would run; run nothing")
    check.add_argument(
        "--no-trace",
        action="store_true",
        help="do not trace failing tests (traces come after the verdict, each within trace.timeout seconds)",
    )
    check.add_argument(
        "--audit", action="store_true", help="run every test and count failures that selection would have skipped"
    )
    check.add_argument(
        "--fix",
        action="store_true",
        help="ask the configured model for fixes of failing tests (and, with --reviews, of "
        "open review comments); print the verified diffs",
    )
    check.add_argument("--apply", action="store_true", help="with --fix: write verified fixes to the files")
    check.add_argument("--reviews", action="store_true", help="list open review comments with their anchors")
    check.add_argument(
        "--daemon",
        action="store_true",
        help="check through a resident process for this workspace, started if none runs: later checks skip "
        "starting tracefix and pytest (see docs/configuration.md)",
    )
    check.add_argument(
        "--python",
        metavar="PATH",
        help="the interpreter that runs the tests (a setting no workspace file may give; see docs/security.md)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve":
        from tracefix.lsp.server import serve

        status = serve(args.tcp, args.log_file, args.verbose)
        logging.shutdown()
        os._exit(status)  # not the interpreter's exit: it would join a thread blocked reading stdin
    if args.command == "stop":
        from tracefix import daemon

        print(f"tracefix: {'stopped the' if daemon.stop(args.path) else 'no'} daemon for {args.path.resolve()}")
        return 0
    if args.daemon:
        served = _through_daemon(args, sys.argv[2:] if argv is None else argv[1:])
        if served is not None:
            return served
    pool = _prestarted(args)  # before the imports below: pytest starts while tracefix does
    from tracefix.check import check

    log_warnings()

    async def checked() -> int:
        try:
            return await check(args, pool)
        finally:
            if pool is not None:
                pool.close()

    try:
        status = asyncio.run(until_signalled(checked()))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left (`tracefix check --all | head -1`): end quietly, with the status of a
        # program that SIGPIPE ended, as other command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # for the flush at exit
        return CLOSED_PIPE
    return status


def log_warnings() -> logging.StreamHandler:
    """Warnings and errors to stderr, printable, as `tracefix: …` lines: what a check logs."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Printable("tracefix: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    return handler


def _prestarted(args: argparse.Namespace) -> Pool | None:
    """A warm pytest worker started for the check's run, which it forks from: starting pytest
    overlaps tracefix's own imports, indexing and selection. None where the check will run no
    tests with one (--no-run, --audit, warmRunner off, no usable interpreter)."""
    from tracefix import settings
    from tracefix.running import bytecode, warm
    from tracefix.running.interpreter import InterpreterError, find_python
    from tracefix.running.process import plugin_env

    if args.no_run or args.audit or not args.path.is_dir() or not warm.supported():
        return None
    root = args.path.resolve()
    chosen, _ = settings.load(root, {"python": args.python} if args.python else None)  # Project says its warnings
    if not chosen.warm_runner:
        return None
    try:
        python = find_python(root, chosen.python)
    except InterpreterError:
        return None
    pool = warm.Pool(root)
    # the environment Project.plan gives a run, as run_tests passes it on
    pool.prestart(python, plugin_env(dict(os.environ, TRACEFIX_BYTECODE=str(bytecode.folder()))))
    return pool


def _through_daemon(args: argparse.Namespace, argv: list[str]) -> int | None:
    """The exit status of the check done by the workspace's daemon; None if no daemon could take
    it (said on stderr): then it runs here."""
    from tracefix import daemon

    def stop(signum: int, _frame: object) -> None:
        raise _Stopped(signum)

    # set, not inherited: a shell's background job starts with SIGINT ignored
    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    try:
        return daemon.request(args.path, argv)
    except (daemon.DaemonError, OSError) as exc:
        print(f"tracefix: warning: {exc}; checking without the daemon", file=sys.stderr)
        return None
    except _Stopped as stopped:  # the daemon sees the connection close and cancels the check
        print(f"tracefix: stopped by {signal.Signals(stopped.signum).name}", file=sys.stderr)
        return 128 + stopped.signum
    finally:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)


class _Stopped(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


async def until_signalled(job: Coroutine[Any, Any, int]) -> int:
    """`job`'s exit status; on SIGINT, SIGTERM or SIGHUP it is cancelled instead, which kills its
    test processes and removes its temporary files, and the status is 128 + the signal's number."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    caught: list[int] = []

    def stop(signum: int) -> None:
        caught.append(signum)
        task.cancel()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await job
    except asyncio.CancelledError:
        if not caught:
            raise
        print(f"tracefix: stopped by {signal.Signals(caught[0]).name}", file=sys.stderr)
        return 128 + caught[0]
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
