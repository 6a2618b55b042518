"""Fix actions: the work runs in a command (with cancellable $/progress); a verified result is
offered as a quick fix whose edit is pinned to the buffer version it was computed for."""

from __future__ import annotations

import asyncio

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from tracefix.fixing.jobs import Fix, FixError, address_review, fix_test
from tracefix.fixing.model import not_configured_message
from tracefix.fixing.shadow import unconfined_warning
from tracefix.lsp.handlers import sync
from tracefix.lsp.progress import Progress
from tracefix.lsp.reviews import find_comment
from tracefix.lsp.session import ProjectState, Session
from tracefix.protocol import Command

NO_MODEL = "tracefix: no model is configured for fixes. Set tracefix.llm.model to use one."


async def _run(session: Session, state: ProjectState, subject: str, title: str, job) -> dict:
    if not session.trusted:
        raise ValueError("this workspace is not trusted: tracefix runs no code in it")
    if subject in state.fixing:
        return {"status": "running", "message": f"already looking for a fix for {subject}"}
    unconfined = await asyncio.to_thread(unconfined_warning, state.settings.sandbox)
    if unconfined:
        session.ls.warn(unconfined)
    state.fixing.add(subject)
    task = asyncio.current_task()
    progress = await Progress.start(session, title, task)
    try:
        fix = await job(progress.report)
    except FixError as exc:
        progress.end(f"no fix: {exc}")
        if str(exc) == not_configured_message():
            session.spawn(_briefly(session, NO_MODEL, str(exc)), "explain model")
        else:
            session.ls.tell(f"tracefix: {exc}", types.MessageType.Warning)
        return {"status": "error", "message": str(exc)}
    except asyncio.CancelledError:
        progress.end("cancelled")
        raise
    finally:
        state.fixing.discard(subject)
    for tested in [subject, *fix.tests]:  # the failing tests that blame the same code share the fix
        state.fixes[tested] = fix
    label = "verified fix" if fix.verified else "UNVERIFIED suggestion"
    offered = fix.verified or state.settings.offer_unverified
    where = "; apply it from the quick fixes" if offered else " (set tracefix.fix.offerUnverified to see it)"
    progress.end(f"{label} for {subject}: {fix.evidence}")
    session.ls.tell(f"tracefix: {label} for {subject} ({fix.evidence}){where}")
    return {
        "status": "verified" if fix.verified else "unverified",
        "evidence": fix.evidence,
        "diff": fix.diff,
        "paths": fix.paths,
        "title": fix.title,
        "tests": fix.tests,
        "offered": offered,
    }


@sync(Command.FIX_TEST, command=True)
async def fix_failing_test(session: Session, *args) -> dict:
    """Arguments: [nodeid, root?]."""
    nodeid, root = (list(args) + [None, None])[:2]
    state = session.project_named(root)
    result = state.results.get(nodeid)
    if result is None or not result.failing:
        raise ValueError(f"{nodeid} is not failing")
    blamed = _blamed(state, nodeid)
    for other in state.fixing:  # the running job verifies its fix on this test too
        if blamed is not None and _blamed(state, other) == blamed:
            return {
                "status": "running",
                "message": f"already looking for a fix for {other}, which blames the same code",
            }
    texts = session.overlay(state)
    failing = [r for r in state.results.values() if r.failing and r.nodeid != nodeid]
    return await _run(
        session,
        state,
        nodeid,
        f"Fixing {nodeid}",
        lambda say: fix_test(state.project, result, texts, say, call=state.call, failing=failing),
    )


def _blamed(state: ProjectState, nodeid: str) -> tuple[str, int] | None:
    """Where the test's failure is blamed in the code, if it is."""
    return next(((d.path, d.line) for d in state.diagnostics.get(nodeid, []) if d.kind == "suspect"), None)


@sync(Command.ADDRESS_REVIEW, command=True)
async def address(session: Session, *args) -> dict:
    """Arguments: [comment id, root?]."""
    comment_id, root = (list(args) + [None, None])[:2]
    state = session.project_named(root)
    comment = find_comment(state, comment_id)
    texts = session.overlay(state)
    return await _run(
        session,
        state,
        f"review {comment_id}",
        f"Addressing review: {short(comment.body)}",
        lambda say: address_review(state.project, comment, texts, say, call=state.call),
    )


def short(text: str, limit: int = 50) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _workspace_edit(session: Session, state: ProjectState, fix: Fix) -> types.WorkspaceEdit | None:
    """The fix as edits of the current buffers, each pinned to its version; None when any file
    changed since it was computed."""
    if any(session.text_of(state, f.path) != f.before for f in fix.files):
        return None
    edits = {}
    for change in fix.files:
        edit = change.edit()
        edits[state.uri(change.path)] = types.TextEdit(
            range=types.Range(types.Position(edit.start - 1, 0), types.Position(edit.end, 0)), new_text=edit.text
        )
    caps = session.ls.client_capabilities.workspace
    if caps and caps.workspace_edit and caps.workspace_edit.document_changes:
        changes = []
        for uri, text_edit in edits.items():
            opened = session.documents.get(uri)  # an open buffer's version pins the edit to it
            changes.append(
                types.TextDocumentEdit(
                    text_document=types.OptionalVersionedTextDocumentIdentifier(
                        uri=uri, version=opened.version if opened else None
                    ),
                    edits=[text_edit],
                )
            )
        return types.WorkspaceEdit(document_changes=changes)
    return types.WorkspaceEdit(changes={uri: [text_edit] for uri, text_edit in edits.items()})


def actions(
    session: Session,
    state: ProjectState,
    subject: str,
    title: str,
    diagnostic: types.Diagnostic,
    command: str,
    arguments: list,
) -> list[types.CodeAction]:
    """ "Fix …" (starts the work) or, once a fix is known, "Apply …" with its edit."""
    fix = state.fixes.get(subject)
    kind = types.CodeActionKind.QuickFix
    if subject in state.fixing:
        return [
            types.CodeAction(
                title=f"{title} (working…)",
                kind=kind,
                diagnostics=[diagnostic],
                disabled=types.CodeActionDisabled(reason="tracefix is working on it"),
            )
        ]
    found = []
    if fix is not None and (fix.verified or state.settings.offer_unverified):
        edit = _workspace_edit(session, state, fix)
        if edit is not None:
            label = "Apply verified fix" if fix.verified else "Apply UNVERIFIED suggestion"
            after = None
            if fix.comment is not None and fix.comment.source != "inline":
                after = types.Command(
                    title="Resolve review comment",
                    command=Command.RESOLVE_REVIEW,
                    arguments=[fix.comment.id, str(state.root)],
                )
            named = fix.title or f"{label}: {short(subject, 60)}"
            found.append(
                types.CodeAction(
                    title=f"{named} ({fix.evidence})",
                    kind=kind,
                    diagnostics=[diagnostic],
                    is_preferred=fix.verified,
                    edit=edit,
                    command=after,
                )
            )
    if not found:
        # without a model the job still tries the revert of the change that broke the test
        found.append(
            types.CodeAction(
                title=title,
                kind=kind,
                diagnostics=[diagnostic],
                command=types.Command(title=title, command=command, arguments=arguments),
            )
        )
    if not state.settings.llm.model:
        found.append(
            types.CodeAction(
                title="Set up a model for tracefix fixes",
                kind=kind,
                diagnostics=[diagnostic],
                command=types.Command(title="How to set up a model", command=Command.EXPLAIN_MODEL),
            )
        )
    return found


@sync(Command.EXPLAIN_MODEL, command=True)
def explain_model(session: Session, *args) -> dict:
    message = not_configured_message()
    session.spawn(_briefly(session, NO_MODEL, message), "explain model")
    return {"message": message}


async def _briefly(session: Session, summary: str, details: str) -> None:
    """A toast read at a glance, whose More shows the whole text: VS Code cuts a message to one
    line unless it has a button."""
    ls, info = session.ls, types.MessageType.Info
    more = types.MessageActionItem(title="More")
    try:
        choice = await ls.window_show_message_request_async(
            types.ShowMessageRequestParams(type=info, message=summary, actions=[more])
        )
        if choice is not None and choice.title == more.title:
            await ls.window_show_message_request_async(
                types.ShowMessageRequestParams(
                    type=info, message=details, actions=[types.MessageActionItem(title="OK")]
                )
            )
    except JsonRpcException:  # a client without window/showMessageRequest
        ls.tell(details)
