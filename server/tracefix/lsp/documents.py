"""Open buffers: incremental re-parse on every change, syntax errors while typing, runs on save."""

from __future__ import annotations

import asyncio

from lsprotocol import types

from tracefix.lsp import reviews
from tracefix.lsp.server import TracefixServer, server
from tracefix.parsing.document import Document
from tracefix.reviews.inline import mentions_review

_pending_syntax: dict[str, asyncio.TimerHandle] = {}


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


def _encoding(ls: TracefixServer) -> str:
    return ls.workspace.position_encoding or types.PositionEncodingKind.Utf16


def _schedule_syntax(ls: TracefixServer, uri: str, delay: float) -> None:
    handle = _pending_syntax.pop(uri, None)
    if handle is not None:
        handle.cancel()

    def publish() -> None:
        _pending_syntax.pop(uri, None)
        doc = ls.docs.get(uri)
        if doc is not None:
            ls.publisher.set_syntax(uri, doc.syntax_problems())
            located = ls.locate(uri)
            if located is not None and mentions_review(doc.text):
                reviews.refresh(ls, located[0])  # inline comments in the unsaved buffer

    _pending_syntax[uri] = asyncio.get_running_loop().call_later(delay, publish)


def _is_python(uri: str, language: str | None = None) -> bool:
    return language == "python" or uri.endswith((".py", ".pyi"))


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: TracefixServer, params: types.DidOpenTextDocumentParams) -> None:
    item = params.text_document
    if not _is_python(item.uri, item.language_id):
        return
    ls.docs[item.uri] = Document(item.text)
    ls.versions[item.uri] = item.version
    _schedule_syntax(ls, item.uri, 0)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: TracefixServer, params: types.DidChangeTextDocumentParams) -> None:
    uri = params.text_document.uri
    doc = ls.docs.get(uri)
    if doc is None:
        ls.log(f"ignored a change to {uri}, which is not open")
        return
    encoding = _encoding(ls)
    for change in params.content_changes:
        if isinstance(change, types.TextDocumentContentChangePartial):
            start = _point(doc, change.range.start, encoding)
            end = _point(doc, change.range.end, encoding)
            doc.edit(start, end, change.text)
        else:
            doc.replace(change.text)
    ls.versions[uri] = params.text_document.version
    debounce = 0.3
    located = ls.locate(uri)
    if located is not None:
        debounce = located[0].settings.debounce_ms / 1000
    _schedule_syntax(ls, uri, debounce)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: TracefixServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.docs.pop(uri, None)
    ls.versions.pop(uri, None)
    handle = _pending_syntax.pop(uri, None)
    if handle is not None:
        handle.cancel()
    ls.publisher.set_syntax(uri, [])


@server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
async def did_save(ls: TracefixServer, params: types.DidSaveTextDocumentParams) -> None:
    uri = params.text_document.uri
    await ls.ready.wait()  # a save that races start-up waits for the index
    located = ls.locate(uri)
    if located is None:
        return
    project, rel = located
    doc = ls.docs.get(uri)
    text = doc.text if doc is not None else ls.text_of(project, rel)
    if text is not None:
        reviews.critique_changes(ls, project, rel, text)  # before the index takes the new text
    ls.runs.file_changed(project, rel, text)
    reviews.refresh(ls, project)


AFFECTED = "tracefix/affected"


@server.feature(AFFECTED)
def affected(ls: TracefixServer, params) -> dict:
    """What the buffer's unsaved edits changed since the last run, and the tests they would run."""
    uri = params.textDocument.uri if hasattr(params, "textDocument") else params["textDocument"]["uri"]
    located, doc = ls.locate(uri), ls.docs.get(uri)
    if located is None or doc is None:
        return {"changed": [], "selected": []}
    project, rel = located
    changes = project.changes_in(rel, doc.text)
    return {
        "changed": [{"path": c.path, "symbol": c.qualname, "kind": c.kind, "what": c.what, "line": c.line}
                    for c in changes],
        "selected": [{"nodeid": s.nodeid, "reason": s.reason} for s in project.select(changes)],
    }
