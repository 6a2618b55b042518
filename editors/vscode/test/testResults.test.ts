import assert from "node:assert/strict";
import { test } from "node:test";
import { TestResult, durationMs, fileOf, isFailure, runState, summaryText, testLabel, zeroBased } from "../src/testResults";

test("outcomes map onto TestRun states", () => {
  assert.equal(runState("passed"), "passed");
  assert.equal(runState("failed"), "failed");
  for (const outcome of ["error", "timeout", "crashed"] as const) {
    assert.equal(runState(outcome), "errored");
  }
  for (const outcome of ["skipped", "xfailed", "not run"] as const) {
    assert.equal(runState(outcome), "skipped");
  }
});

test("failures are failed and errored tests, not skipped ones", () => {
  assert.deepEqual(
    (["passed", "failed", "error", "skipped", "xfailed", "timeout", "crashed", "not run"] as const).filter(isFailure),
    ["failed", "error", "timeout", "crashed"],
  );
});

test("a nodeid splits into its file and the test within it", () => {
  const nodeid = "tests/test_cart.py::TestCart::test_total[a::b]";
  assert.equal(fileOf(nodeid), "tests/test_cart.py");
  assert.equal(testLabel(nodeid), "TestCart::test_total[a::b]");
  assert.equal(fileOf("tests/test_broken.py"), "tests/test_broken.py");
  assert.equal(testLabel("tests/test_broken.py"), "tests/test_broken.py");
});

test("durations become milliseconds and lines 0-based", () => {
  const result = { duration: 0.25 } as TestResult;
  assert.equal(durationMs(result), 250);
  assert.equal(durationMs({ duration: Number.NaN } as TestResult), undefined);
  assert.equal(zeroBased(1), 0);
  assert.equal(zeroBased(null), undefined);
  assert.equal(zeroBased(0), undefined);
});

test("the summary leaves out zero errors and skips", () => {
  assert.equal(summaryText({ passed: 4, failed: 1, errors: 0, skipped: 0, duration: 1.234 }), "4 passed, 1 failed in 1.2s");
  assert.equal(
    summaryText({ passed: 0, failed: 0, errors: 2, skipped: 1, duration: 0 }),
    "0 passed, 0 failed, 2 errors, 1 skipped in 0.0s",
  );
  assert.equal(
    summaryText({ passed: 1, failed: 0, errors: 0, skipped: 0, duration: 120, status: "timeout", message: "stopped after 120 s" }),
    "1 passed, 0 failed in 120.0s (timeout: stopped after 120 s)",
  );
  assert.equal(
    summaryText({ passed: 2, failed: 0, errors: 1, skipped: 0, duration: 1, status: "ok", verdict: "incomplete", message: "could not collect tests/test_a.py" }),
    "2 passed, 0 failed, 1 errors in 1.0s (did not complete: could not collect tests/test_a.py)",
  );
});
