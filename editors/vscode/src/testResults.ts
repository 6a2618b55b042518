// The `tracefix/testResults` notification and how its results map onto the
// Testing view. Pure, so it is unit-tested without VS Code.

export type Outcome = "passed" | "failed" | "error" | "skipped" | "xfailed" | "timeout" | "crashed" | "not run";

export interface TestResult {
  nodeid: string;
  outcome: Outcome;
  /** Seconds. */
  duration: number;
  message: string;
  /** Absolute path of the test file. */
  path: string;
  uri: string;
  /** 1-based line of the test function or of the failing assert. */
  line: number | null;
  /** Where it failed; 1-based line. */
  location: { uri: string; line: number } | null;
}

export interface TestResultsParams {
  runId: string;
  results: TestResult[];
  done: boolean;
  summary: {
    passed: number;
    failed: number;
    errors: number;
    skipped: number;
    duration: number;
    /** "ok", or how the run ended early: "timeout", "crashed", "error". */
    status?: string;
    /** "incomplete" when some selected tests have no outcome: never a pass. */
    verdict?: "passed" | "failed" | "incomplete";
    /** The cause, when the run did not complete. */
    message?: string;
  } | null;
}

/** The TestRun method that records an outcome. */
export type RunState = "passed" | "failed" | "errored" | "skipped";

export function runState(outcome: Outcome): RunState {
  switch (outcome) {
    case "passed":
      return "passed";
    case "failed":
      return "failed";
    case "skipped":
    case "xfailed": // an expected failure is not a failure
    case "not run":
      return "skipped";
    default: // error, timeout, crashed: the test did not get to a verdict
      return "errored";
  }
}

export function isFailure(outcome: Outcome): boolean {
  const state = runState(outcome);
  return state === "failed" || state === "errored";
}

/** "tests/test_cart.py::TestCart::test_total[2]" -> "tests/test_cart.py". */
export function fileOf(nodeid: string): string {
  const sep = nodeid.indexOf("::");
  return sep === -1 ? nodeid : nodeid.slice(0, sep);
}

/** "tests/test_cart.py::TestCart::test_total[2]" -> "TestCart::test_total[2]". */
export function testLabel(nodeid: string): string {
  const sep = nodeid.indexOf("::");
  return sep === -1 ? nodeid : nodeid.slice(sep + 2);
}

/** VS Code wants milliseconds; undefined when the server did not time it. */
export function durationMs(result: TestResult): number | undefined {
  return Number.isFinite(result.duration) && result.duration >= 0 ? result.duration * 1000 : undefined;
}

/** 0-based line for a 1-based one, undefined when unknown. */
export function zeroBased(line: number | null | undefined): number | undefined {
  return typeof line === "number" && line >= 1 ? line - 1 : undefined;
}

export function summaryText(summary: NonNullable<TestResultsParams["summary"]>): string {
  const parts = [`${summary.passed} passed`, `${summary.failed} failed`];
  if (summary.errors) parts.push(`${summary.errors} errors`);
  if (summary.skipped) parts.push(`${summary.skipped} skipped`);
  const text = `${parts.join(", ")} in ${summary.duration.toFixed(1)}s`;
  if (summary.status && summary.status !== "ok") return `${text} (${summary.status}: ${summary.message ?? ""})`;
  return summary.verdict === "incomplete" ? `${text} (did not complete: ${summary.message ?? ""})` : text;
}
