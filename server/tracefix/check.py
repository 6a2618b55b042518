"""The headless loop: changes → selection → run → report (`tracefix check`)."""

from __future__ import annotations

import json
import os
import re
import sys
from argparse import Namespace
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import TextIO

from tracefix.index.store import StoreError
from tracefix.project import Project
from tracefix.reporting.diagnostics import run_diagnostics
from tracefix.reviews import ReviewSet
from tracefix.running.interpreter import NO_PYTEST, InterpreterError
from tracefix.running.results import RAISED, RunReport, Verdict
from tracefix.running.warm import Pool
from tracefix.sanitize import printable, printable_data
from tracefix.selection.select import Changed, Selected, explain_skipped
from tracefix.tracing import Trace, capture, lines_in

# 0: every selected test passed; 1: a test failed; 2: usage or setup error; 3: the run did not
# complete (pytest could not start, crashed, was killed, timed out, or could not collect a module)
EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
EXIT = {Verdict.PASSED: EXIT_PASSED, Verdict.FAILED: EXIT_FAILED, Verdict.INCOMPLETE: EXIT_INCOMPLETE}
RERUN = "failed last time"
MAX_FIXES = 3  # each fix costs model calls and test runs


STYLES = ("0", "1", "2", "31", "32", "33")  # reset, bold, dim, red, green, yellow
_OWN_CODE = re.compile(r"\\x1b\[(" + "|".join(STYLES) + r")m")  # a colour code as printable() shows it


class Output:
    """A stream for `tracefix check`: every control character in what it prints (a test's message,
    a file name, a model's diff) is shown escaped, so no text can drive the terminal; with colour
    on, only the codes of `style` are put back."""

    def __init__(self, stream: TextIO, colour: bool = False):
        self.stream, self.colour = stream, colour

    def style(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text

    def __call__(self, text: str = "") -> None:
        text = printable(text)
        if self.colour:
            text = _OWN_CODE.sub("\033[\\1m", text)
        print(text, file=self.stream, flush=True)


def _changes(project: Project, args: Namespace) -> tuple[list[Changed] | None, str]:
    """(changes, how they were found); None means run everything."""
    if args.all:
        return None, "--all"
    if args.since:
        changes = project.changes_since_rev(args.since)
        if changes is None:
            raise ValueError(f"--since {args.since}: not a git revision in {project.root}")
        return changes, f"since {args.since}"
    if project.snapshot:
        return project.changes_since_snapshot(), "since the last run"
    changes = project.changes_since_rev("HEAD")
    if changes is not None:
        return changes, "since git HEAD (uncommitted changes)"
    return None, "no earlier run and no git history"


async def check(args: Namespace, pool: Pool | None = None) -> int:
    """pool: a warm pytest worker its caller made and closes (cli's, started before this check's
    imports; the daemon's, kept between checks)."""
    say = Output(sys.stdout, args.format == "text" and sys.stdout.isatty() and "NO_COLOR" not in os.environ)
    err = Output(sys.stderr)
    style = say.style
    root = args.path
    if args.apply and not args.fix:
        err("tracefix: --apply goes with --fix")
        return EXIT_USAGE
    if not root.is_dir():
        err(f"tracefix: {root} is not a directory")
        return EXIT_USAGE
    try:
        # the command line is the user's own: it may set what no workspace file may (settings.USER_ONLY)
        project = Project(root, {"python": args.python} if args.python else None, pool=pool)
    except StoreError as exc:
        err(f"tracefix: {exc}")
        return EXIT_USAGE
    try:
        for warning in project.warnings:
            err(f"tracefix: warning: {warning}")
        try:
            changes, how = _changes(project, args)
        except ValueError as exc:
            err(f"tracefix: {exc}")
            return EXIT_USAGE
        mode = "all" if changes is None else project.settings.selection
        # --no-run is a promise to run no workspace code: not even its interpreter, to ask what it has installed
        selected = project.select(changes or [], mode, run_code=not args.no_run)
        if changes is None:
            selected = [Selected(s.nodeid, f"running all tests ({how})") for s in selected]
        else:
            selected += _known_failures(project, selected)
        report = RunReport()
        audit = None
        if not args.no_run and (selected or args.audit):
            try:
                python = project.python()
            except InterpreterError as exc:
                err(f"tracefix: {exc}")
                return EXIT_USAGE
            total = len(project.index.tests())
            if args.format == "text":
                what = f"all {total} tests to audit selection" if args.audit else f"{len(selected)} of {total} tests"
                say(style(f"Running {what} ({how}) with {python}", "1"))
            if args.audit:
                audit = await project.audit(selected)
                report = audit.report
            else:
                report = await project.run([s.nodeid for s in selected])
            if report.message.startswith(NO_PYTEST):  # learnt from the run: asking first costs an interpreter start
                err(f"tracefix: {report.message}")
                return EXIT_USAGE
            project.record(report)
        elif not args.no_run:
            project.record(report)  # nothing to run: the current state is the new baseline
        diagnostics = run_diagnostics(report) + project.diagnostics(report.results)
        # traced after the verdict, each within trace.timeout: a trace never changes the exit status
        tracing = bool(report.failed) and not args.no_trace and not args.no_run
        comments = ReviewSet.from_settings(project.root, project.settings.review).collect() if args.reviews else []
        fixing = args.fix and not args.no_run
        if args.format == "json":  # one document: it waits for the traces
            traces = {nodeid: trace async for nodeid, trace in _traces(project, report)} if tracing else {}
            fixes = await _fixes(project, report, comments, args, err) if fixing else []
            data = _json(project, changes, selected, report, diagnostics, traces, args)
            if audit is not None:
                data["audit"] = {"missed": audit.missed, "missed_so_far": audit.missed_so_far}
            if args.reviews:
                data["reviews"] = [asdict(c) for c in comments]
            if args.fix:
                data["fixes"] = fixes
            say(json.dumps(printable_data(data), indent=2))
        else:
            _text(say, style, project, changes, how, selected, report, diagnostics, args)
            _text_audit(say, style, audit)
            if tracing:
                async for _, trace in _traces(project, report):
                    _text_trace(say, style, project, trace)
            _text_reviews(say, style, comments)
            _text_fixes(say, style, await _fixes(project, report, comments, args, err) if fixing else [])
        return EXIT[report.verdict]
    finally:
        project.close()


def _known_failures(project: Project, selected: list[Selected]) -> list[Selected]:
    """The tests that failed on their last run and are not selected: a test stays failing until a
    run shows it passing, so they run again."""
    chosen = {s.nodeid for s in selected}
    return [Selected(r.nodeid, RERUN) for r in project.known_failures() if r.nodeid not in chosen]


async def _traces(project: Project, report: RunReport) -> AsyncIterator[tuple[str, Trace]]:
    """The failing tests' traces as each is captured, each within trace.timeout seconds."""
    for result in report.failed[:3]:  # tracing re-runs the test; a few are enough to act on
        if result.outcome not in RAISED:
            continue
        try:
            trace = await capture(project.root, project.python(), result.nodeid, timeout=project.settings.trace_timeout)
        except Exception as exc:  # a trace is extra information; its failure must not hide results
            trace = Trace(result.nodeid, error=f"no trace: {exc}")
        yield result.nodeid, trace


async def _fixes(project: Project, report: RunReport, comments, args, err: Output) -> list[dict]:
    """Fix failing tests (one job for the tests that blame the same code) and open reviews with
    --reviews; --apply writes verified fixes. An unverified suggestion is shown only with
    fix.offerUnverified."""
    # imported here: the model client costs half a second of start-up that a plain check never needs
    from tracefix.fixing.jobs import FixError, address_review, fix_test
    from tracefix.fixing.shadow import unconfined_warning

    warning = unconfined_warning(project.settings.sandbox)
    if warning and (report.failed or comments):
        err(f"tracefix: warning: {warning}")
    failing = [r for r in report.failed if r.outcome in RAISED]
    covered: set[str] = set()
    found: list[dict] = []
    for r in failing:
        if r.nodeid in covered or len(found) == MAX_FIXES:
            continue
        others = [f for f in failing if f.nodeid != r.nodeid and f.nodeid not in covered]
        try:
            fix = await fix_test(project, r, {}, _progress(args, err), failing=others)
        except FixError as exc:
            covered.add(r.nodeid)
            found.append(exc.report(r.nodeid))
            continue
        covered.update(fix.tests)
        found.append(_offered(project, fix, args))
    for c in [c for c in comments if c.state == "open"][:MAX_FIXES]:
        try:
            fix = await address_review(project, c, {}, _progress(args, err))
        except FixError as exc:
            found.append(exc.report(f"review {c.id}"))
            continue
        found.append(_offered(project, fix, args))
    return found


def _offered(project: Project, fix, args) -> dict:
    """The fix job's report; its diff only where it may be offered (verified, or unverified
    suggestions allowed by fix.offerUnverified)."""
    offered = fix.verified or project.settings.offer_unverified
    entry = {**fix.report(), "outcome": "verified" if fix.verified else "unverified", "offered": offered}
    entry["diff"] = fix.diff if offered else ""
    entry["applied"] = bool(args.apply and fix.verified and _apply(project, fix))
    return entry


def _apply(project: Project, fix) -> bool:
    """Write a verified fix, only if every file is still what the fix was computed from."""
    if any(project.text(f.path) != f.before for f in fix.files):
        return False
    for f in fix.files:
        path = project.root / f.path
        tmp = path.with_name(f".{path.name}.tracefix-tmp")
        tmp.write_text(f.after, encoding="utf-8")
        os.replace(tmp, path)
    if fix.comment is not None and fix.comment.source != "inline":
        ReviewSet.from_settings(project.root, project.settings.review).resolve(fix.comment.id)
    return True


def _progress(args, err: Output):
    if args.format != "text":
        return None
    return lambda message: err(err.style(f"  fix: {message}", "2"))


def _text_audit(out, style, audit) -> None:
    if audit is None:
        return
    colour = "31" if audit.missed else "32"
    out(
        style(
            f"selection audit: {len(audit.missed)} missed failure(s) in this run, "
            f"{audit.missed_so_far} so far (selection chose {len(audit.would_run)} test(s))",
            colour,
        )
    )
    for nodeid in audit.missed:
        out(f"  missed {nodeid}")


def _text_reviews(out, style, comments) -> None:
    if not comments:
        return
    out(style("Review comments:", "1"))
    for c in comments:
        who = f" @{c.author}" if c.author else ""
        where = f"{c.path}:{c.start_line}" + (f"-{c.end_line}" if c.end_line != c.start_line else "")
        symbol = f" ({c.symbol})" if c.symbol else ""
        out(f"  [{c.state}] {where}{symbol}{who}: {c.body.splitlines()[0] if c.body else ''}  <{c.id}>")


def _text_fixes(out, style, fixes: list[dict]) -> None:
    for f in fixes:
        spent = f"{f['model_calls']} model calls, {f['tokens']} tokens, {f['seconds']:.1f} s"
        if "error" in f:
            out(style(f"No fix for {f['subject']}: {f['error']} ({spent})", "33"))
            continue
        label = style("Verified fix", "32") if f["verified"] else style("UNVERIFIED suggestion", "33")
        what = f" ({f['title']})" if f["title"] else ""
        tests = ", ".join(f["tests"]) or f["subject"]
        if not f["offered"]:
            out(
                style(
                    f"No verified fix for {tests}: {f['evidence']} ({spent}); set fix.offerUnverified to see the "
                    "unverified suggestion",
                    "33",
                )
            )
            continue
        out(f"{label}{what} for {tests} in {', '.join(f['paths'])} ({f['evidence']}; {spent}):")
        out(f["diff"])
        if f["applied"]:
            out(style(f"  applied to {', '.join(f['paths'])}", "32"))


def _json(project, changes, selected, report, diagnostics, traces, args) -> dict:
    verdict = None if args.no_run else report.verdict
    data = {
        "verdict": verdict,
        "cause": report.message if verdict == Verdict.INCOMPLETE else None,
        "changed": [
            {"path": c.path, "symbol": c.qualname, "kind": c.kind, "what": c.what, "line": c.line}
            for c in changes or []
        ],
        "selected": [s.nodeid for s in selected],
        "results": [r.to_dict() for r in report.results],
        "diagnostics": [d.to_dict() for d in diagnostics],
        "status": report.status,
        "summary": report.summary(),
    }
    if report.message:
        data["message"] = report.message
    if traces:
        data["traces"] = {n: t.to_dict() for n, t in traces.items()}
    if args.explain:
        skipped = explain_skipped(project.index, selected, project.recorded().tests)
        data["explain"] = {s.nodeid: s.reason for s in selected + skipped}
    return data


def _text(out, style, project, changes, how, selected, report, diagnostics, args) -> None:
    if changes:
        out(style(f"Changed ({how}):", "1"))
        for c in changes:
            out(f"  {c.path}:{c.line}  {c.qualname}  [{c.what}]")
    elif changes is not None:
        out(f"No changes {how}.")
    rerun = sum(s.reason == RERUN for s in selected)
    if rerun:
        verb = "Would re-run" if args.no_run else "Re-running"
        out(f"{verb} {rerun} test{'s' if rerun != 1 else ''} that failed last time.")
    if args.explain or args.no_run:
        out(style("Selection:", "1"))
        for s in selected:
            out(f"  {style('run ', '32')} {s.nodeid}: {s.reason}")
        if args.explain:
            for s in explain_skipped(project.index, selected, project.recorded().tests):
                out(f"  {style('skip', '2')} {s.nodeid}: {s.reason}")
    if args.no_run:
        out(f"--no-run: would run {len(selected)} test(s) with {_python_or_error(project)}; ran nothing.")
        return
    colours = {"passed": "32", "failed": "31", "error": "31", "timeout": "31", "crashed": "31", "skipped": "33"}
    for r in report.results:
        if r.outcome != "passed" or args.explain:
            out(f"  {style(r.outcome.upper(), colours.get(r.outcome, '0'))} {r.nodeid}")
    for d in diagnostics:
        test = f" [{d.nodeid}]" if d.nodeid else ""
        out(f"{style(f'{d.path}:{d.line}', '1')}: {style('error', '31')}: {d.message}{test}")
        for rel in d.related:
            out(f"    {rel.path}:{rel.line}: {rel.message}")
    incomplete = report.verdict == Verdict.INCOMPLETE
    if incomplete:
        out(style(f"tracefix: the run did not complete: {report.message}", "31"))
    elif report.message:
        out(style(f"tracefix: {report.message}", "31"))
    summary = report.summary() if report.results else "no tests selected"
    out(style(summary, "31" if report.failed or incomplete else "32"))


def _text_trace(out, style, project: Project, trace: Trace) -> None:
    if trace.outcome is None:  # the traced run never finished (out of time, crashed): one line, not a result
        out(style(f"No trace of {trace.nodeid}: {(trace.error or 'no record').splitlines()[0]}", "33"))
        return
    out(style(f"\nFailing trace of {trace.nodeid}:", "1"))
    out(trace.render(source=lines_in(project.root)))


def _python_or_error(project: Project) -> str:
    try:
        return project.python()
    except Exception as exc:
        return f"<{exc}>"
