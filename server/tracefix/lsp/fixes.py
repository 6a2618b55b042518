"""Fix actions: the work runs in a command (with cancellable $/progress); a verified result is
offered as a quick fix whose edit is pinned to the buffer version it was computed for."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lsprotocol import types

from tracefix.fixing.jobs import Fix, FixError, address_review, fix_test
from tracefix.lsp.progress import Progress
from tracefix.lsp.server import TracefixServer, server
from tracefix.project import Project
from tracefix.fixing.model import not_configured_message
from tracefix.reviews import Comment, ReviewSet

FIX_TEST = "tracefix.fixTest"
ADDRESS_REVIEW = "tracefix.addressReview"
RESOLVE_REVIEW = "tracefix.resolveReviewComment"
EXPLAIN_MODEL = "tracefix.explainModel"
_found: dict[tuple[Path, str], Fix] = {}  # (root, subject) → the latest fix computed
_working: set[tuple[Path, str]] = set()


def overlay(ls: TracefixServer, project: Project) -> dict[str, str]:
    """Unsaved buffers of this project, by relative path: the shadow copy uses these."""
    texts = {}
    for uri, doc in ls.docs.items():
        located = ls.locate(uri)
        if located is not None and located[0] is project:
            texts[located[1]] = doc.text
    return texts


async def _run(ls: TracefixServer, project: Project, subject: str, title: str, job) -> dict:
    if not ls.trusted:
        raise ValueError("this workspace is not trusted: tracefix runs no code in it")
    key = (project.root, subject)
    if key in _working:
        return {"status": "running", "message": f"already looking for a fix for {subject}"}
    _working.add(key)
    task = asyncio.current_task()
    progress = await Progress.start(ls, title, task)
    try:
        fix = await job(lambda message: progress.report(message))
    except FixError as exc:
        progress.end(f"no fix: {exc}")
        ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=f"tracefix: {exc}"))
        return {"status": "error", "message": str(exc)}
    except asyncio.CancelledError:
        progress.end("cancelled")
        raise
    finally:
        _working.discard(key)
    _found[key] = fix
    label = "verified fix" if fix.verified else "UNVERIFIED suggestion"
    offered = fix.verified or project.settings.offer_unverified
    where = "; apply it from the quick fixes" if offered else " (set tracefix.fix.offerUnverified to see it)"
    progress.end(f"{label} for {subject}: {fix.evidence}")
    ls.window_show_message(types.ShowMessageParams(
        type=types.MessageType.Info, message=f"tracefix: {label} for {subject} ({fix.evidence}){where}"))
    return {"status": "verified" if fix.verified else "unverified", "evidence": fix.evidence, "diff": fix.diff,
            "path": fix.path, "offered": offered}


@server.command(FIX_TEST)
async def fix_failing_test(ls: TracefixServer, *args) -> dict:
    """Arguments: [nodeid, root?]."""
    nodeid, root = (list(args) + [None, None])[:2]
    project = ls.project_named(root)
    result = ls.publisher.results.get((project.root, nodeid))
    if result is None or not result.failing:
        raise ValueError(f"{nodeid} is not failing")
    texts = overlay(ls, project)
    return await _run(ls, project, nodeid, f"Fixing {nodeid}",
                      lambda say: fix_test(project, result, texts, say))


def find_comment(ls: TracefixServer, project: Project, comment_id: str) -> Comment:
    for comment in ReviewSet.from_settings(project.root, project.settings.review).collect(overlay(ls, project)):
        if comment.id == comment_id:
            return comment
    raise ValueError(f"no review comment {comment_id!r}")


@server.command(ADDRESS_REVIEW)
async def address(ls: TracefixServer, *args) -> dict:
    """Arguments: [comment id, root?]."""
    comment_id, root = (list(args) + [None, None])[:2]
    project = ls.project_named(root)
    comment = find_comment(ls, project, comment_id)
    texts = overlay(ls, project)
    return await _run(ls, project, f"review {comment_id}", f"Addressing review: {short(comment.body)}",
                      lambda say: address_review(project, comment, texts, say))


def short(text: str, limit: int = 50) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _workspace_edit(ls: TracefixServer, project: Project, fix: Fix) -> types.WorkspaceEdit | None:
    """The fix as an edit of the current buffer; None when the buffer changed since it was computed."""
    uri = ls.uri(project, fix.path)
    if ls.text_of(project, fix.path) != fix.before:
        return None
    edit = fix.edit()
    text_edit = types.TextEdit(
        range=types.Range(types.Position(edit.start - 1, 0), types.Position(edit.end, 0)), new_text=edit.text)
    caps = ls.client_capabilities.workspace
    if caps and caps.workspace_edit and caps.workspace_edit.document_changes:
        version = ls.versions.get(uri)  # an open buffer's version pins the edit to it
        return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(
            text_document=types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version),
            edits=[text_edit])])
    return types.WorkspaceEdit(changes={uri: [text_edit]})


def actions(ls: TracefixServer, project: Project, subject: str, title: str, diagnostic: types.Diagnostic,
            command: str, arguments: list) -> list[types.CodeAction]:
    """"Fix …" (starts the work) or, once a fix is known, "Apply …" with its edit."""
    key = (project.root, subject)
    fix = _found.get(key)
    kind = types.CodeActionKind.QuickFix
    if key in _working:
        return [types.CodeAction(title=f"{title} (working…)", kind=kind, diagnostics=[diagnostic],
                                 disabled=types.CodeActionDisabledType(reason="tracefix is working on it"))]
    found = []
    if fix is not None and (fix.verified or project.settings.offer_unverified):
        edit = _workspace_edit(ls, project, fix)
        if edit is not None:
            label = "Apply verified fix" if fix.verified else "Apply UNVERIFIED suggestion"
            after = None
            if fix.comment is not None and fix.comment.source != "inline":
                after = types.Command(title="Resolve review comment", command=RESOLVE_REVIEW,
                                      arguments=[fix.comment.id, str(project.root)])
            found.append(types.CodeAction(
                title=f"{label}: {short(subject, 60)} ({fix.evidence})", kind=kind, diagnostics=[diagnostic],
                is_preferred=fix.verified, edit=edit, command=after))
    settings = project.settings.llm
    if not settings.model:
        found.append(types.CodeAction(
            title=f"{title}: set up a model first", kind=kind, diagnostics=[diagnostic],
            command=types.Command(title="How to set up a model", command=EXPLAIN_MODEL)))
    elif not found:
        found.append(types.CodeAction(title=title, kind=kind, diagnostics=[diagnostic],
                                      command=types.Command(title=title, command=command, arguments=arguments)))
    return found


@server.command(EXPLAIN_MODEL)
def explain_model(ls: TracefixServer, *args) -> dict:
    message = not_configured_message()
    ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Info, message=message))
    return {"message": message}

