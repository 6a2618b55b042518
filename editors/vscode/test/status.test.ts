import assert from "node:assert/strict";
import { test } from "node:test";
import { StatusParams } from "../src/protocol";
import { statusView } from "../src/status";

const status = (patch: Partial<StatusParams>): StatusParams => ({ state: "idle", running: 0, failed: 0, message: "", ...patch });

test("running shows a spinner and the count", () => {
  const view = statusView(status({ state: "running", running: 3 }));
  assert.equal(view.text, "$(sync~spin) running 3");
  assert.equal(view.command, "workbench.view.testing.focus");
});

test("failures show the count and open the Problems panel", () => {
  const view = statusView(status({ state: "failed", failed: 1, message: "tests/test_a.py::test_b" }));
  assert.equal(view.text, "$(error) 1 failed");
  assert.equal(view.tooltip, "tracefix: 1 test failed\ntests/test_a.py::test_b");
  assert.equal(view.command, "workbench.actions.view.problems");
  assert.equal(view.alert, true);
});

test("an untrusted workspace says that tests are not run", () => {
  assert.equal(statusView(status({ state: "untrusted" })).text, "$(shield) untrusted: tests not run");
});

test("errors and a stopped server lead to the logs", () => {
  assert.equal(statusView(status({ state: "error", message: "boom" })).command, "tracefix.showLogs");
  assert.equal(statusView(status({ state: "error", message: "boom" })).tooltip, "tracefix: boom");
  assert.equal(statusView("stopped").command, "tracefix.showLogs");
});

test("an unknown state from a newer server reads as idle", () => {
  const view = statusView(status({ state: "indexing" as StatusParams["state"] }));
  assert.equal(view.text, "$(beaker) tracefix");
});

test("the client's own states say so in words", () => {
  assert.equal(statusView("starting").text, "$(sync~spin) tracefix starting");
  assert.equal(statusView("stopped").text, "$(circle-slash) tracefix stopped");
});
