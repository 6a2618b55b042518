"""The review state tracefix owns: comments added from the editor (or a critic) and resolved ids.

It lives in one JSON file. Writes go to a temporary file that replaces it, so a crash
mid-write leaves the old state; a file that can't be read as state is renamed aside
with a warning and the state starts empty, since losing review notes beats a server that
won't start.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tracefix.paths import read_text

log = logging.getLogger(__name__)

VERSION = 1
# What every stored comment has; "anchor" and "context", the text it was written against,
# may be missing (the comment is then outdated).
ENTRY_KEYS = {"id": str, "path": str, "start_line": int, "end_line": int, "body": str, "source": str}


@dataclass
class State:
    comments: list[dict] = field(default_factory=list)
    resolved: set[str] = field(default_factory=set)


def load(path: Path) -> State:
    if not path.exists():
        return State()
    text = read_text(path)
    if text is None:
        return _set_aside(path, "not a regular file of readable size")
    try:
        data = json.loads(text)
    except ValueError as error:
        return _set_aside(path, error)
    problem = _problem(data)
    if problem:
        return _set_aside(path, problem)
    return State(data.get("comments", []), set(data.get("resolved", [])))


def save(path: Path, state: State) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"version": VERSION, "comments": state.comments, "resolved": sorted(state.resolved)}
    fd, temp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=1)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def _problem(data: object) -> str | None:
    if not isinstance(data, dict):
        return "not a JSON object"
    comments, resolved = data.get("comments", []), data.get("resolved", [])
    if not isinstance(comments, list) or not isinstance(resolved, list):
        return "comments and resolved must be lists"
    if not all(isinstance(cid, str) for cid in resolved):
        return "resolved must hold comment ids"
    for entry in comments:
        if not isinstance(entry, dict) or any(not isinstance(entry.get(k), t) for k, t in ENTRY_KEYS.items()):
            return f"malformed comment {entry!r:.80}"
    return None


def _set_aside(path: Path, problem: object) -> State:
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    try:
        os.replace(path, aside)
        log.warning("review state %s is unreadable (%s); moved it to %s and started empty", path, problem, aside)
    except OSError as error:
        log.warning("review state %s is unreadable (%s) and could not be moved aside (%s)", path, problem, error)
    return State()
