import assert from "node:assert/strict";
import { test } from "node:test";
import { Bundle, Probes, resolveServerCommand } from "../src/serverCommand";

const bundle: Bundle = { launcher: "/ext/bundled/tool/serve.py", versions: ["3.11", "3.12", "3.13"] };

interface Machine {
  /** The Python extension's interpreter. */
  python?: string;
  /** python3 on PATH. */
  python3?: string;
  versions?: Record<string, string>;
  withTracefix?: string[];
  /** tracefix on PATH. */
  installed?: string;
}

function probes(machine: Machine): Probes {
  return {
    interpreter: async () => machine.python,
    version: async (python) => machine.versions?.[python],
    hasTracefix: async (python) => machine.withTracefix?.includes(python) ?? false,
    which: async (name) => ({ python3: machine.python3, tracefix: machine.installed })[name],
  };
}

test("the setting wins over everything else", async () => {
  const argv = ["/opt/py/bin/python", "-m", "tracefix", "serve"];
  const machine = { python: "/usr/bin/python3", versions: { "/usr/bin/python3": "3.12" }, installed: "/bin/tracefix" };
  assert.deepEqual(await resolveServerCommand(argv, bundle, probes(machine)), { argv, source: "setting" });
});

test("the bundled server runs with the selected interpreter", async () => {
  const machine = { python: "/venv/bin/python", python3: "/usr/bin/python3", versions: { "/venv/bin/python": "3.12", "/usr/bin/python3": "3.11" } };
  const resolved = await resolveServerCommand([], bundle, probes(machine));
  assert.deepEqual(resolved, { argv: ["/venv/bin/python", bundle.launcher], source: "bundled" });
});

test("an interpreter the bundle has no version for gives way to python3 from PATH", async () => {
  const machine = { python: "/old/bin/python", python3: "/usr/bin/python3", versions: { "/old/bin/python": "3.9", "/usr/bin/python3": "3.13" } };
  const resolved = await resolveServerCommand(undefined, bundle, probes(machine));
  assert.deepEqual(resolved, { argv: ["/usr/bin/python3", bundle.launcher], source: "bundled" });
});

test("without the Python extension, python3 from PATH runs the bundled server", async () => {
  const machine = { python3: "/usr/bin/python3", versions: { "/usr/bin/python3": "3.11" }, installed: "/bin/tracefix" };
  const resolved = await resolveServerCommand(undefined, bundle, probes(machine), "linux");
  assert.deepEqual(resolved, { argv: ["/usr/bin/python3", bundle.launcher], source: "bundled" });
});

test("no usable Python for the bundle: tracefix where it is installed", async () => {
  const machine = { python: "/venv/bin/python", versions: { "/venv/bin/python": "3.10" }, withTracefix: ["/venv/bin/python"] };
  const resolved = await resolveServerCommand(undefined, bundle, probes(machine));
  assert.deepEqual(resolved, { argv: ["/venv/bin/python", "-m", "tracefix", "serve"], source: "interpreter" });
});

test("a build without a bundle uses an installed tracefix, from the interpreter, then from PATH", async () => {
  const machine = { python: "/venv/bin/python", versions: { "/venv/bin/python": "3.12" }, installed: "/usr/local/bin/tracefix" };
  const resolved = await resolveServerCommand(undefined, undefined, probes(machine));
  assert.deepEqual(resolved, { argv: ["/usr/local/bin/tracefix", "serve"], source: "path" });
});

test("nothing usable names the Pythons it found and the versions it needs", async () => {
  const machine = { python: "/venv/bin/python", python3: "/usr/bin/python3", versions: { "/venv/bin/python": "3.9", "/usr/bin/python3": "3.10" } };
  const resolved = await resolveServerCommand(undefined, bundle, probes(machine));
  assert.ok("error" in resolved);
  assert.equal(resolved.error, "its server needs CPython 3.11, 3.12, 3.13, and found /venv/bin/python (3.9) and /usr/bin/python3 (3.10).");
  assert.match(resolved.fix, /Python: Select Interpreter/);
  assert.match(resolved.fix, /tracefix\.server\.command/);
});

test("a build without a bundle and nothing installed says how to install, never from a package index", async () => {
  const resolved = await resolveServerCommand(undefined, undefined, probes({}));
  assert.ok("error" in resolved);
  assert.match(resolved.fix, /pip install \/path\/to\/tracefix/);
  assert.doesNotMatch(`${resolved.error} ${resolved.fix}`, /pip install tracefix/);
});
