"""An optional model reviewer (`tracefix.review.critic`, off by default): reads a saved function
with its tests and files review comments the way a person would, through the same review store,
so they show, anchor and get addressed like any other comment."""

from __future__ import annotations

import json
import re

from tracefix.fixing.jobs import Call, inline
from tracefix.fixing.model import ModelClient
from tracefix.fixing.secrets import Redactor
from tracefix.parsing.symbols import Symbol
from tracefix.project import Project
from tracefix.reviews import Comment, ReviewSet
from tracefix.settings import LLMSettings

AUTHOR = "tracefix-critic"
MAX_COMMENTS = 3
SYSTEM = """\
You review one Python function as a careful senior reviewer. You see the function with line \
numbers and the tests that exercise it. Report only real problems: bugs, unhandled edge cases \
the docstring or tests imply, needless complexity. Reply with one JSON object per line, \
{"line": <line number in the file>, "comment": "<one sentence>"}, at most three lines, or \
exactly NONE when the function is fine."""
LINE = re.compile(r"\{.*\}")


def _numbered(text: str, symbol: Symbol) -> str:
    lines = text.splitlines()[symbol.start_line - 1 : symbol.end_line]
    return "\n".join(f"{symbol.start_line + i:4} {line}" for i, line in enumerate(lines))


def messages(project: Project, path: str, symbol: Symbol, text: str) -> list[dict]:
    tests = []
    for nodeid in sorted(project.index.tests_reaching({(path, symbol.qualname)}))[:3]:
        test = project.index.test_for(nodeid)
        test_symbol = project.index.symbol(test.path, test.qualname) if test else None
        test_text = project.text(test.path) if test else None
        if test_symbol and test_text:
            tests.append("\n".join(test_text.splitlines()[test_symbol.start_line - 1 : test_symbol.end_line]))
    body = f"## {path}: `{symbol.qualname}`\n```python\n{_numbered(text, symbol)}\n```"
    if tests:
        body += "\n\n## Its tests\n```python\n" + "\n\n".join(tests) + "\n```"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": body}]


def parse(reply: str, symbol: Symbol) -> list[tuple[int, str]]:
    """(line, comment) pairs inside the function; anything else in the reply is ignored."""
    found = []
    for match in LINE.finditer(reply):
        try:
            item = json.loads(match.group(0))
            line, comment = int(item["line"]), str(item["comment"]).strip()
        except (ValueError, KeyError, TypeError):
            continue
        if comment and symbol.start_line <= line <= symbol.end_line:
            found.append((line, comment))
    return found[:MAX_COMMENTS]


async def critique(
    project: Project, path: str, symbol: Symbol, text: str, settings: LLMSettings, call: Call = inline
) -> list[Comment]:
    """Ask the model once; file each new comment (skipping ones already open) as a review."""
    client = ModelClient(settings)
    try:
        redact = Redactor(settings.redact, (client.api_key,) if client.key_set else ()).redact
        asked = [dict(m, content=redact(m["content"])) for m in await call(messages, project, path, symbol, text)]
        [completion] = await client.complete(asked, n=1, temperature=settings.temperature)
    finally:
        await client.close()
    return await call(_file, project, path, symbol, text, completion.text)


def _file(project: Project, path: str, symbol: Symbol, text: str, reply: str) -> list[Comment]:
    reviews = ReviewSet.from_settings(project.root, project.settings.review)
    open_bodies = {c.body for c in reviews.collect({path: text}) if c.state == "open"}
    return [
        reviews.add(path, line, line, comment, author=AUTHOR, source="critic", text=text)
        for line, comment in parse(reply, symbol)
        if comment not in open_bodies
    ]
