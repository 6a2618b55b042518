"""A scripted OpenAI-compatible HTTP server for deterministic model tests.

`with FakeOpenAI(script) as fake:` serves POST /v1/chat/completions and GET /v1/models on
127.0.0.1. Each chat request takes the next script step:

- a string: the reply text (finish_reason "stop");
- a callable: called with the request's JSON body, returns a step;
- a dict fault: {"status": 429, "headers": {"Retry-After": "0"}}, {"status": 500},
  {"delay": 5} (then the "reply", if any), {"empty": True}, {"finish_reason": "length"},
  {"raw": "not json"}, {"no_choices": True}; "reply" gives the text where one is sent;
  {"trickle": 1.0}: the reply's bytes one at a time, that many seconds apart;
  {"endless": True}: a 200 whose body never ends (whitespace, as fast as the client reads).

A request after the script ran out gets a 500 saying so. `.requests` records every request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Step = str | dict | Callable[[dict], "Step"]
MODEL = "fake-model"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lowercased
    body: dict

    @property
    def prompt(self) -> str:
        """All message contents of a chat request, joined."""
        return "\n".join(str(m.get("content", "")) for m in self.body.get("messages", []))


class FakeOpenAI:
    def __init__(self, script: list[Step]) -> None:
        self.script = list(script)
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()  # cuts scripted delays short
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    @property
    def chat_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _next(self, body: dict) -> Step | None:
        with self._lock:
            step = self.script.pop(0) if self.script else None
        while callable(step):
            step = step(body)
        return step

    def _respond(self, body: dict) -> tuple[int, dict[str, str], bytes | None, float]:
        """(status, headers, payload, seconds between its bytes); payload None: an endless body."""
        step = self._next(body)
        if step is None:
            return (*_json(500, {"error": {"message": "fake: the script has no reply left"}}), 0.0)
        if isinstance(step, str):
            step = {"reply": step}
        if "delay" in step:
            self._closing.wait(step["delay"])
        if step.get("endless"):
            return 200, {"Content-Type": "application/json"}, None, 0.0
        return (*self._reply(step, body), step.get("trickle", 0.0))

    def _reply(self, step: dict, body: dict) -> tuple[int, dict[str, str], bytes]:
        if "raw" in step:
            return 200, {"Content-Type": "application/json"}, step["raw"].encode()
        if "status" in step:
            message = step.get("message", f"fake: scripted status {step['status']}")
            status, headers, payload = _json(step["status"], {"error": {"message": message}})
            return status, {**headers, **step.get("headers", {})}, payload
        text = "" if step.get("empty") else step.get("reply", "")
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        choices = (
            []
            if step.get("no_choices")
            else [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": step.get("finish_reason", "stop"),
                }
            ]
        )
        return _json(
            200,
            {
                "id": f"chatcmpl-fake-{len(self.requests)}",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", MODEL),
                "choices": choices,
                "usage": {
                    "prompt_tokens": len(prompt) // 4,
                    "completion_tokens": len(text) // 4,
                    "total_tokens": (len(prompt) + len(text)) // 4,
                },
            },
        )


def _json(status: int, data: dict) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(data).encode()


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _record(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {"_raw": raw.decode(errors="replace")}
            with fake._lock:
                fake.requests.append(
                    Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
            return body

        def _send(self, status: int, headers: dict[str, str], payload: bytes | None, pace: float = 0.0) -> None:
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if payload is None:
                    self._endless()
                    return
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if not pace:
                    self.wfile.write(payload)
                for i in range(len(payload) if pace else 0):
                    self.wfile.write(payload[i : i + 1])
                    self.wfile.flush()
                    if fake._closing.wait(pace):
                        return
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout) before the scripted delay ended

        def _endless(self) -> None:
            """A chunked body of JSON whitespace that ends when the client hangs up."""
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"%x\r\n%s\r\n" % (1 << 16, b" " * (1 << 16))
            while not fake._closing.is_set():
                self.wfile.write(chunk)
            self.close_connection = True

        def do_GET(self) -> None:
            self._record()
            if self.path.rstrip("/").endswith("/models"):
                self._send(*_json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]}))
            else:
                self._send(*_json(404, {"error": {"message": f"fake: no route {self.path}"}}))

        def do_POST(self) -> None:
            body = self._record()
            if self.path.rstrip("/").endswith("/chat/completions"):
                self._send(*fake._respond(body))
            else:
                self._send(*_json(404, {"error": {"message": f"fake: no route {self.path}"}}))

    return Handler
