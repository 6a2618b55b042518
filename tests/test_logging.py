"""What the server logs: each event once, as window/logMessage at its level, nothing on stderr
(an editor that shows the server's stderr too would show it twice), no pygls chatter."""

from __future__ import annotations

from pathlib import Path

from support.raw_lsp import RawServer

INFO, WARNING, LOG = 3, 2, 4


def test_each_event_is_logged_once_at_its_level_and_stderr_stays_quiet(fixed_shop: Path, tmp_path: Path):
    reviews = fixed_shop / ".tracefix" / "reviews"
    reviews.mkdir(parents=True)
    (reviews / "notes.jsonl").write_text("not a comment\n")  # read on the folder's worker thread
    stderr = tmp_path / "stderr"
    server = RawServer(fixed_shop, stderr=stderr)
    try:
        server.initialize()
        server.request("workspace/executeCommand", {"command": "tracefix.runAll", "arguments": []})
        server.wait(lambda: any(n["done"] for n in server.notes("tracefix/testResults")), 120, "no end of run")
        server.notify("$/cancelRequest", {"id": 4242})  # a request that already finished, as editors do
        server.send({"id": "not-asked", "result": None})  # an answer to nothing
        server.notify("$/someExtension", {})
        assert server.alive()
    finally:
        assert server.close() == 0
    messages = [(m["type"], m["message"]) for m in server.notes("window/logMessage")]

    assert stderr.read_text() == ""
    assert len(messages) == len(set(messages)), messages
    texts = [text for _, text in messages]
    assert (INFO, "Running all 8 tests") in messages
    assert not [t for t in texts if "affected" in t]
    assert [kind for kind, text in messages if "notes.jsonl:1: skipped" in text] == [WARNING]
    assert not [t for t in texts if "unknown message id" in t or "$/someExtension" in t]
    assert all(text.strip() and "\n\n" not in text for text in texts)
    assert LOG not in {kind for kind, _ in messages}  # debug records only with --verbose
