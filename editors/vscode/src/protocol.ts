// What tracefix adds to LSP: the names of its commands, notifications and
// requests and the payloads they carry. Mirrors server/tracefix/protocol.py;
// tests/test_protocol.py holds the two (and docs/protocol.md) together.

/** workspace/executeCommand names. */
export const Command = {
  RUN_AFFECTED: "tracefix.runAffected",
  RUN_ALL: "tracefix.runAll",
  RERUN_TEST: "tracefix.rerunTest",
  SHOW_TRACE: "tracefix.showTrace",
  FIX_TEST: "tracefix.fixTest",
  ADDRESS_REVIEW: "tracefix.addressReview",
  ADD_REVIEW: "tracefix.addReviewComment",
  RESOLVE_REVIEW: "tracefix.resolveReviewComment",
  EXPLAIN_MODEL: "tracefix.explainModel",
} as const;

/** Custom notifications (server → client) and requests (client → server). */
export const Method = {
  STATUS: "tracefix/status", // notification
  TEST_RESULTS: "tracefix/testResults", // notification
  AFFECTED: "tracefix/affected", // request
} as const;

export type State = "idle" | "running" | "failed" | "untrusted" | "error";

/** tracefix.running.results.Outcome */
export type Outcome = "passed" | "failed" | "error" | "skipped" | "xfailed" | "timeout" | "crashed" | "not run";

/** tracefix.running.results.RunStatus */
export type RunStatus = "ok" | "timeout" | "crashed" | "cancelled" | "error";

/** tracefix.running.results.Verdict: an incomplete run is never a pass. */
export type Verdict = "passed" | "failed" | "incomplete";

export interface StatusParams {
  state: State;
  /** Tests in runs under way. */
  running: number;
  /** Tests failing now, in all workspace folders. */
  failed: number;
  message: string;
}

export interface Place {
  uri: string;
  /** 1-based. */
  line: number;
}

export interface ResultPayload {
  nodeid: string;
  outcome: Outcome;
  /** Seconds. */
  duration: number;
  message: string;
  /** The test file, absolute. */
  path: string;
  uri: string;
  /** The test's def line, 1-based. */
  line: number | null;
  /** The failing line. */
  location: Place | null;
  /** Why the test was selected. */
  reason: string;
}

export interface RunSummary {
  passed: number;
  failed: number;
  errors: number;
  skipped: number;
  /** Seconds. */
  duration: number;
  status: RunStatus | "nothing to run";
  verdict: Verdict;
  /** The cause, when the run did not complete. */
  message: string;
}

export interface TestResultsParams {
  runId: string;
  results: ResultPayload[];
  /** The run ended; `summary` says how. */
  done: boolean;
  summary: RunSummary | null;
}

export interface TextDocument {
  uri: string;
}

export interface AffectedParams {
  textDocument: TextDocument;
}

export interface ChangePayload {
  path: string;
  symbol: string;
  kind: string;
  what: string;
  line: number;
}

export interface SelectedPayload {
  nodeid: string;
  reason: string;
}

export interface AffectedResult {
  changed: ChangePayload[];
  selected: SelectedPayload[];
}
