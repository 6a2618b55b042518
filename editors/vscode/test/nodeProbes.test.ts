import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { bundled, hasTracefix, pythonVersion, which } from "../src/nodeProbes";

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

test("the bundle's versions are its compiled-package folders", async () => {
  const extension = mkdtempSync(path.join(tmpdir(), "extension-"));
  assert.equal(await bundled(extension), undefined); // built without package.py
  for (const name of ["common", "cp311", "cp313"]) {
    mkdirSync(path.join(extension, "bundled", "libs", name), { recursive: true });
  }
  assert.deepEqual(await bundled(extension), {
    launcher: path.join(extension, "bundled", "tool", "serve.py"),
    versions: ["3.11", "3.13"],
  });
});

test("pythonVersion asks the interpreter, and is undefined for one that does not run", async () => {
  assert.match((await pythonVersion("python3")) ?? "", /^3\.\d+$/);
  assert.equal(await pythonVersion("/nonexistent/python"), undefined);
});
