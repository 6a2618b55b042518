// The part of the Python extension's API that tracefix uses. Declared here
// rather than pulled from @vscode/python-extension, whose current releases
// require a newer VS Code than this extension supports.
import * as vscode from "vscode";

interface EnvironmentPath {
  id: string;
  path: string;
}

interface PythonApi {
  environments: {
    getActiveEnvironmentPath(resource?: vscode.Uri): EnvironmentPath;
    resolveEnvironment(env: EnvironmentPath): Promise<{ executable: { uri?: vscode.Uri } } | undefined>;
    onDidChangeActiveEnvironmentPath: vscode.Event<unknown>;
  };
}

const PYTHON_EXTENSION = "ms-python.python";

async function pythonApi(): Promise<PythonApi | undefined> {
  const extension = vscode.extensions.getExtension<PythonApi>(PYTHON_EXTENSION);
  if (!extension) {
    return undefined;
  }
  const api = extension.isActive ? extension.exports : await extension.activate();
  return api?.environments ? api : undefined;
}

/** Interpreter of the active environment; undefined without the Python extension. */
export async function activeInterpreter(log: vscode.LogOutputChannel): Promise<string | undefined> {
  try {
    const api = await pythonApi();
    if (!api) {
      return undefined;
    }
    const resource = vscode.workspace.workspaceFolders?.[0]?.uri;
    const env = await api.environments.resolveEnvironment(api.environments.getActiveEnvironmentPath(resource));
    return env?.executable.uri?.fsPath;
  } catch (error) {
    log.warn(`Could not ask the Python extension for its interpreter: ${String(error)}`);
    return undefined;
  }
}

export async function onDidChangeInterpreter(listener: () => unknown): Promise<vscode.Disposable | undefined> {
  const api = await pythonApi().catch(() => undefined);
  return api?.environments.onDidChangeActiveEnvironmentPath(listener);
}
