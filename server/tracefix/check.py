"""The headless loop: changes → selection → run → report (`tracefix check`)."""

from __future__ import annotations

import json
import os
import sys
from argparse import Namespace
from dataclasses import asdict

from tracefix.project import Project
from tracefix.reporting.diagnostics import run_diagnostics
from tracefix.reviews import ReviewSet
from tracefix.running.interpreter import InterpreterError, check_python
from tracefix.running.results import RAISED, RunReport, Verdict
from tracefix.selection.select import Changed, Selected, explain_skipped
from tracefix.tracing import lines_in

# 0: every selected test passed; 1: a test failed; 2: usage or setup error; 3: the run did not
# complete (pytest could not start, crashed, was killed, timed out, or could not collect a module)
EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
EXIT = {Verdict.PASSED: EXIT_PASSED, Verdict.FAILED: EXIT_FAILED, Verdict.INCOMPLETE: EXIT_INCOMPLETE}
RERUN = "failed last time"
MAX_FIXES = 3  # each fix costs model calls and test runs


class Style:
    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled else text


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


async def check(args: Namespace) -> int:
    out = sys.stdout
    style = Style(args.format == "text" and out.isatty() and "NO_COLOR" not in os.environ)
    root = args.path
    if args.apply and not args.fix:
        print("tracefix: --apply goes with --fix", file=sys.stderr)
        return EXIT_USAGE
    if not root.is_dir():
        print(f"tracefix: {root} is not a directory", file=sys.stderr)
        return EXIT_USAGE
    project = Project(root)
    try:
        for warning in project.warnings:
            print(f"tracefix: warning: {warning}", file=sys.stderr)
        try:
            changes, how = _changes(project, args)
        except ValueError as exc:
            print(f"tracefix: {exc}", file=sys.stderr)
            return EXIT_USAGE
        mode = "all" if changes is None else project.settings.selection
        selected = project.select(changes or [], mode)
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
                print(f"tracefix: {exc}", file=sys.stderr)
                return EXIT_USAGE
            problem = check_python(python)
            if problem:
                print(f"tracefix: {problem}", file=sys.stderr)
                return EXIT_USAGE
            total = len(project.index.tests())
            if args.format == "text":
                what = f"all {total} tests to audit selection" if args.audit else f"{len(selected)} of {total} tests"
                print(style(f"Running {what} ({how}) with {python}", "1"), file=out)
            if args.audit:
                audit = await project.audit(selected)
                report = audit.report
            else:
                report = await project.run([s.nodeid for s in selected])
            project.record(report)
        elif not args.no_run:
            project.record(report)  # nothing to run: the current state is the new baseline
        diagnostics = run_diagnostics(report) + project.diagnostics(report.results)
        traces = {}
        if report.failed and not args.no_trace and not args.no_run:
            traces = await _traces(project, report)
        comments = ReviewSet.from_settings(project.root, project.settings.review).collect() if args.reviews else []
        fixes = await _fixes(project, report, comments, args, style) if args.fix and not args.no_run else []
        if args.format == "json":
            data = _json(project, changes, selected, report, diagnostics, traces, args)
            if audit is not None:
                data["audit"] = {"missed": audit.missed, "missed_so_far": audit.missed_so_far}
            if args.reviews:
                data["reviews"] = [asdict(c) for c in comments]
            if args.fix:
                data["fixes"] = fixes
            print(json.dumps(data, indent=2), file=out)
        else:
            _text(out, style, project, changes, how, selected, report, diagnostics, traces, args)
            _text_audit(out, style, audit)
            _text_reviews(out, style, comments)
            _text_fixes(out, style, fixes)
        return EXIT[report.verdict]
    finally:
        project.close()


def _known_failures(project: Project, selected: list[Selected]) -> list[Selected]:
    """The tests that failed on their last run and are not selected: a test stays failing until a
    run shows it passing, so they run again."""
    chosen = {s.nodeid for s in selected}
    return [Selected(r.nodeid, RERUN) for r in project.known_failures() if r.nodeid not in chosen]


async def _traces(project: Project, report: RunReport) -> dict[str, object]:
    from tracefix.tracing import capture

    traces = {}
    for result in report.failed[:3]:  # tracing re-runs the test; a few are enough to act on
        if result.outcome not in RAISED:
            continue
        try:
            traces[result.nodeid] = await capture(
                project.root, project.python(), result.nodeid, timeout=project.settings.timeout
            )
        except Exception as exc:  # a trace is extra information; its failure must not hide results
            traces[result.nodeid] = f"(no trace: {exc})"
    return traces


async def _fixes(project: Project, report: RunReport, comments, args, style) -> list[dict]:
    """Fix failing tests (and open reviews with --reviews); --apply writes verified ones."""
    # imported here: the model client costs half a second of start-up that a plain check never needs
    from tracefix.fixing.jobs import FixError, address_review, fix_test

    jobs = [
        (r.nodeid, fix_test(project, r, {}, _progress(args, style)))
        for r in report.failed[:MAX_FIXES]
        if r.outcome in RAISED
    ]
    jobs += [
        (f"review {c.id}", address_review(project, c, {}, _progress(args, style)))
        for c in comments
        if c.state == "open"
    ][:MAX_FIXES]
    found = []
    for subject, job in jobs:
        try:
            fix = await job
        except FixError as exc:
            found.append({"subject": subject, "verified": False, "error": str(exc)})
            continue
        entry = {
            "subject": subject,
            "path": fix.path,
            "verified": fix.verified,
            "evidence": fix.evidence,
            "diff": fix.diff,
            "applied": False,
            "model_calls": fix.outcome.model_calls,
            "tokens": fix.outcome.tokens_in + fix.outcome.tokens_out,
        }
        if args.apply and fix.verified:
            entry["applied"] = _apply(project, fix)
        found.append(entry)
    return found


def _apply(project: Project, fix) -> bool:
    """Write a verified fix, only if the file is still what the fix was computed from."""
    path = project.root / fix.path
    if project.text(fix.path) != fix.before:
        return False
    tmp = path.with_name(f".{path.name}.tracefix-tmp")
    tmp.write_text(fix.after, encoding="utf-8")
    os.replace(tmp, path)
    if fix.comment is not None and fix.comment.source != "inline":
        ReviewSet.from_settings(project.root, project.settings.review).resolve(fix.comment.id)
    return True


def _progress(args, style):
    if args.format != "text":
        return None
    return lambda message: print(style(f"  fix: {message}", "2"), file=sys.stderr)


def _text_audit(out, style, audit) -> None:
    if audit is None:
        return
    colour = "31" if audit.missed else "32"
    print(
        style(
            f"selection audit: {len(audit.missed)} missed failure(s) in this run, "
            f"{audit.missed_so_far} so far (selection chose {len(audit.would_run)} test(s))",
            colour,
        ),
        file=out,
    )
    for nodeid in audit.missed:
        print(f"  missed {nodeid}", file=out)


def _text_reviews(out, style, comments) -> None:
    if not comments:
        return
    print(style("Review comments:", "1"), file=out)
    for c in comments:
        who = f" @{c.author}" if c.author else ""
        where = f"{c.path}:{c.start_line}" + (f"-{c.end_line}" if c.end_line != c.start_line else "")
        symbol = f" ({c.symbol})" if c.symbol else ""
        print(f"  [{c.state}] {where}{symbol}{who}: {c.body.splitlines()[0] if c.body else ''}  <{c.id}>", file=out)


def _text_fixes(out, style, fixes: list[dict]) -> None:
    for f in fixes:
        if "error" in f:
            print(style(f"No fix for {f['subject']}: {f['error']}", "33"), file=out)
            continue
        label = style("Verified fix", "32") if f["verified"] else style("UNVERIFIED suggestion", "33")
        print(f"{label} for {f['subject']} in {f['path']} ({f['evidence']}):", file=out)
        print(f["diff"], file=out)
        if f["applied"]:
            print(style(f"  applied to {f['path']}", "32"), file=out)


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
        data["traces"] = {n: t.to_dict() if hasattr(t, "to_dict") else {"error": str(t)} for n, t in traces.items()}
    if args.explain:
        skipped = explain_skipped(project.index, selected, project.recorded().tests)
        data["explain"] = {s.nodeid: s.reason for s in selected + skipped}
    return data


def _text(out, style, project, changes, how, selected, report, diagnostics, traces, args) -> None:
    if changes:
        print(style(f"Changed ({how}):", "1"), file=out)
        for c in changes:
            print(f"  {c.path}:{c.line}  {c.qualname}  [{c.what}]", file=out)
    elif changes is not None:
        print(f"No changes {how}.", file=out)
    rerun = sum(s.reason == RERUN for s in selected)
    if rerun:
        verb = "Would re-run" if args.no_run else "Re-running"
        print(f"{verb} {rerun} test{'s' if rerun != 1 else ''} that failed last time.", file=out)
    if args.explain or args.no_run:
        print(style("Selection:", "1"), file=out)
        for s in selected:
            print(f"  {style('run ', '32')} {s.nodeid}: {s.reason}", file=out)
        if args.explain:
            for s in explain_skipped(project.index, selected, project.recorded().tests):
                print(f"  {style('skip', '2')} {s.nodeid}: {s.reason}", file=out)
    if args.no_run:
        print(f"--no-run: would run {len(selected)} test(s) with {_python_or_error(project)}; ran nothing.", file=out)
        return
    colours = {"passed": "32", "failed": "31", "error": "31", "timeout": "31", "crashed": "31", "skipped": "33"}
    for r in report.results:
        if r.outcome != "passed" or args.explain:
            print(f"  {style(r.outcome.upper(), colours.get(r.outcome, '0'))} {r.nodeid}", file=out)
    for d in diagnostics:
        test = f" [{d.nodeid}]" if d.nodeid else ""
        print(f"{style(f'{d.path}:{d.line}', '1')}: {style('error', '31')}: {d.message}{test}", file=out)
        for rel in d.related:
            print(f"    {rel.path}:{rel.line}: {rel.message}", file=out)
    for nodeid, trace in traces.items():
        print(style(f"\nFailing trace of {nodeid}:", "1"), file=out)
        print(trace.render(source=lines_in(project.root)) if hasattr(trace, "render") else str(trace), file=out)
    incomplete = report.verdict == Verdict.INCOMPLETE
    if incomplete:
        print(style(f"tracefix: the run did not complete: {report.message}", "31"), file=out)
    elif report.message:
        print(style(f"tracefix: {report.message}", "31"), file=out)
    summary = report.summary() if report.results else "no tests selected"
    print(style(summary, "31" if report.failed or incomplete else "32"), file=out)


def _python_or_error(project: Project) -> str:
    try:
        return project.python()
    except Exception as exc:
        return f"<{exc}>"
