"""All of a workspace's review comments, from every source, anchored in its current text."""

from __future__ import annotations

import glob
import logging
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

from tracefix.parsing.document import Document
from tracefix.paths import is_source_dir, read_text
from tracefix.reviews.anchor import CONTEXT_LINES, relocate
from tracefix.reviews.comment import Comment, Source
from tracefix.reviews.github import export_items, github_comments
from tracefix.reviews.inline import mentions_review, parse
from tracefix.reviews.jsonl import jsonl_comments
from tracefix.reviews.state import load, save

log = logging.getLogger(__name__)

REVIEWS_DIR = Path(".tracefix") / "reviews"
STATE_FILE = "state.json"
REVIEW_FILE_BYTES = 64 << 20  # a saved export of a long review is larger than any source file


class ReviewSet:
    """The review comments of the workspace at `root`.

    Comment files are every *.json (GitHub export) and *.jsonl in .tracefix/reviews/, plus
    `extra_paths`: files, directories searched the same way, or glob patterns (`**` too),
    relative to the root or absolute.
    """

    def __init__(self, root: Path | str, extra_paths: Iterable[Path | str] = ()):
        self.root = Path(root).resolve()
        self.extra_paths = list(extra_paths)
        self.state_path = self.root / REVIEWS_DIR / STATE_FILE

    @classmethod
    def from_settings(cls, root: Path | str, review: Mapping) -> ReviewSet:
        """From the `review` settings table, whose `paths` are the extra paths."""
        paths = review.get("paths", [])
        if not isinstance(paths, list) or not all(isinstance(path, str) for path in paths):
            log.warning("review.paths should be a list of paths or glob patterns; ignored")
            paths = []
        return cls(root, paths)

    def collect(self, texts: Mapping[str, str] | None = None) -> list[Comment]:
        """Every comment, sorted by place; `texts` holds unsaved buffers by path or URI.

        Resolved ones are included with state "resolved", so a listing can show them.
        """
        files = _Files(self.root, {self.relative(key): text for key, text in (texts or {}).items()})
        state = load(self.state_path)
        comments = [c for path in files.python_paths() if (doc := files.doc(path)) for _, c in parse(path, doc)]
        for path in self.review_files():
            comments += self._read(path, files)
        comments += [_editor_comment(entry, files.doc(entry["path"])) for entry in state.comments]
        unique: dict[str, Comment] = {}
        for comment in comments:  # an export listed twice must not list its comments twice
            unique.setdefault(comment.id, comment)
            if comment.id in state.resolved:
                comment.state = "resolved"
        return sorted(unique.values(), key=lambda c: (c.path, c.start_line, c.id))

    def add(
        self,
        path: str,
        start_line: int,
        end_line: int,
        body: str,
        *,
        author: str | None = None,
        source: Source = "editor",
        text: str | None = None,
    ) -> Comment:
        """Record a comment on lines start_line..end_line (1-based) of `path` (relative, absolute
        or a file URI); `text` is the buffer's content if it differs from the disk."""
        path = self.relative(path)
        doc = Document(text) if text is not None else _Files(self.root, {}).doc(path)
        if doc is None:
            raise FileNotFoundError(self.root / path)
        # An editor range may end on the line after the last one (column 0), or the file be empty.
        last = max(1, len(doc.lines))
        start_line = min(max(1, start_line), last)
        end_line = min(max(start_line, end_line), last)
        symbol = doc.symbol_at(start_line)
        comment = Comment(f"{source}:{uuid.uuid4().hex[:12]}", path, start_line, end_line, body, symbol, author, source)
        state = load(self.state_path)
        state.comments.append(
            {
                "id": comment.id,
                "path": path,
                "start_line": start_line,
                "end_line": end_line,
                "body": body,
                "author": author,
                "source": source,
                "symbol": symbol,
                "anchor": doc.lines[start_line - 1 : end_line],
                "context": doc.lines[max(0, start_line - 1 - CONTEXT_LINES) : start_line - 1],
            }
        )
        save(self.state_path, state)
        return comment

    def resolve(self, comment_id: str) -> None:
        """Mark a comment of any source resolved; it stays listed but is no longer open."""
        state = load(self.state_path)
        if comment_id not in state.resolved:
            state.resolved.add(comment_id)
            save(self.state_path, state)

    def review_files(self) -> list[Path]:
        """The *.json and *.jsonl files in .tracefix/reviews/, then those `extra_paths` name."""
        found = _review_files(self.root / REVIEWS_DIR)
        for pattern in self.extra_paths:
            matches = sorted(glob.glob(str(pattern), root_dir=self.root, recursive=True))
            files = [file for match in matches for file in _review_files(self.root / match)]
            if not files:
                log.warning("review path %s matches no .json or .jsonl file", pattern)
            found += files
        return [path for path in found if path != self.state_path]

    def relative(self, path: str | Path) -> str:
        """`path` (relative, absolute or file URI) as a posix path relative to the root."""
        if isinstance(path, str) and path.startswith("file:"):
            path = unquote(urlparse(path).path)
        path = Path(path)
        if path.is_absolute():
            try:
                path = path.resolve().relative_to(self.root)
            except ValueError:
                return path.as_posix()  # outside the workspace: kept, no file will match it
        return path.as_posix()

    def _read(self, path: Path, files: _Files) -> list[Comment]:
        text = read_text(path, REVIEW_FILE_BYTES)
        if text is None:
            log.warning("review file %s skipped: not a regular file of readable size", path)
            return []
        try:
            if path.suffix == ".jsonl":
                return jsonl_comments(text, files.doc, str(path))
            return github_comments(export_items(text), files.doc)
        # Unreadable, not JSON, or JSON of another shape: one bad file must not hide the rest.
        except (OSError, ValueError, TypeError, AttributeError) as error:
            log.warning("review file %s skipped: %s", path, error)
            return []


def collect(
    root: Path | str, texts: Mapping[str, str] | None = None, extra_paths: Iterable[Path | str] = ()
) -> list[Comment]:
    """ReviewSet(root, extra_paths).collect(texts), for a one-off listing."""
    return ReviewSet(root, extra_paths).collect(texts)


def comments_for_symbol(comments: Iterable[Comment], path: str, qualname: str | None) -> list[Comment]:
    """The open comments on `qualname` in `path`, including those on definitions nested in it."""
    return [c for c in comments if c.state == "open" and c.path == path and _within(c.symbol, qualname)]


def _within(symbol: str | None, qualname: str | None) -> bool:
    if qualname is None:
        return symbol is None
    return symbol == qualname or (symbol or "").startswith(qualname + ".")


def _editor_comment(entry: dict, doc: Document | None) -> Comment:
    comment = Comment(
        entry["id"],
        entry["path"],
        entry["start_line"],
        entry["end_line"],
        entry["body"],
        entry.get("symbol"),
        entry.get("author"),
        entry["source"],
    )
    anchor = entry.get("anchor") or []
    found = None
    if doc is not None and anchor:
        found = relocate(
            doc, anchor, line=comment.start_line, context=entry.get("context") or [], symbol=comment.symbol
        )
    if doc is None or found is None:  # found implies doc
        comment.state = "outdated"
    else:
        comment.start_line, comment.end_line = found, found + len(anchor) - 1
        comment.symbol = doc.symbol_at(found)
    return comment


class _Files:
    """The workspace's files as the editor sees them: open buffers over the disk, parsed once."""

    def __init__(self, root: Path, overlay: dict[str, str]):
        self.root = root
        self.overlay = overlay
        self.cache: dict[str, Document | None] = {}

    def text(self, path: str) -> str | None:
        return self.overlay[path] if path in self.overlay else read_text(self.root / path)

    def doc(self, path: str) -> Document | None:
        if path not in self.cache:
            text = self.text(path)
            self.cache[path] = None if text is None else Document(text)
        return self.cache[path]

    def python_paths(self) -> list[str]:
        """Project .py files that mention a review comment, buffers included."""
        paths = {p for p in self.overlay if p.endswith(".py")}
        for folder, dirs, names in os.walk(self.root):
            dirs[:] = [d for d in dirs if is_source_dir(Path(folder, d))]
            for name in names:
                if name.endswith(".py"):
                    paths.add(Path(folder, name).relative_to(self.root).as_posix())
        # the text first: parsing every file of a large project to look for none costs seconds
        return sorted(p for p in paths if (t := self.text(p)) is not None and mentions_review(t))


def _review_files(path: Path) -> list[Path]:
    """`path` if it is a review file, the review files in it if it is a directory."""
    candidates = sorted(path.iterdir()) if path.is_dir() else [path]
    return [file for file in candidates if file.suffix in (".json", ".jsonl") and file.is_file()]
