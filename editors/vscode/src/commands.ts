// Commands that run on the server (workspace/executeCommand, same ids). Called
// from a code action they carry their arguments; from the palette they ask.
import * as vscode from "vscode";
import { Command } from "./protocol";
import { Server } from "./server";
import { TestingView } from "./testing";
import { TraceDocuments } from "./traces";

interface Context {
  server: Server;
  testing: TestingView;
  traces: TraceDocuments;
}

interface Forwarded {
  id: string;
  /** Arguments for a call without any; undefined when the user cancels. */
  ask?: (context: Context) => Promise<unknown[] | undefined>;
  /** Shows the server's answer. */
  show?: (context: Context, args: unknown[], result: unknown) => Promise<void>;
}

const NO_FAILURES = "no test is failing.";

/** The commands in the palette (package.json lists the same ids). */
const PALETTE: Forwarded[] = [
  { id: Command.RUN_AFFECTED, ask: ({ server }) => Promise.resolve(activeUri(server)) },
  { id: Command.RUN_ALL },
  {
    id: Command.SHOW_TRACE,
    ask: ({ testing }) => pickTest(testing.failing(), "Failing test whose trace to show", NO_FAILURES),
    show: ({ traces }, args, result) => traces.show(result, typeof args[0] === "string" ? args[0] : "trace"),
  },
  { id: Command.FIX_TEST, ask: ({ testing }) => pickTest(testing.failing(), "Failing test to fix", NO_FAILURES) },
  { id: Command.RERUN_TEST, ask: ({ testing }) => pickTest(testing.known(), "Test to run again", "no test has run yet.") },
  { id: Command.ADD_REVIEW, ask: ({ server }) => askReviewComment(server) },
  {
    id: Command.RESOLVE_REVIEW,
    ask: async () => {
      const id = await vscode.window.showInputBox({ prompt: "Id of the review comment to resolve" });
      return id ? [id] : undefined;
    },
  },
];

export function registerPaletteCommands(context: Context): vscode.Disposable[] {
  return PALETTE.map(({ id, ask, show }) =>
    vscode.commands.registerCommand(id, async (...given: unknown[]) => {
      const args = given.length === 0 && ask ? await ask(context) : given;
      if (args) {
        await forward(context.server, id, args, (result) => show?.(context, args, result));
      }
    }),
  );
}

/**
 * Registers the server's other commands, those only its code actions use,
 * as plain forwards. `advertised` is its executeCommandProvider list.
 */
export function registerAdvertised(server: Server, advertised: string[]): vscode.Disposable[] {
  const palette = new Set(PALETTE.map(({ id }) => id));
  return advertised
    .filter((id) => !palette.has(id))
    .map((id) => vscode.commands.registerCommand(id, (...args: unknown[]) => forward(server, id, args)));
}

async function forward(
  server: Server,
  id: string,
  args: unknown[],
  show?: (result: unknown) => Promise<void> | undefined,
): Promise<void> {
  try {
    const result = await server.executeCommand(id, args);
    await show?.(result);
  } catch (error) {
    void vscode.window.showErrorMessage(`tracefix: ${id} failed: ${error instanceof Error ? error.message : String(error)}`);
  }
}

async function pickTest(tests: string[], placeHolder: string, none: string): Promise<unknown[] | undefined> {
  if (tests.length === 0) {
    void vscode.window.showInformationMessage(`tracefix: ${none}`);
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
