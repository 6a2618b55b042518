// The Testing view (and with it the gutter icons), fed by the server's
// `tracefix/testResults` notifications.
import * as vscode from "vscode";
import { Outcome, ResultPayload, TestResultsParams } from "./protocol";
import {
  durationMs,
  fileOf,
  isFailure,
  runState,
  summaryText,
  testLabel,
  zeroBased,
} from "./testResults";

export class TestingView implements vscode.Disposable {
  private readonly controller = vscode.tests.createTestController("tracefix", "tracefix");
  private readonly runs = new Map<string, vscode.TestRun>();
  private readonly outcomes = new Map<string, Outcome>();

  /** `rerun` gets the nodeids to run, or undefined for all tests. */
  constructor(rerun: (nodeids: string[] | undefined) => Promise<void>) {
    this.controller.createRunProfile(
      "Run with tracefix",
      vscode.TestRunProfileKind.Run,
      // The server reports the results as a run of its own.
      (request) => rerun(request.include?.flatMap(leafIds)),
      true,
    );
  }

  update(params: TestResultsParams): void {
    let run = this.runs.get(params.runId);
    if (!run) {
      run = this.controller.createTestRun(new vscode.TestRunRequest(), `tracefix ${params.runId}`);
      this.runs.set(params.runId, run);
    }
    for (const result of params.results) {
      this.record(run, result);
    }
    if (params.done) {
      if (params.summary) {
        run.appendOutput(`${summaryText(params.summary)}\r\n`);
      }
      run.end();
      this.runs.delete(params.runId);
    }
  }

  /** Ends the runs the server will not finish. */
  endRuns(): void {
    for (const run of this.runs.values()) {
      run.end();
    }
    this.runs.clear();
  }

  failing(): string[] {
    return [...this.outcomes].filter(([, outcome]) => isFailure(outcome)).map(([nodeid]) => nodeid);
  }

  known(): string[] {
    return [...this.outcomes.keys()];
  }

  dispose(): void {
    this.endRuns();
    this.controller.dispose();
  }

  private record(run: vscode.TestRun, result: ResultPayload): void {
    const item = this.item(result);
    this.outcomes.set(result.nodeid, result.outcome);
    const duration = durationMs(result);
    switch (runState(result.outcome)) {
      case "passed":
        run.passed(item, duration);
        break;
      case "skipped":
        run.skipped(item);
        break;
      case "failed":
        run.failed(item, message(result), duration);
        break;
      case "errored":
        run.errored(item, message(result), duration);
        break;
    }
  }

  /** The item for a result, under an item for its file; both made on first sight. */
  private item(result: ResultPayload): vscode.TestItem {
    const uri = fileUri(result);
    const fileId = uri.toString();
    let file = this.controller.items.get(fileId);
    if (!file) {
      file = this.controller.createTestItem(fileId, fileOf(result.nodeid), uri);
      this.controller.items.add(file);
    }
    let item = file.children.get(result.nodeid);
    if (!item) {
      item = this.controller.createTestItem(result.nodeid, testLabel(result.nodeid), uri);
      file.children.add(item);
    }
    const line = zeroBased(result.line);
    if (line !== undefined) {
      item.range = new vscode.Range(line, 0, line, 0);
    }
    return item;
  }
}

function fileUri(result: ResultPayload): vscode.Uri {
  return result.uri ? vscode.Uri.parse(result.uri) : vscode.Uri.file(result.path);
}

function message(result: ResultPayload): vscode.TestMessage {
  const text = new vscode.TestMessage(result.message || result.outcome);
  const where = result.location ?? (result.line ? { uri: fileUri(result).toString(), line: result.line } : null);
  const line = zeroBased(where?.line);
  if (where && line !== undefined) {
    text.location = new vscode.Location(vscode.Uri.parse(where.uri), new vscode.Position(line, 0));
  }
  return text;
}

/** Nodeids of an item: its own for a test, its children's for a file. */
function leafIds(item: vscode.TestItem): string[] {
  if (item.children.size === 0) {
    return [item.id];
  }
  const ids: string[] = [];
  item.children.forEach((child) => ids.push(...leafIds(child)));
  return ids;
}
