"""A bare JSON-RPC client over `tracefix serve`'s stdio, for what a typed client refuses to send:
malformed frames, wrong parameter types, unknown methods. Synchronous, so hypothesis can drive it."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path


class RawServer:
    def __init__(
        self,
        root: Path,
        settings: dict | None = None,
        log_file: Path | None = None,
        env: dict[str, str] | None = None,
        stderr: Path | None = None,
    ) -> None:
        self.root = root
        self.settings = settings or {}
        argv = [sys.executable, "-m", "tracefix", "serve"]
        if log_file is not None:
            argv += ["--verbose", "--log-file", str(log_file)]
        with open(stderr or os.devnull, "wb") as err:  # the child keeps its own copy
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env)
        self.responses: dict = {}
        self.notifications: list[dict] = []
        self.diagnostics: dict[str, list[dict]] = {}  # uri → the latest published list
        self._ids = itertools.count(1)
        self._changed = threading.Condition()
        self._write = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    # writing
    def send_bytes(self, data: bytes) -> None:
        with self._write:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def frame(self, body: bytes, length: int | None = None) -> None:
        self.send_bytes(b"Content-Length: %d\r\n\r\n" % (len(body) if length is None else length) + body)

    def send(self, message: dict) -> None:
        self.frame(json.dumps({"jsonrpc": "2.0", **message}).encode())

    def notify(self, method: str, params=None) -> None:
        self.send({"method": method, "params": params})

    def request(self, method: str, params=None, timeout: float = 30.0) -> dict:
        """The whole response message (result or error); AssertionError if none comes in time."""
        msg_id = next(self._ids)
        self.send({"id": msg_id, "method": method, "params": params})
        self.wait(lambda: msg_id in self.responses, timeout, f"no answer to {method}")
        return self.responses.pop(msg_id)

    def initialize(self, trusted: bool = True, capabilities: dict | None = None) -> None:
        uri = self.root.as_uri()
        answer = self.request(
            "initialize",
            {
                "processId": None,
                "rootUri": uri,
                "capabilities": {"workspace": {"configuration": True}, **(capabilities or {})},
                "workspaceFolders": [{"uri": uri, "name": self.root.name}],
                "initializationOptions": {"settings": self.settings, "trusted": trusted},
            },
        )
        assert "result" in answer, answer
        self.notify("initialized", {})
        self.wait(lambda: self.notes("tracefix/status"), 60, "the server never became ready")

    def open(self, path: Path, text: str | None = None, version: int = 1) -> None:
        self.notify(
            "textDocument/didOpen",
            {
                "textDocument": {
                    "uri": path.as_uri(),
                    "languageId": "python",
                    "version": version,
                    "text": path.read_text() if text is None else text,
                }
            },
        )

    def save(self, path: Path) -> None:
        self.notify("textDocument/didSave", {"textDocument": {"uri": path.as_uri()}})

    def hover(self, path: Path, line: int = 0, character: int = 0) -> dict:
        return self.request(
            "textDocument/hover",
            {"textDocument": {"uri": path.as_uri()}, "position": {"line": line, "character": character}},
        )

    def alive(self) -> bool:
        """Answers a request, and the answer is a result, not an error."""
        return "result" in self.request(
            "textDocument/hover",
            {"textDocument": {"uri": (self.root / "nothing.py").as_uri()}, "position": {"line": 0, "character": 0}},
        )

    def close(self) -> int:
        """shutdown and exit; the server's exit status (it is killed if it does not go)."""
        try:
            if self.proc.poll() is None:
                self.request("shutdown", timeout=15)
                self.notify("exit")
            return self.proc.wait(15)
        except (AssertionError, OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            return self.proc.wait()

    # reading
    def notes(self, method: str) -> list:
        return [n["params"] for n in self.notifications if n["method"] == method]

    def wait(self, predicate, timeout: float = 30.0, what: str = "condition not met") -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"{what} (server exit status {self.proc.poll()})")
                self._changed.wait(min(left, 0.2))

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            length = None
            while (line := out.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if not line or length is None:
                return
            message = json.loads(out.read(length))
            if "method" in message and "id" in message:
                self._answer(message)
            with self._changed:
                if "method" not in message:
                    self.responses[message["id"]] = message
                else:
                    self.notifications.append(message)
                    if message["method"] == "textDocument/publishDiagnostics":
                        self.diagnostics[message["params"]["uri"]] = message["params"]["diagnostics"]
                self._changed.notify_all()

    def _answer(self, request: dict) -> None:
        """The server's own requests: settings for workspace/configuration, null for the rest."""
        result = [self.settings] if request["method"] == "workspace/configuration" else None
        try:
            self.send({"id": request["id"], "result": result})
        except OSError:
            pass  # the server went away
