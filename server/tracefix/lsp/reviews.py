"""Review comments in the editor: Information diagnostics, threads on hover, add and resolve."""

from __future__ import annotations

from lsprotocol import types

from tracefix.fixing import critic
from tracefix.fixing.model import ModelError
from tracefix.lsp import publishing
from tracefix.lsp.handlers import sync
from tracefix.lsp.session import ProjectState, Session
from tracefix.parsing.document import Document
from tracefix.protocol import Command
from tracefix.reviews import Comment, ReviewSet

REVIEW_SOURCE = "tracefix-review"
CRITIC_FUNCTIONS = 2  # changed functions reviewed per save: each costs a model call


def reviews_of(state: ProjectState) -> ReviewSet:
    return ReviewSet.from_settings(state.root, state.settings.review)


async def refresh(session: Session, state: ProjectState) -> None:
    """Collect every source again (open buffers win over disk) and republish."""
    try:
        found = await state.call(reviews_of(state).collect, session.overlay(state))
    except Exception as exc:  # a broken review file must not take the other diagnostics down
        session.ls.warn(f"could not read review comments: {exc!r}")
        return
    state.comments = found
    by_uri: dict[str, list[types.Diagnostic]] = {}
    for c in found:
        if c.state == "resolved":
            continue
        who = f" (@{c.author})" if c.author else ""
        outdated = c.state == "outdated"
        by_uri.setdefault(state.uri(c.path), []).append(
            types.Diagnostic(
                range=types.Range(types.Position(c.start_line - 1, 0), types.Position(c.end_line, 0)),
                message=f"{'outdated ' if outdated else ''}review{who}: {c.body}",
                severity=types.DiagnosticSeverity.Hint if outdated else types.DiagnosticSeverity.Information,
                source=REVIEW_SOURCE,
                code=c.id,
                data={"comment": c.id, "body": c.body, "root": str(state.root)},
            )
        )
    publishing.set_reviews(session, state, by_uri)


def critique_changes(session: Session, state: ProjectState, rel: str, text: str) -> None:
    """With tracefix.review.critic on, the model reviews the functions this save changed."""
    settings = state.settings.llm
    if state.settings.review.get("critic") is not True or not settings.model or not session.trusted:
        return
    symbols = {s.qualname: s for s in Document(text).symbols}

    async def review_all() -> None:
        changes = await state.call(state.project.changes_in, rel, text)
        changed = [
            symbols[c.qualname]
            for c in changes
            if c.kind in ("function", "method") and c.what != "removed" and c.qualname in symbols
        ]
        for symbol in changed[:CRITIC_FUNCTIONS]:
            try:
                added = await critic.critique(state.project, rel, symbol, text, settings, call=state.call)
            except ModelError as exc:
                session.ls.warn(f"review critic: {exc}")
                return
            if added:
                session.ls.log(f"review critic left {len(added)} comment(s) on {symbol.qualname}")
                await refresh(session, state)

    session.spawn(review_all(), f"critic {rel}")


def at(state: ProjectState, rel: str, line: int) -> list[Comment]:
    return [c for c in state.comments if c.path == rel and c.start_line <= line <= c.end_line]


def thread(c: Comment) -> str:
    who = f"@{c.author}" if c.author else "reviewer"
    lines = [f"**Review ({c.source}, {c.state})** {who}: {c.body}"]
    lines += [f"> @{author or 'reply'}: {body}" for author, body in c.replies]
    if c.symbol:
        lines.append(f"on `{c.symbol}`")
    return "\n\n".join(lines)


def find_comment(state: ProjectState, comment_id: str) -> Comment:
    for comment in state.comments:
        if comment.id == comment_id:
            return comment
    raise ValueError(f"no review comment {comment_id!r}")


@sync(Command.ADD_REVIEW, command=True)
async def add_review(session: Session, *args) -> dict:
    """Arguments: [uri, range, text, author?]."""
    uri, rng, text, author = (list(args) + [None] * 4)[:4]
    if not (isinstance(uri, str) and isinstance(text, str) and text.strip()):
        raise ValueError("tracefix.addReviewComment needs a document uri, a range and a text")
    located = session.locate(uri)
    if located is None:
        raise ValueError(f"{uri} is not in a workspace folder")
    state, rel = located
    start, end = _lines(rng)
    current = session.text_of(state, rel)
    comment = await state.call(
        lambda: reviews_of(state).add(rel, start, end, text.strip(), author=author, source="editor", text=current)
    )
    await refresh(session, state)
    return {"id": comment.id}


def _lines(rng) -> tuple[int, int]:
    """An LSP range (dict or object) → 1-based first and last line."""
    if isinstance(rng, dict):
        start, end = rng["start"]["line"], rng["end"]["line"]
        end_char = rng["end"].get("character", 0)
    else:
        start, end, end_char = rng.start.line, rng.end.line, rng.end.character
    if end > start and end_char == 0:
        end -= 1  # a selection that ends at the start of a line does not include it
    return start + 1, end + 1


@sync(Command.RESOLVE_REVIEW, command=True)
async def resolve_review(session: Session, *args) -> dict:
    """Arguments: [comment id, root?]."""
    comment_id, root = (list(args) + [None, None])[:2]
    state = session.project_named(root)
    await state.call(reviews_of(state).resolve, comment_id)
    await refresh(session, state)
    return {"resolved": comment_id}
