import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { hasTracefix, which } from "../src/nodeProbes";

test("which finds an executable on PATH and skips one that is not executable", async () => {
  const [first, second] = [mkdtempSync(path.join(tmpdir(), "which-")), mkdtempSync(path.join(tmpdir(), "which-"))];
  writeFileSync(path.join(first, "tracefix"), "");
  writeFileSync(path.join(second, "tracefix"), "#!/bin/sh\n");
  chmodSync(path.join(second, "tracefix"), 0o755);
  const env = { PATH: [first, second].join(path.delimiter) };
  assert.equal(await which("tracefix", env, "linux"), path.join(second, "tracefix"));
  assert.equal(await which("absent", env, "linux"), undefined);
});

test("hasTracefix is false for an interpreter that does not exist", async () => {
  assert.equal(await hasTracefix("/nonexistent/python"), false);
});
