// Commands that run on the server (workspace/executeCommand, same ids). Called
// from a code action they carry their arguments; from the palette they ask.
import * as vscode from "vscode";
import { Server } from "./server";
import { TestingView } from "./testing";
import { TraceDocuments } from "./traces";

interface Forwarded {
  id: string;
  /** Arguments for a call without any; undefined when the user cancels. */
  ask?: () => Promise<unknown[] | undefined>;
  /** Shows the server's answer. */
  show?: (args: unknown[], result: unknown) => Promise<void>;
}

export function registerServerCommands(
  server: Server,
  testing: TestingView,
  traces: TraceDocuments,
): vscode.Disposable[] {
  const commands: Forwarded[] = [
    { id: "tracefix.runAffected", ask: async () => activeUri(server) },
    { id: "tracefix.runAll" },
    {
      id: "tracefix.showTrace",
      ask: () => pickTest(testing.failing(), "Failing test whose trace to show"),
      show: (args, result) => traces.show(String(args[0]), result),
    },
    { id: "tracefix.fixTest", ask: () => pickTest(testing.failing(), "Failing test to fix") },
    { id: "tracefix.rerunTest", ask: () => pickTest(testing.known(), "Test to run again") },
    { id: "tracefix.addReviewComment", ask: () => askReviewComment(server) },
    {
      id: "tracefix.resolveReviewComment",
      ask: async () => {
        const id = await vscode.window.showInputBox({ prompt: "Id of the review comment to resolve" });
        return id ? [id] : undefined;
      },
    },
  ];

  return commands.map(({ id, ask, show }) =>
    vscode.commands.registerCommand(id, async (...given: unknown[]) => {
      const args = given.length === 0 && ask ? await ask() : given;
      if (!args) {
        return;
      }
      try {
        const result = await server.executeCommand(id, args);
        await show?.(args, result);
      } catch (error) {
        void vscode.window.showErrorMessage(`tracefix: ${id} failed: ${error instanceof Error ? error.message : error}`);
      }
    }),
  );
}

async function pickTest(tests: string[], placeHolder: string): Promise<unknown[] | undefined> {
  if (tests.length === 0) {
    void vscode.window.showInformationMessage("tracefix: no test results yet. Save a Python file or run all tests.");
    return undefined;
  }
  const nodeid = await vscode.window.showQuickPick(tests, { placeHolder });
  return nodeid === undefined ? undefined : [nodeid];
}

/** The active Python file, if any, as the only argument. */
function activeUri(server: Server): unknown[] {
  const doc = vscode.window.activeTextEditor?.document;
  return doc?.languageId === "python" && server.converter ? [server.converter.asUri(doc.uri)] : [];
}

async function askReviewComment(server: Server): Promise<unknown[] | undefined> {
  const editor = vscode.window.activeTextEditor;
  if (!editor || !server.converter) {
    void vscode.window.showInformationMessage("tracefix: select the code to comment on in an editor first.");
    return undefined;
  }
  const text = await vscode.window.showInputBox({ prompt: "Review comment on the selection" });
  if (!text) {
    return undefined;
  }
  return [server.converter.asUri(editor.document.uri), server.converter.asRange(editor.selection), text];
}
