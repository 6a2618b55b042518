// Deciding how to start the server. Pure apart from the injected probes, so
// it runs under `node --test` without VS Code.

export interface Probes {
  /** Interpreter of the Python extension's active environment, if any. */
  interpreter(): Promise<string | undefined>;
  /** "3.12" for CPython 3.12; undefined for another Python, or one that does not run. */
  version(python: string): Promise<string | undefined>;
  /** Whether `python` can import tracefix. */
  hasTracefix(python: string): Promise<boolean>;
  /** Absolute path of an executable on PATH. */
  which(name: string): Promise<string | undefined>;
}

/** The server package.py put into the extension: its launcher, and the CPython versions it has compiled packages for. */
export interface Bundle {
  launcher: string;
  versions: string[];
}

export type Resolution =
  | { argv: string[]; source: "setting" | "bundled" | "interpreter" | "path" }
  | { error: string; fix: string };

/**
 * The first of: the setting; the bundled server, with the selected interpreter
 * or else python3 from PATH, when the bundle has that version; tracefix
 * installed in the selected interpreter; `tracefix` on PATH.
 */
export async function resolveServerCommand(
  configured: readonly string[] | undefined,
  bundle: Bundle | undefined,
  probes: Probes,
  platform: NodeJS.Platform = process.platform,
): Promise<Resolution> {
  if (configured && configured.length > 0) {
    return { argv: [...configured], source: "setting" };
  }
  const selected = await probes.interpreter();
  const tried: string[] = [];
  if (bundle) {
    const onPath = await probes.which(platform === "win32" ? "python" : "python3");
    for (const python of new Set([selected, onPath].filter((p): p is string => !!p))) {
      const version = await probes.version(python);
      if (version && bundle.versions.includes(version)) {
        return { argv: [python, bundle.launcher], source: "bundled" };
      }
      tried.push(version ? `${python} (${version})` : python);
    }
  }
  if (selected && (await probes.hasTracefix(selected))) {
    return { argv: [selected, "-m", "tracefix", "serve"], source: "interpreter" };
  }
  const installed = await probes.which("tracefix");
  if (installed) {
    return { argv: [installed, "serve"], source: "path" };
  }
  const setting = "or set tracefix.server.command.";
  if (bundle) {
    return {
      error: `its server needs CPython ${bundle.versions.join(", ")}, and found ${tried.length ? tried.join(" and ") : "no Python"}.`,
      fix: `Select one with "Python: Select Interpreter", put one on PATH as python3, ${setting}`,
    };
  }
  return {
    error: "this build of the extension has no server inside (package.py builds one that has), and tracefix is not installed.",
    fix: `Install it from a clone of the tracefix repository ("python3 -m pip install /path/to/tracefix"), ${setting}`,
  };
}
