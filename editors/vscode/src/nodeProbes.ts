// The parts of server discovery that touch the file system and processes.
import { execFile } from "node:child_process";
import { access, constants, readdir } from "node:fs/promises";
import * as path from "node:path";
import { Bundle } from "./serverCommand";

/** The server bundled in the extension at `extensionPath`; undefined in a build without one. */
export async function bundled(extensionPath: string): Promise<Bundle | undefined> {
  const libs = path.join(extensionPath, "bundled", "libs");
  const versions = (await readdir(libs).catch(() => []))
    .map((name) => /^cp3(\d+)$/.exec(name))
    .filter((match) => match !== null)
    .map((match) => Number(match[1]))
    .sort((a, b) => a - b)
    .map((minor) => `3.${minor}`);
  return versions.length ? { launcher: path.join(extensionPath, "bundled", "tool", "serve.py"), versions } : undefined;
}

export function pythonVersion(python: string): Promise<string | undefined> {
  const script = "import sys; print(sys.implementation.name, '%d.%d' % sys.version_info[:2])";
  return new Promise((resolve) => {
    execFile(python, ["-c", script], { timeout: 15000 }, (error, stdout) => {
      const [implementation, version] = stdout.trim().split(" ");
      resolve(!error && implementation === "cpython" ? version : undefined);
    });
  });
}

export function hasTracefix(python: string): Promise<boolean> {
  // find_spec instead of importing: cheap and free of import side effects.
  const script = "import importlib.util, sys; sys.exit(importlib.util.find_spec('tracefix') is None)";
  return new Promise((resolve) => {
    execFile(python, ["-c", script], { timeout: 15000 }, (error) => resolve(!error));
  });
}

export async function which(
  name: string,
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
): Promise<string | undefined> {
  const dirs = (env.PATH ?? "").split(path.delimiter).filter(Boolean);
  const extensions = platform === "win32" ? (env.PATHEXT ?? ".EXE;.CMD;.BAT").split(";") : [""];
  for (const dir of dirs) {
    for (const ext of extensions) {
      const candidate = path.join(dir, name + ext);
      try {
        await access(candidate, constants.X_OK);
        return candidate;
      } catch {
        // not here; keep looking
      }
    }
  }
  return undefined;
}
