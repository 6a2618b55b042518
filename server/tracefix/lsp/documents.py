"""Open buffers: incremental re-parse on every change, syntax errors while typing, runs on save."""

from __future__ import annotations

import asyncio

from lsprotocol import types

from tracefix.lsp import publishing, reviews, runs
from tracefix.lsp.handlers import background, sync
from tracefix.lsp.session import OpenDocument, Session, Snapshot
from tracefix.parsing.document import Document
from tracefix.protocol import AffectedResult, Method
from tracefix.reviews.inline import mentions_review

DEBOUNCE = 0.3  # seconds of quiet before syntax errors show, outside any workspace folder


def column(line: str, units: int, encoding: str) -> int:
    """An LSP column (in the negotiated encoding's code units) → a code-point column."""
    if encoding == types.PositionEncodingKind.Utf32:
        return units
    if encoding == types.PositionEncodingKind.Utf8:
        return len(line.encode("utf-8")[:units].decode("utf-8", "ignore"))
    count = 0
    for i, ch in enumerate(line):
        if count >= units:
            return i
        count += 2 if ord(ch) > 0xFFFF else 1
    return len(line)


def _point(doc: Document, pos: types.Position, encoding: str) -> tuple[int, int]:
    start = doc.offset(pos.line, 0)
    end = doc.text.find("\n", start)
    line = doc.text[start:] if end == -1 else doc.text[start:end]
    return pos.line, column(line, pos.character, encoding)


def _schedule_syntax(session: Session, uri: str, delay: float) -> None:
    handle = session.syntax_timers.pop(uri, None)
    if handle is not None:
        handle.cancel()

    def publish() -> None:
        session.syntax_timers.pop(uri, None)
        opened = session.documents.get(uri)
        if opened is None:
            return
        publishing.set_syntax(session, uri, opened.doc.syntax_problems())
        located = session.locate(uri)
        if located is not None and mentions_review(opened.doc.text):
            session.spawn(reviews.refresh(session, located[0]), "reviews")  # inline comments in the unsaved buffer

    session.syntax_timers[uri] = asyncio.get_running_loop().call_later(delay, publish)


def _is_python(uri: str, language: str | None = None) -> bool:
    return language == "python" or uri.endswith((".py", ".pyi"))


@sync(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(session: Session, params: types.DidOpenTextDocumentParams) -> None:
    item = params.text_document
    if not _is_python(item.uri, item.language_id):
        return
    session.documents[item.uri] = OpenDocument(Document(item.text), item.version)
    _schedule_syntax(session, item.uri, 0)


@sync(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(session: Session, params: types.DidChangeTextDocumentParams) -> None:
    uri = params.text_document.uri
    opened = session.documents.get(uri)
    if opened is None:
        session.ls.log(f"ignored a change to {uri}, which is not open")
        return
    encoding = session.ls.workspace.position_encoding or types.PositionEncodingKind.Utf16
    doc = opened.doc
    for change in params.content_changes:
        if isinstance(change, types.TextDocumentContentChangePartial):
            doc.edit(_point(doc, change.range.start, encoding), _point(doc, change.range.end, encoding), change.text)
        else:
            doc.replace(change.text)
    opened.version = params.text_document.version
    located = session.locate(uri)
    debounce = located[0].settings.debounce_ms / 1000 if located is not None else DEBOUNCE
    _schedule_syntax(session, uri, debounce)


@sync(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(session: Session, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    session.documents.pop(uri, None)
    handle = session.syntax_timers.pop(uri, None)
    if handle is not None:
        handle.cancel()
    publishing.set_syntax(session, uri, [])


@sync(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
async def did_save(session: Session, params: types.DidSaveTextDocumentParams) -> None:
    uri = params.text_document.uri
    await session.ready.wait()  # a save that races start-up waits for the index
    located = session.locate(uri)
    if located is None:
        return
    state, rel = located
    text = session.text_of(state, rel)
    if text is not None:
        reviews.critique_changes(session, state, rel, text)  # before the index takes the new text
    await runs.file_changed(session, state, rel, text)
    await reviews.refresh(session, state)


def _affected_snapshot(session: Session, params) -> Snapshot | None:
    uri = params.textDocument.uri if hasattr(params, "textDocument") else params["textDocument"]["uri"]
    located = session.locate(uri)
    if located is None or uri not in session.documents:
        return None
    return session.snapshot(*located)


@background(Method.AFFECTED, _affected_snapshot, empty={"changed": [], "selected": []})
def affected(snapshot: Snapshot, params) -> AffectedResult:
    """What the buffer's unsaved edits changed since the last run, and the tests they would run."""
    project, rel = snapshot.state.project, snapshot.rel
    assert rel is not None  # _affected_snapshot takes an open document's
    changes = project.changes_in(rel, snapshot.texts[rel])
    selected = project.select(changes, run_code=snapshot.trusted)
    return {
        "changed": [
            {"path": c.path, "symbol": c.qualname, "kind": c.kind, "what": c.what, "line": c.line} for c in changes
        ],
        "selected": [{"nodeid": s.nodeid, "reason": s.reason} for s in selected],
    }
