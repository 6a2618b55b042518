"""Hover on a test: why it ran and its last result; on traced code: its values in the failing run."""

from __future__ import annotations

from lsprotocol import types

from tracefix.lsp import reviews
from tracefix.lsp.server import TracefixServer, server
from tracefix.lsp.traces import traces_covering


@server.feature(types.TEXT_DOCUMENT_HOVER)
def hover(ls: TracefixServer, params: types.HoverParams) -> types.Hover | None:
    located = ls.locate(params.text_document.uri)
    if located is None:
        return None
    project, rel = located
    line = params.position.line + 1
    for test in project.index.tests(rel):
        symbol = project.index.symbol(rel, test.qualname)
        if symbol is None or not (symbol.start_line <= line <= symbol.end_line):
            continue
        result = ls.publisher.results.get((project.root, test.nodeid))
        reason = ls.runs.reasons.get((project.root, test.nodeid))
        lines = [f"**{test.nodeid}**"]
        if result is not None:
            lines.append(f"last run: {result.outcome} in {result.duration:.3f} s")
            if result.failing and result.message:
                lines.append("```\n" + result.message.strip()[:1500] + "\n```")
        lines.append(f"selected: {reason}" if reason else "not run since the server started")
        return _markdown(lines)
    threads = [reviews.thread(c) for c in reviews.at(project, rel, line)]
    if threads:
        return _markdown(threads)
    for trace in traces_covering(project, rel, line)[:1]:
        values = trace.values_at(rel, line)
        if values:
            call = trace.failing_call(rel, line)
            rows = "\n".join(f"{name} = {value}" for name, value in values)
            return _markdown([f"**In the failing run of {trace.nodeid}** ({call.qualname}, call #{call.index})",
                              f"```python\n{rows}\n```"])
    return None


def _markdown(lines: list[str]) -> types.Hover:
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value="\n\n".join(lines)))
