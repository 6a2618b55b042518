// Starting, stopping and talking to the tracefix language server.
import * as vscode from "vscode";
import {
  DynamicFeature,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  State,
  StaticFeature,
} from "vscode-languageclient/node";
import { ClientChannel } from "./logChannel";
import { bundled, hasTracefix, pythonVersion, which } from "./nodeProbes";
import { activeInterpreter } from "./python";
import { Resolution, resolveServerCommand } from "./serverCommand";
import { Method, StatusParams, TestResultsParams } from "./protocol";
import { ClientState } from "./status";

/**
 * The extension registers the tracefix.* commands itself: they must exist in
 * the palette before the server runs, and they prompt for missing arguments.
 * The built-in executeCommand feature would register the server-advertised ids
 * a second time and fail with "command already exists", so it is left out.
 */
class TracefixClient extends LanguageClient {
  override registerFeature(feature: StaticFeature | DynamicFeature<unknown>): void {
    if ("registrationType" in feature && feature.registrationType.method === ExecuteCommandRequest.method) {
      return;
    }
    super.registerFeature(feature);
  }
}

export interface ServerEvents {
  status(status: StatusParams | ClientState): void;
  testResults(params: TestResultsParams): void;
  /** Running, also after an automatic restart; with the commands the server advertises. */
  started(commands: string[]): void;
  stopped(): void;
}

export class Server implements vscode.Disposable {
  private client: TracefixClient | undefined;
  /** How the running server was started. */
  private launched: { argv: string[]; trusted: boolean } | undefined;
  /** Start/stop/restart run one after the other, never interleaved. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    /** Where the extension is installed: package.py puts the server under bundled/ there. */
    private readonly extensionPath: string,
    private readonly log: vscode.LogOutputChannel,
    private readonly events: ServerEvents,
  ) {}

  start(): Promise<void> {
    return this.enqueue(async () => this.doStart(await this.resolve()));
  }

  stop(): Promise<void> {
    return this.enqueue(() => this.doStop());
  }

  restart(): Promise<void> {
    return this.enqueue(async () => {
      await this.doStop();
      await this.doStart(await this.resolve());
    });
  }

  /**
   * Restarts only if the server would now start differently: another command,
   * or trust granted. Granting trust also unlocks workspace settings, and the
   * two events should make one restart.
   */
  refresh(): Promise<void> {
    return this.enqueue(async () => {
      const resolution = await this.resolve();
      const launched = this.launched;
      if (
        launched &&
        "argv" in resolution &&
        launched.trusted === vscode.workspace.isTrusted &&
        launched.argv.join("\0") === resolution.argv.join("\0")
      ) {
        return;
      }
      await this.doStop();
      await this.doStart(resolution);
    });
  }

  async executeCommand(command: string, args: unknown[]): Promise<unknown> {
    const client = this.client;
    if (!client || client.state !== State.Running) {
      throw new Error("the tracefix server is not running");
    }
    return client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
  }

  /** Converts VS Code positions and URIs to their LSP form. */
  get converter() {
    return this.client?.code2ProtocolConverter;
  }

  dispose(): void {
    void this.stop();
  }

  private enqueue(step: () => Promise<void>): Promise<void> {
    const next = this.queue.then(step, step);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async resolve(): Promise<Resolution> {
    const configured = vscode.workspace.getConfiguration("tracefix").get<string[]>("server.command");
    const probes = { interpreter: () => activeInterpreter(this.log), version: pythonVersion, hasTracefix, which };
    return resolveServerCommand(configured, await bundled(this.extensionPath), probes);
  }

  private async doStart(resolution: Resolution): Promise<void> {
    this.events.status("starting");
    if ("error" in resolution) {
      this.log.error(`${resolution.error} ${resolution.fix}`);
      this.events.status("stopped");
      void offerHelp(`tracefix: ${resolution.error} ${resolution.fix}`);
      return;
    }
    const [command, ...args] = resolution.argv;
    const trusted = vscode.workspace.isTrusted;
    this.log.info(`Starting the server (${resolution.source}): ${resolution.argv.join(" ")}`);

    const clientOptions: LanguageClientOptions = {
      documentSelector: [
        { scheme: "file", language: "python" },
        { scheme: "untitled", language: "python" },
      ],
      synchronize: { configurationSection: "tracefix" },
      initializationOptions: {
        settings: vscode.workspace.getConfiguration().get("tracefix"),
        trusted,
      },
      outputChannel: new ClientChannel(this.log),
    };
    const client = new TracefixClient(
      "tracefix",
      "tracefix",
      // stdio without `transport`: TransportKind.stdio would append --stdio to the argv.
      { command, args, options: { cwd: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath } },
      clientOptions,
    );
    let reported = false;
    client.onNotification(Method.STATUS, (params: StatusParams) => {
      reported = true;
      this.events.status(params);
    });
    client.onNotification(Method.TEST_RESULTS, (params: TestResultsParams) => this.events.testResults(params));
    client.onDidChangeState(({ newState }) => {
      if (newState === State.Running) {
        this.events.started(client.initializeResult?.capabilities.executeCommandProvider?.commands ?? []);
      } else if (newState === State.Stopped) {
        if (this.client === client) {
          this.launched = undefined; // crashed: any refresh may start it again
        }
        this.events.status("stopped");
        this.events.stopped();
      }
    });
    this.client = client;
    try {
      await client.start();
    } catch (error) {
      this.log.error(`The server did not start: ${String(error)}`);
      this.events.status("stopped");
      void offerHelp(`tracefix: the server did not start (${resolution.argv.join(" ")}): ${String(error)}`);
      return;
    }
    this.launched = { argv: resolution.argv, trusted };
    // Until the server reports its state, say whether it will run tests at all.
    if (reported) {
      return;
    }
    this.events.status({
      state: trusted ? "idle" : "untrusted",
      running: 0,
      failed: 0,
      message: "",
    });
  }

  private async doStop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.launched = undefined;
    if (client?.needsStop()) {
      await client.stop().catch((error) => this.log.warn(`Stopping the server: ${error}`));
    }
  }
}

async function offerHelp(message: string): Promise<void> {
  const settings = "Open Settings";
  const logs = "Show Logs";
  const choice = await vscode.window.showErrorMessage(message, settings, logs);
  if (choice === settings) {
    await vscode.commands.executeCommand("workbench.action.openSettings", "tracefix.server");
  } else if (choice === logs) {
    await vscode.commands.executeCommand("tracefix.showLogs");
  }
}
