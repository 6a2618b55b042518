"""`tracefix serve` (the language server) and `tracefix check` (the same loop, headless)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from tracefix import __version__


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
    check.add_argument("--no-trace", action="store_true", help="do not trace failing tests")
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve":
        from tracefix.lsp.server import serve

        _log_to(args.log_file, logging.DEBUG if args.verbose else logging.INFO)
        serve(args.tcp)
        return 0
    from tracefix.check import check

    logging.basicConfig(level=logging.WARNING, format="tracefix: %(message)s")
    return asyncio.run(check(args))


def _log_to(path: Path | None, level: int) -> None:
    handler: logging.Handler = logging.FileHandler(path) if path else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("pygls").setLevel(logging.DEBUG if level == logging.DEBUG else logging.WARNING)
