import assert from "node:assert/strict";
import { test } from "node:test";
import { ClientChannel, Log } from "../src/logChannel";

/** A log that keeps what it is given, as "level: message". */
function recorded(): { log: Log; lines: string[] } {
  const lines: string[] = [];
  const keep = (level: string) => (message: string) => void lines.push(`${level}: ${message}`);
  const log = {
    name: "tracefix",
    error: keep("error"),
    warn: keep("warn"),
    info: keep("info"),
    debug: keep("debug"),
    show: () => undefined,
    hide: () => undefined,
    clear: () => void lines.splice(0),
  } as unknown as Log;
  return { log, lines };
}

test("the server's messages keep their level and lose the client's prefix", () => {
  const { log, lines } = recorded();
  const channel = new ClientChannel(log);
  channel.appendLine("[Info  - 10:21:03 AM] indexed /work/shop: 5 Python files, 8 tests");
  channel.appendLine("[Warn  - 10:21:04 AM] selection audit: 1 failing test missed");
  channel.appendLine("[Error - 10:21:05 AM] tracefix internal error (the server keeps running): KeyError('x')");
  channel.appendLine("warm worker ready in 0.4 s"); // MessageType.Log comes without a prefix
  assert.deepEqual(lines, [
    "info: indexed /work/shop: 5 Python files, 8 tests",
    "warn: selection audit: 1 failing test missed",
    "error: tracefix internal error (the server keeps running): KeyError('x')",
    "debug: warm worker ready in 0.4 s",
  ]);
});

test("a multi-line message stays one entry", () => {
  const { log, lines } = recorded();
  new ClientChannel(log).appendLine("[Warn  - 10:21:04 AM] test run run-3: crashed\nFatal Python error");
  assert.deepEqual(lines, ["warn: test run run-3: crashed\nFatal Python error"]);
});

test("stderr chunks make one entry per write, without blank lines", () => {
  const { log, lines } = recorded();
  const channel = new ClientChannel(log);
  channel.append("Traceback (most recent call last):\n  File ");
  channel.append('"x.py", line 1\nImportError: no module named pygls\n');
  channel.append("\n");
  assert.deepEqual(lines, ['warn: Traceback (most recent call last):\n  File "x.py", line 1\nImportError: no module named pygls']);
});

test("an LSP trace shows when the user asked for it", () => {
  const { log, lines } = recorded();
  const channel = new ClientChannel(log);
  channel.append("[LSP   - 10:21:03 AM] ");
  channel.appendLine('{"jsonrpc":"2.0","method":"initialized"}');
  assert.deepEqual(lines, ['info: {"jsonrpc":"2.0","method":"initialized"}']);
});
