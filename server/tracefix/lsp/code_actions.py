"""Code actions on tracefix diagnostics. Listing is cheap; the work happens in commands."""

from __future__ import annotations

from lsprotocol import types

from tracefix.lsp.commands import RERUN_TEST
from tracefix.lsp.server import TracefixServer, server
from tracefix.lsp.traces import SHOW_TRACE
from tracefix.reporting.diagnostics import SOURCE, test_name


def _failing_tests(params: types.CodeActionParams) -> list[tuple[types.Diagnostic, str]]:
    found, seen = [], set()
    for d in params.context.diagnostics:
        data = d.data if isinstance(d.data, dict) else {}
        nodeid = data.get("nodeid")
        if d.source == SOURCE and nodeid and nodeid not in seen:
            seen.add(nodeid)
            found.append((d, nodeid))
    return found


@server.feature(
    types.TEXT_DOCUMENT_CODE_ACTION,
    types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix], resolve_provider=False),
)
def code_actions(ls: TracefixServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    actions = []
    for diagnostic, nodeid in _failing_tests(params):
        name = test_name(nodeid)
        actions.append(types.CodeAction(
            title=f"Rerun {name}", kind=types.CodeActionKind.QuickFix, diagnostics=[diagnostic],
            command=types.Command(title=f"Rerun {name}", command=RERUN_TEST, arguments=[nodeid]),
        ))
        actions.append(types.CodeAction(
            title=f"Show failing trace of {name}", kind=types.CodeActionKind.Empty, diagnostics=[diagnostic],
            command=types.Command(title="Show failing trace", command=SHOW_TRACE, arguments=[nodeid]),
        ))
    return actions
