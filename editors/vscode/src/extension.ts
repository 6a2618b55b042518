import * as vscode from "vscode";
import { registerAdvertised, registerPaletteCommands } from "./commands";
import { Command } from "./protocol";
import { onDidChangeInterpreter } from "./python";
import { Server } from "./server";
import { statusView } from "./status";
import { TestingView } from "./testing";
import { TraceDocuments } from "./traces";

let server: Server | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const log = vscode.window.createOutputChannel("tracefix", { log: true });
  const statusBar = vscode.window.createStatusBarItem("tracefix.status", vscode.StatusBarAlignment.Left);
  statusBar.name = "tracefix";
  const traces = new TraceDocuments();

  const testing = new TestingView(async (nodeids) => {
    if (nodeids === undefined) {
      await vscode.commands.executeCommand(Command.RUN_ALL);
      return;
    }
    for (const nodeid of nodeids) {
      await vscode.commands.executeCommand(Command.RERUN_TEST, nodeid);
    }
  });

  let advertised: vscode.Disposable[] = [];
  const forgetAdvertised = () => {
    for (const command of advertised.splice(0)) {
      command.dispose();
    }
  };

  const tracefix = new Server(context.extensionPath, log, {
    status(status) {
      const view = statusView(status);
      statusBar.text = view.text;
      statusBar.tooltip = view.tooltip;
      statusBar.command = view.command;
      statusBar.backgroundColor = view.alert ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
      statusBar.show();
      // A run the server gives up (a newer save supersedes it) never reports
      // `done`; once nothing is running, no run is open either.
      if (typeof status === "object" && status.running === 0) {
        testing.endRuns();
      }
    },
    testResults: (params) => testing.update(params),
    started(commands) {
      forgetAdvertised();
      advertised = registerAdvertised(tracefix, commands);
    },
    stopped() {
      testing.endRuns();
      forgetAdvertised();
    },
  });
  server = tracefix;
  // Restarts for changes that may change how the server is started.
  const refresh = () => tracefix.refresh();

  context.subscriptions.push(
    log,
    statusBar,
    testing,
    traces,
    tracefix,
    { dispose: forgetAdvertised },
    vscode.workspace.registerTextDocumentContentProvider(TraceDocuments.scheme, traces),
    vscode.commands.registerCommand("tracefix.restartServer", () => tracefix.restart()),
    vscode.commands.registerCommand("tracefix.showLogs", () => log.show()),
    ...registerPaletteCommands({ server: tracefix, testing, traces }),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration("tracefix.server")) {
        void refresh();
      }
    }),
    // The server was told at start that it may not run tests.
    vscode.workspace.onDidGrantWorkspaceTrust(refresh),
  );
  const interpreterChanges = await onDidChangeInterpreter(refresh);
  if (interpreterChanges) {
    context.subscriptions.push(interpreterChanges);
  }

  // Not awaited: a slow server must not hold up activation.
  void tracefix.start();
}

export async function deactivate(): Promise<void> {
  await server?.stop();
}
