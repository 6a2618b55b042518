"""Review comments in the editor: Information diagnostics, threads on hover, add and resolve."""

from __future__ import annotations

from lsprotocol import types

from tracefix.fixing import critic
from tracefix.lsp.fixes import RESOLVE_REVIEW, overlay
from tracefix.lsp.server import TracefixServer, server
from tracefix.parsing.document import parse
from tracefix.parsing.symbols import outline
from tracefix.project import Project
from tracefix.fixing.model import ModelError
from tracefix.reviews import Comment, ReviewSet

REVIEW_SOURCE = "tracefix-review"
ADD_REVIEW = "tracefix.addReviewComment"
_comments: dict[str, list[Comment]] = {}  # project root → its comments, as last collected


def reviews_of(project: Project) -> ReviewSet:
    return ReviewSet.from_settings(project.root, project.settings.review)


def comments(project: Project) -> list[Comment]:
    return _comments.get(str(project.root), [])


def refresh(ls: TracefixServer, project: Project) -> None:
    """Collect every source again (open buffers win over disk) and republish."""
    try:
        found = reviews_of(project).collect(overlay(ls, project))
    except Exception as exc:  # a broken review file must not take the other diagnostics down
        ls.warn(f"could not read review comments: {exc!r}")
        return
    _comments[str(project.root)] = found
    by_uri: dict[str, list[types.Diagnostic]] = {}
    for c in found:
        if c.state == "resolved":
            continue
        uri = ls.uri(project, c.path)
        who = f" (@{c.author})" if c.author else ""
        outdated = c.state == "outdated"
        by_uri.setdefault(uri, []).append(types.Diagnostic(
            range=types.Range(types.Position(c.start_line - 1, 0), types.Position(c.end_line, 0)),
            message=f"{'outdated ' if outdated else ''}review{who}: {c.body}",
            severity=types.DiagnosticSeverity.Hint if outdated else types.DiagnosticSeverity.Information,
            source=REVIEW_SOURCE, code=c.id,
            data={"comment": c.id, "body": c.body, "root": str(project.root)},
        ))
    ls.publisher.set_extra(f"reviews:{project.root}", by_uri)


CRITIC_FUNCTIONS = 2  # changed functions reviewed per save: each costs a model call


def critique_changes(ls: TracefixServer, project: Project, rel: str, text: str) -> None:
    """With tracefix.review.critic on, the model reviews the functions this save changed."""
    settings = project.settings.llm
    if project.settings.review.get("critic") is not True or not settings.model or not ls.trusted:
        return
    data = text.encode("utf-8", "surrogatepass")
    symbols = {s.qualname: s for s in outline(parse(data), data)}
    changed = [symbols[c.qualname] for c in project.changes_in(rel, text)
               if c.kind in ("function", "method") and c.what != "removed"][:CRITIC_FUNCTIONS]

    async def review_all() -> None:
        for symbol in changed:
            try:
                added = await critic.critique(project, rel, symbol, text, settings)
            except ModelError as exc:
                ls.warn(f"review critic: {exc}")
                return
            if added:
                ls.log(f"review critic left {len(added)} comment(s) on {symbol.qualname}")
                refresh(ls, project)

    if changed:
        ls.spawn(review_all(), f"critic {rel}")


def at(project: Project, rel: str, line: int) -> list[Comment]:
    return [c for c in comments(project) if c.path == rel and c.start_line <= line <= c.end_line]


def thread(c: Comment) -> str:
    who = f"@{c.author}" if c.author else "reviewer"
    lines = [f"**Review ({c.source}, {c.state})** {who}: {c.body}"]
    lines += [f"> @{author or 'reply'}: {body}" for author, body in c.replies]
    if c.symbol:
        lines.append(f"on `{c.symbol}`")
    return "\n\n".join(lines)


@server.command(ADD_REVIEW)
def add_review(ls: TracefixServer, *args) -> dict:
    """Arguments: [uri, range, text, author?]."""
    uri, rng, text, author = (list(args) + [None] * 4)[:4]
    if not (isinstance(uri, str) and isinstance(text, str) and text.strip()):
        raise ValueError("tracefix.addReviewComment needs a document uri, a range and a text")
    located = ls.locate(uri)
    if located is None:
        raise ValueError(f"{uri} is not in a workspace folder")
    project, rel = located
    start, end = _lines(rng)
    comment = reviews_of(project).add(rel, start, end, text.strip(), author=author, source="editor",
                                      text=ls.text_of(project, rel))
    refresh(ls, project)
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


@server.command(RESOLVE_REVIEW)
def resolve_review(ls: TracefixServer, *args) -> dict:
    """Arguments: [comment id, root?]."""
    comment_id, root = (list(args) + [None, None])[:2]
    project = ls.project_named(root)
    reviews_of(project).resolve(comment_id)
    refresh(ls, project)
    return {"resolved": comment_id}
