"""Failing traces in the editor: captured after a run, shown as a document, as inline values
and on hover."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lsprotocol import types

from tracefix.lsp.server import TracefixServer, server
from tracefix.project import Project
from tracefix.running.results import RAISED, TestResult
from tracefix.tracing import Trace, capture, lines_in

SHOW_TRACE = "tracefix.showTrace"
AUTO_TRACES = 3  # failing tests traced after each run; each trace re-runs its test
_cache: dict[tuple[Path, str], Trace] = {}
_locks: dict[tuple[Path, str], asyncio.Lock] = {}


async def trace_for(ls: TracefixServer, project: Project, nodeid: str, refresh: bool = False) -> Trace:
    key = (project.root, nodeid)
    async with _locks.setdefault(key, asyncio.Lock()):
        if refresh or key not in _cache:
            _cache[key] = await capture(project.root, project.python(), nodeid, timeout=project.settings.timeout)
        return _cache[key]


def after_run(ls: TracefixServer, project: Project, results: list[TestResult]) -> None:
    """Forget traces of tests that ran again; trace the first few failures in the background."""
    for r in results:
        _cache.pop((project.root, r.nodeid), None)
    failing = [r.nodeid for r in results if r.outcome in RAISED][:AUTO_TRACES]
    if failing and ls.trusted:
        ls.spawn(_trace_all(ls, project, failing), "trace failures")


async def _trace_all(ls: TracefixServer, project: Project, nodeids: list[str]) -> None:
    for nodeid in nodeids:
        trace = await trace_for(ls, project, nodeid)
        if trace.error:
            ls.log(f"no trace for {nodeid}: {trace.error.splitlines()[0]}")
    if ls.client_capabilities.workspace and ls.client_capabilities.workspace.inline_value:
        try:
            ls.workspace_inline_value_refresh(None)
        except Exception as exc:  # an old client: the next request gets the values anyway
            ls.log(f"inline value refresh failed: {exc!r}")


def traces_covering(project: Project, rel: str, line: int) -> list[Trace]:
    return [t for (root, _), t in _cache.items() if root == project.root and t.failing_call(rel, line)]


@server.command(SHOW_TRACE)
async def show_trace(ls: TracefixServer, *args) -> dict:
    """Arguments: [nodeid?, root?]; without a nodeid, the first failing test."""
    nodeid, root = (list(args) + [None, None])[:2]
    if not ls.trusted:
        raise ValueError("this workspace is not trusted: tracefix runs no code in it")
    for project in [ls.project_named(root)] if root else list(ls.projects.values()):
        failing = [r.nodeid for r in ls.publisher.failing(project)]
        target = nodeid or (failing[0] if failing else None)
        if target is None or project.index.test_for(target) is None:
            continue
        trace = await trace_for(ls, project, target, refresh=target not in failing)
        content = trace.render(source=lines_in(project.root))
        return {"nodeid": target, "content": content, "trace": trace.to_dict()}
    raise ValueError(f"no failing test {nodeid!r} to trace" if nodeid else "no failing test to trace")


@server.feature(types.TEXT_DOCUMENT_INLINE_VALUE)
def inline_values(ls: TracefixServer, params: types.InlineValueParams) -> list[types.InlineValue]:
    located = ls.locate(params.text_document.uri)
    if located is None:
        return []
    project, rel = located
    lines = (ls.text_of(project, rel) or "").splitlines()
    values: list[types.InlineValue] = []
    previous = None
    for line in range(params.range.start.line + 1, min(params.range.end.line + 1, len(lines)) + 1):
        for trace in traces_covering(project, rel, line)[:1]:
            shown = trace.values_at(rel, line)
            if shown and shown != previous:  # one hint per block, not per line
                previous = shown
                text = "  ".join(f"{name} = {value}" for name, value in shown[:6])
                end = types.Position(line - 1, len(lines[line - 1]))
                values.append(types.InlineValueText(range=types.Range(end, end), text=f"failing run: {text}"))
    return values
