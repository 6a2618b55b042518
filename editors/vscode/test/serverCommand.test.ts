import assert from "node:assert/strict";
import { test } from "node:test";
import { Probes, resolveServerCommand } from "../src/serverCommand";

function probes(found: { python?: string; withTracefix?: boolean; onPath?: string }): Probes {
  return {
    interpreter: async () => found.python,
    hasTracefix: async () => found.withTracefix ?? false,
    which: async (name) => (name === "tracefix" ? found.onPath : undefined),
  };
}

test("the setting wins over everything else", async () => {
  const argv = ["/opt/py/bin/python", "-m", "tracefix", "serve"];
  const resolved = await resolveServerCommand(argv, probes({ python: "/usr/bin/python3", withTracefix: true }));
  assert.deepEqual(resolved, { argv, source: "setting" });
});

test("an empty setting falls through to the interpreter", async () => {
  const resolved = await resolveServerCommand([], probes({ python: "/venv/bin/python", withTracefix: true }));
  assert.deepEqual(resolved, { argv: ["/venv/bin/python", "-m", "tracefix", "serve"], source: "interpreter" });
});

test("an interpreter without tracefix falls through to PATH", async () => {
  const resolved = await resolveServerCommand(undefined, probes({ python: "/venv/bin/python", onPath: "/usr/local/bin/tracefix" }));
  assert.deepEqual(resolved, { argv: ["/usr/local/bin/tracefix", "serve"], source: "path" });
});

test("nothing found names the interpreter to install into", async () => {
  const resolved = await resolveServerCommand(undefined, probes({ python: "/venv/bin/python" }));
  assert.ok("error" in resolved);
  assert.match(resolved.error, /\/venv\/bin\/python/);
  assert.match(resolved.fix, /"\/venv\/bin\/python -m pip install tracefix"/);
});

test("nothing found and no interpreter says how to install", async () => {
  const resolved = await resolveServerCommand(undefined, probes({}));
  assert.ok("error" in resolved);
  assert.match(resolved.fix, /pip install tracefix/);
  assert.match(resolved.fix, /tracefix\.server\.command/);
});
