// The language client writes to a plain output channel: "[Info  - 10:21:03 AM] text" lines for
// the server's window/logMessage, bare lines for Log-level messages, raw chunks of the server's
// stderr. This channel passes each message on to the log channel at its level, without the
// client's prefix (the log channel stamps its own), dropping blank lines. Pure apart from the
// log it writes to, so it is unit-tested without VS Code.
import type * as vscode from "vscode";

/** The part of vscode.LogOutputChannel this writes to. */
export type Log = Pick<vscode.LogOutputChannel, "name" | "error" | "warn" | "info" | "debug" | "show" | "hide" | "clear">;

const PREFIX = /^\[(Error|Warn|Info|Debug|Trace|LSP)\s*- [^\]]*\] ?/;
const LEVELS = { Error: "error", Warn: "warn", Info: "info", Debug: "debug", Trace: "info", LSP: "info" } as const;

export class ClientChannel implements vscode.OutputChannel {
  /** Text appended without a line end yet: stderr arrives in chunks. */
  private pending = "";

  constructor(private readonly log: Log) {}

  get name(): string {
    return this.log.name;
  }

  /** Stderr, or the start of a trace line the next appendLine ends. */
  append(value: string): void {
    this.pending += value;
    if (this.pending.endsWith("\n")) {
      this.write(this.pending, "warn");
      this.pending = "";
    }
  }

  /** One message; unprefixed, a Log-level one (or details of the one before). */
  appendLine(value: string): void {
    this.write(this.pending + value, "debug");
    this.pending = "";
  }

  replace(value: string): void {
    this.clear();
    this.append(value);
  }

  clear(): void {
    this.pending = "";
    this.log.clear();
  }

  show(preserveFocus?: boolean): void;
  show(column?: vscode.ViewColumn, preserveFocus?: boolean): void;
  show(first?: boolean | vscode.ViewColumn, preserveFocus?: boolean): void {
    this.log.show(typeof first === "boolean" ? first : preserveFocus);
  }

  hide(): void {
    this.log.hide();
  }

  dispose(): void {
    // the log channel belongs to the extension, which disposes of it
  }

  private write(text: string, unprefixed: "warn" | "debug"): void {
    const message = text.replace(/\s+$/, "");
    if (!message.trim()) {
      return;
    }
    const prefix = PREFIX.exec(message);
    const level = prefix ? LEVELS[prefix[1] as keyof typeof LEVELS] : unprefixed;
    this.log[level](prefix ? message.slice(prefix[0].length) : message);
  }
}
