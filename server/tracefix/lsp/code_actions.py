"""Code actions on tracefix diagnostics. Listing is cheap; the work happens in commands."""

from __future__ import annotations

from lsprotocol import types

from tracefix.lsp import fixes
from tracefix.lsp.handlers import sync
from tracefix.lsp.publishing import SOURCE, for_uri
from tracefix.lsp.reviews import REVIEW_SOURCE
from tracefix.lsp.session import Session
from tracefix.protocol import Command
from tracefix.reporting.diagnostics import test_name


def _data(d: types.Diagnostic) -> dict:
    return d.data if isinstance(d.data, dict) else {}


@sync(
    types.TEXT_DOCUMENT_CODE_ACTION,
    types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix], resolve_provider=False),
)
def code_actions(session: Session, params: types.CodeActionParams) -> list[types.CodeAction]:
    located = session.locate(params.text_document.uri)
    if located is None:
        return []
    state = located[0]
    root = str(state.root)
    actions: list[types.CodeAction] = []
    seen: set[str] = set()
    offered: set[int] = set()
    # the lines blamed for a failure offer its fix too, with or without the squiggle under the cursor
    lines = set(range(params.range.start.line + 1, params.range.end.line + 2))
    blamed = [
        d
        for d in for_uri(session, params.text_document.uri)
        if d.source == SOURCE and lines & set(_data(d).get("lines", ()))
    ]
    for d in [*params.context.diagnostics, *blamed]:
        data = _data(d)
        nodeid, comment_id = data.get("nodeid"), data.get("comment")
        if d.source == SOURCE and nodeid and nodeid not in seen:
            seen.add(nodeid)
            name = test_name(nodeid)
            fix = state.fixes.get(nodeid)
            if fix is None or id(fix) not in offered:  # tests that blame the same code share one fix
                offered.add(id(fix))
                actions += fixes.actions(
                    session, state, nodeid, f"Fix {name} with tracefix", d, Command.FIX_TEST, [nodeid, root]
                )
            actions.append(
                types.CodeAction(
                    title=f"Rerun {name}",
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[d],
                    command=types.Command(title=f"Rerun {name}", command=Command.RERUN_TEST, arguments=[nodeid, root]),
                )
            )
            actions.append(
                types.CodeAction(
                    title=f"Show failing trace of {name}",
                    kind=types.CodeActionKind.Empty,
                    diagnostics=[d],
                    command=types.Command(
                        title="Show failing trace", command=Command.SHOW_TRACE, arguments=[nodeid, root]
                    ),
                )
            )
        elif d.source == REVIEW_SOURCE and comment_id and comment_id not in seen:
            seen.add(comment_id)
            short = fixes.short(data.get("body", ""))
            actions += fixes.actions(
                session,
                state,
                f"review {comment_id}",
                f"Address review: {short}",
                d,
                Command.ADDRESS_REVIEW,
                [comment_id, root],
            )
            actions.append(
                types.CodeAction(
                    title="Resolve this review comment",
                    kind=types.CodeActionKind.Empty,
                    diagnostics=[d],
                    command=types.Command(
                        title="Resolve", command=Command.RESOLVE_REVIEW, arguments=[comment_id, root]
                    ),
                )
            )
    return actions
