// What the status bar shows for a `tracefix/status` notification.
import { StatusParams } from "./protocol";

/** States the client reaches without the server telling it. */
export type ClientState = "starting" | "stopped";

export interface StatusView {
  text: string;
  tooltip: string;
  /** Command run on click. */
  command: string;
  alert: boolean;
}

const TESTING_VIEW = "workbench.view.testing.focus";
const PROBLEMS_VIEW = "workbench.actions.view.problems";
const SHOW_LOGS = "tracefix.showLogs";

export function statusView(status: StatusParams | ClientState): StatusView {
  if (status === "starting") {
    return { text: "$(sync~spin) tracefix starting", tooltip: "tracefix: starting the server", command: SHOW_LOGS, alert: false };
  }
  if (status === "stopped") {
    return { text: "$(circle-slash) tracefix stopped", tooltip: "tracefix: server not running", command: SHOW_LOGS, alert: true };
  }
  const detail = status.message ? `\n${status.message}` : "";
  switch (status.state) {
    case "running":
      return {
        text: `$(sync~spin) running ${status.running}`,
        tooltip: `tracefix: running ${plural(status.running, "test")}${detail}`,
        command: TESTING_VIEW,
        alert: false,
      };
    case "failed":
      return {
        text: `$(error) ${status.failed} failed`,
        tooltip: `tracefix: ${plural(status.failed, "test")} failed${detail}`,
        command: PROBLEMS_VIEW,
        alert: true,
      };
    case "untrusted":
      return {
        text: "$(shield) untrusted: tests not run",
        tooltip: `tracefix runs no tests until the workspace is trusted${detail}`,
        command: "workbench.trust.manage",
        alert: false,
      };
    case "error":
      return { text: "$(warning) tracefix", tooltip: `tracefix: ${status.message || "error"}`, command: SHOW_LOGS, alert: true };
    default: // "idle", and states from a newer server
      return { text: "$(beaker) tracefix", tooltip: `tracefix: idle${detail}`, command: TESTING_VIEW, alert: false };
  }
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}
