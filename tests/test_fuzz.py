"""Fuzzing a live server: random sequences of document edits, requests, commands with random
arguments, and malformed frames. After every sequence the server still answers; after all of
them it still reports a failing test. docs/reliability.md quotes the counts this prints."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.raw_lsp import RawServer

FILES = ["shop/pricing.py", "shop/text.py", "tests/test_pricing.py", "scratch.py", "../outside.py"]
COMMANDS = [
    "tracefix.runAffected",
    "tracefix.runAll",
    "tracefix.rerunTest",
    "tracefix.showTrace",
    "tracefix.fixTest",
    "tracefix.addressReview",
    "tracefix.addReviewComment",
    "tracefix.resolveReviewComment",
    "tracefix.explainModel",
    "tracefix.noSuchCommand",
]
REQUESTS = [
    "textDocument/hover",
    "textDocument/codeAction",
    "textDocument/inlineValue",
    "tracefix/affected",
    "workspace/executeCommand",
    "textDocument/definition",
]
NOTIFICATIONS = [
    "textDocument/didOpen",
    "textDocument/didChange",
    "textDocument/didSave",
    "textDocument/didClose",
    "workspace/didChangeConfiguration",
    "workspace/didChangeWatchedFiles",
    "$/cancelRequest",
]

# lone surrogates, NULs and astral characters included
text = st.text(st.characters(blacklist_categories=()), max_size=200)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
position = st.builds(
    lambda line, character: {"line": line, "character": character},
    st.integers(-2, 10**6) | st.integers(0, 40),
    st.integers(-2, 10**6) | st.integers(0, 80),
)
span = st.builds(lambda start, end: {"start": start, "end": end}, position, position)
file = st.sampled_from(FILES)

actions = st.one_of(
    st.tuples(st.just("open"), file, text),
    st.tuples(st.just("change"), file, st.lists(st.tuples(span | st.none(), text), min_size=1, max_size=3)),
    st.tuples(st.just("save"), file),
    st.tuples(st.just("close"), file),
    st.tuples(st.just("hover"), file, position),
    st.tuples(st.just("codeAction"), file, span),
    st.tuples(st.just("command"), st.sampled_from(COMMANDS), st.lists(json_value, max_size=3)),
    st.tuples(st.just("request"), st.sampled_from(REQUESTS) | st.text(max_size=20), json_value),
    st.tuples(st.just("notify"), st.sampled_from(NOTIFICATIONS) | st.text(max_size=20), json_value),
    st.tuples(st.just("bytes"), st.binary(max_size=200)),  # a body that is not JSON
    st.tuples(st.just("short"), st.integers(1, 30)),  # a Content-Length too short by this much
    st.tuples(st.just("long"), st.integers(1, 200)),  # too long: swallows what follows
    st.tuples(st.just("no length"), st.text("0123456789abc -", max_size=10).map("n".__add__)),  # never a number
)


class Fuzzer:
    """One server while it keeps answering, a fresh one after it stops (so shrinking works);
    counts the sequences played and the servers lost."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.server: RawServer | None = None
        self.sequences = self.lost = 0

    def play(self, sequence: list[tuple]) -> None:
        if self.server is None:
            self.server = RawServer(self.root)
            self.server.initialize()
        self.sequences += 1
        try:
            for version, action in enumerate(sequence, 2):
                self._do(action, version)
            for _ in range(3):  # padding for what a "long" frame still waits for
                self.server.notify("$/pad", {"pad": "x" * 100})
            assert self.server.alive(), "the health check was answered with an error"
        except (AssertionError, OSError):
            self.lost += 1
            self.server.close()
            self.server = None
            raise

    def request(self, method: str, params) -> None:
        """Sent, not waited for: a "long" frame before it may swallow it."""
        self.server.send({"id": f"fuzz-{self.sequences}-{method}", "method": method, "params": params})

    def _do(self, action: tuple, version: int) -> None:
        server, kind = self.server, action[0]

        def uri(rel: str) -> str:
            return (self.root / rel).as_uri()

        if kind == "open":
            server.notify(
                "textDocument/didOpen",
                {
                    "textDocument": {
                        "uri": uri(action[1]),
                        "languageId": "python",
                        "version": version,
                        "text": action[2],
                    }
                },
            )
        elif kind == "change":
            changes = [{"range": r, "text": t} if r else {"text": t} for r, t in action[2]]
            server.notify(
                "textDocument/didChange",
                {"textDocument": {"uri": uri(action[1]), "version": version}, "contentChanges": changes},
            )
        elif kind in ("save", "close"):
            server.notify(f"textDocument/did{kind.title()}", {"textDocument": {"uri": uri(action[1])}})
        elif kind == "hover":
            self.request("textDocument/hover", {"textDocument": {"uri": uri(action[1])}, "position": action[2]})
        elif kind == "codeAction":
            self.request(
                "textDocument/codeAction",
                {"textDocument": {"uri": uri(action[1])}, "range": action[2], "context": {"diagnostics": []}},
            )
        elif kind == "command":
            self.request("workspace/executeCommand", {"command": action[1], "arguments": action[2]})
        elif kind == "request":
            self.request(action[1], action[2])
        elif kind == "notify":
            server.notify(action[1], action[2])
        elif kind == "bytes":
            server.frame(action[1])
        elif kind == "short":
            body = b'{"jsonrpc": "2.0", "method": "$/short", "params": {"pad": "%s"}}' % (b"y" * 30)
            server.frame(body, length=len(body) - action[1])
        elif kind == "long":
            body = b'{"jsonrpc": "2.0", "method": "$/long"}'
            server.frame(body, length=len(body) + action[1])
        else:
            server.send_bytes(b"Content-Length: %s\r\n\r\n{}" % action[1].encode())


@pytest.fixture
def fuzzer(fixed_shop):
    fuzzer = Fuzzer(fixed_shop)
    yield fuzzer
    print(f"fuzz: {fuzzer.sequences} sequences, {fuzzer.lost} servers lost")
    if fuzzer.server is not None:
        fuzzer.server.close()


def test_random_sequences_leave_a_working_server(fuzzer, fixed_shop):
    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(actions, min_size=1, max_size=12))
    def sequence_leaves_it_answering(sequence):
        fuzzer.play(sequence)

    sequence_leaves_it_answering()
    server = fuzzer.server  # it answered after the last sequence
    server.notify("workspace/didChangeConfiguration", {"settings": {"tracefix": {}}})  # undo random settings
    for rel in FILES[:3]:  # saved random buffers are what the index knows: save the real texts
        server.open(fixed_shop / rel, version=10**6)
        server.save(fixed_shop / rel)
    pricing, test_uri = fixed_shop / "shop" / "pricing.py", (fixed_shop / "tests" / "test_pricing.py").as_uri()
    broken = pricing.read_text().replace("return 0\n", "return 1\n")
    server.open(pricing, broken, version=10**6 + 1)
    pricing.write_text(broken)
    server.diagnostics.pop(test_uri, None)
    server.save(pricing)
    server.wait(lambda: server.diagnostics.get(test_uri), 120, "no diagnostic for the broken function")
    assert server.close() == 0
