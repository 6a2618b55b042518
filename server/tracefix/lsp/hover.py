"""Hover on a test: why it ran and its last result; on traced code: its values in the failing run."""

from __future__ import annotations

from lsprotocol import types

from tracefix.lsp import reviews
from tracefix.lsp.handlers import sync
from tracefix.lsp.session import Session
from tracefix.lsp.traces import traces_covering


@sync(types.TEXT_DOCUMENT_HOVER)
def hover(session: Session, params: types.HoverParams) -> types.Hover | None:
    located = session.locate(params.text_document.uri)
    if located is None:
        return None
    state, rel = located
    line = params.position.line + 1
    spanning = [t for t in state.tests.get(rel, []) if t.line <= line <= t.end_line]
    for nodeid in [max(spanning, key=lambda t: t.line).nodeid] if spanning else []:
        result = state.results.get(nodeid)
        reason = state.reasons.get(nodeid)
        lines = [f"**{nodeid}**"]
        if result is not None:
            lines.append(f"last run: {result.outcome} in {result.duration:.3f} s")
            if result.failing and result.message:
                lines.append("```\n" + result.message.strip()[:1500] + "\n```")
        lines.append(f"selected: {reason}" if reason else "not run since the server started")
        return _markdown(lines)
    threads = [reviews.thread(c) for c in reviews.at(state, rel, line)]
    if threads:
        return _markdown(threads)
    for trace in traces_covering(state, rel, line)[:1]:
        values = trace.values_at(rel, line)
        call = trace.failing_call(rel, line)
        if values and call is not None:
            rows = "\n".join(f"{name} = {value}" for name, value in values)
            args = ", ".join(f"{name}={value}" for name, value in call.args.items())
            if call.exception is not None:
                ended = f"raised {call.exception.splitlines()[0]}"
            else:
                ended = f"returned {call.returned}" if call.returned is not None else "did not return"
            return _markdown(
                [
                    f"**In the failing run of {trace.nodeid}**",
                    f"`{call.qualname}({args})`, call #{call.index}, {ended}",
                    f"```python\n{rows}\n```",
                ]
            )
    return None


def _markdown(lines: list[str]) -> types.Hover:
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value="\n\n".join(lines)))
