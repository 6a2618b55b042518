"""Failing traces in the editor: captured after a run, shown as a document, as inline values
and on hover."""

from __future__ import annotations

import asyncio

from lsprotocol import types

from tracefix.lsp import publishing
from tracefix.lsp.handlers import sync
from tracefix.lsp.session import ProjectState, Session
from tracefix.protocol import Command
from tracefix.running.results import RAISED, TestResult
from tracefix.tracing import Trace, capture, lines_in

AUTO_TRACES = 3  # failing tests traced after each run; each trace re-runs its test
TRACE_CHARS = 6000  # a trace shown as a document


async def trace_for(state: ProjectState, nodeid: str, refresh: bool = False) -> Trace:
    """The test's trace, captured within trace.timeout seconds. Only a traced run that finished is
    kept: what one that ran out of time or crashed recorded never blames code nor shows values."""
    async with state.tracing.setdefault(nodeid, asyncio.Lock()):
        if not refresh and nodeid in state.traces:
            return state.traces[nodeid]
        python = await state.call(state.project.python)
        trace = await capture(state.root, python, nodeid, timeout=state.settings.trace_timeout)
        if trace.outcome is not None:
            state.traces[nodeid] = trace
        return trace


def after_run(session: Session, state: ProjectState, results: list[TestResult]) -> asyncio.Task | None:
    """Forget traces of tests that ran again; trace the first few failures in the background (the
    task, which a newer save cancels). The run's results, status and end notification never wait
    for it."""
    for r in results:
        state.traces.pop(r.nodeid, None)
    failing = [r.nodeid for r in results if r.outcome in RAISED][:AUTO_TRACES]
    if failing and session.trusted:
        return session.spawn(_trace_all(session, state, failing), "trace failures")
    return None


async def _trace_all(session: Session, state: ProjectState, nodeids: list[str]) -> None:
    for nodeid in nodeids:
        trace = await trace_for(state, nodeid)
        if trace.outcome is None:
            session.ls.log(f"no trace of {nodeid}: {(trace.error or 'no record').splitlines()[0]}")
    # with its trace, a failure is blamed on the line that raised or made the wrong value
    await publishing.update(session, state, [state.results[n] for n in nodeids if n in state.results])
    workspace = session.ls.client_capabilities.workspace
    if workspace and workspace.inline_value:
        try:
            session.ls.workspace_inline_value_refresh(None)
        except Exception as exc:  # an old client: the next request gets the values anyway
            session.ls.log(f"inline value refresh failed: {exc!r}")


def traces_covering(state: ProjectState, rel: str, line: int) -> list[Trace]:
    """The traces with a call around the line; first those of the tests whose diagnostics sit on
    it, so a hover shows the same test's values as the squiggle under the cursor."""
    here = {d.nodeid for ds in state.diagnostics.values() for d in ds if d.path == rel and d.line == line}
    found = [t for t in state.traces.values() if t.failing_call(rel, line)]
    return sorted(found, key=lambda t: t.nodeid not in here)


@sync(Command.SHOW_TRACE, command=True)
async def show_trace(session: Session, *args) -> dict:
    """Arguments: [nodeid?, root?]; without a nodeid, the first failing test."""
    nodeid, root = (list(args) + [None, None])[:2]
    if not session.trusted:
        raise ValueError("this workspace is not trusted: tracefix runs no code in it")
    for state in [session.project_named(root)] if root else list(session.projects.values()):
        failing = [r.nodeid for r in state.failing()]
        target = nodeid or (failing[0] if failing else None)
        if target is None or await state.call(state.project.index.test_for, target) is None:
            continue
        trace = await trace_for(state, target, refresh=target not in failing)
        content = await state.call(trace.render, TRACE_CHARS, lines_in(state.root))
        return {"nodeid": target, "content": content, "trace": trace.to_dict()}
    raise ValueError(f"no failing test {nodeid!r} to trace" if nodeid else "no failing test to trace")


@sync(types.TEXT_DOCUMENT_INLINE_VALUE)
def inline_values(session: Session, params: types.InlineValueParams) -> list[types.InlineValue]:
    located = session.locate(params.text_document.uri)
    if located is None:
        return []
    state, rel = located
    lines = (session.text_of(state, rel) or "").splitlines()
    values: list[types.InlineValue] = []
    previous = None
    for line in range(params.range.start.line + 1, min(params.range.end.line + 1, len(lines)) + 1):
        for trace in traces_covering(state, rel, line)[:1]:
            shown = trace.values_at(rel, line)
            if shown and shown != previous:  # one hint per block, not per line
                previous = shown
                text = "  ".join(f"{name} = {value}" for name, value in shown[:6])
                end = types.Position(line - 1, len(lines[line - 1]))
                values.append(types.InlineValueText(range=types.Range(end, end), text=f"failing run: {text}"))
    return values
