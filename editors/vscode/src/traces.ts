// Read-only documents for the traces `tracefix.showTrace` returns.
import * as vscode from "vscode";

export class TraceDocuments implements vscode.TextDocumentContentProvider {
  static readonly scheme = "tracefix-trace";
  private readonly contents = new Map<string, string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.contents.get(uri.toString()) ?? "";
  }

  /** Shows what the server answered: `{content}` in a virtual document, or a bare `{uri}`. */
  async show(result: unknown, requested: string): Promise<void> {
    const { uri, content, nodeid = requested } = (result ?? {}) as { uri?: string; content?: string; nodeid?: string };
    if (typeof content === "string") {
      const doc = vscode.Uri.from({ scheme: TraceDocuments.scheme, path: `/${nodeid}.trace` });
      this.contents.set(doc.toString(), content);
      this.changed.fire(doc);
      await vscode.window.showTextDocument(doc, { preview: true });
    } else if (typeof uri === "string") {
      await vscode.window.showTextDocument(vscode.Uri.parse(uri), { preview: true });
    } else {
      void vscode.window.showInformationMessage(`tracefix has no trace for ${nodeid}.`);
    }
  }

  dispose(): void {
    this.changed.dispose();
  }
}
