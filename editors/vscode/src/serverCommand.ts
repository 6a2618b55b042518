// Deciding how to start the server. Pure apart from the injected probes, so
// it runs under `node --test` without VS Code.

export interface Probes {
  /** Interpreter of the Python extension's active environment, if any. */
  interpreter(): Promise<string | undefined>;
  /** Whether `python` can import tracefix. */
  hasTracefix(python: string): Promise<boolean>;
  /** Absolute path of an executable on PATH. */
  which(name: string): Promise<string | undefined>;
}

export type Resolution =
  | { argv: string[]; source: "setting" | "interpreter" | "path" }
  | { error: string; fix: string };

export async function resolveServerCommand(
  configured: readonly string[] | undefined,
  probes: Probes,
): Promise<Resolution> {
  if (configured && configured.length > 0) {
    return { argv: [...configured], source: "setting" };
  }
  const python = await probes.interpreter();
  if (python && (await probes.hasTracefix(python))) {
    return { argv: [python, "-m", "tracefix", "serve"], source: "interpreter" };
  }
  const onPath = await probes.which("tracefix");
  if (onPath) {
    return { argv: [onPath, "serve"], source: "path" };
  }
  if (python) {
    return {
      error: `tracefix is not installed in the selected interpreter ${python}.`,
      fix: `Run "${python} -m pip install tracefix", or set tracefix.server.command.`,
    };
  }
  return {
    error: "tracefix was not found: no Python interpreter is selected and `tracefix` is not on PATH.",
    fix: 'Run "pip install tracefix", or set tracefix.server.command.',
  };
}
