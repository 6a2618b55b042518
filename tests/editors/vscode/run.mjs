// Real-editor test: the .vsix, with the server inside, installed into
// code-server on a machine where tracefix is installed nowhere: python3 on
// PATH cannot import it and no `tracefix` is on PATH. Driven by headless
// Chromium, it breaks a function in the example project, saves, and expects a
// tracefix problem, its "Fix ... with tracefix" quick fix, and a clean log.
//
// Needs setup.sh to have run. Environment:
//   TRACEFIX_PYTHON        the python3 code-server finds on PATH (default python3);
//                          it must not have tracefix
//   TRACEFIX_VSIX          the .vsix to test (default: package.py builds one for
//                          TRACEFIX_PYTHON's version)
//   TRACEFIX_EDITOR_CACHE  where setup.sh put code-server (default /tmp/tracefix-editors)
//   TRACEFIX_CHROMIUM      browser (default /usr/bin/chromium)
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { cpSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../../..");
const artifacts = path.join(here, "artifacts");
const python = execFileSync(process.env.TRACEFIX_PYTHON || "python3", ["-c", "import sys; print(sys.executable)"], { encoding: "utf8" }).trim();
const cache = process.env.TRACEFIX_EDITOR_CACHE || "/tmp/tracefix-editors";
const chromium = process.env.TRACEFIX_CHROMIUM || "/usr/bin/chromium";
const codeServer = path.join(cache, "code-server/node_modules/.bin/code-server");

// The edit: apply_discount adds instead of subtracting, which
// tests/test_pricing.py::test_apply_discount catches.
const source = "shop/pricing.py";
const original = "return price * (1 - percent / 100)";
const broken = "return price * (1 + percent / 100)";
// Where the problem ends up: the failing tests are traced after the run, and the blame then moves
// from the def line to this changed line, which made the wrong value.
const blamedLine = 8;

const started = Date.now();
const step = (text) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${text}`);

const work = mkdtempSync(path.join(tmpdir(), "tracefix-vscode-"));
const dirs = Object.fromEntries(
  ["project", "user-data", "extensions", "xdg-config", "xdg-data", "xdg-cache", "bin", "home"].map((name) => [name, path.join(work, name)]),
);
rmSync(artifacts, { recursive: true, force: true });
mkdirSync(artifacts, { recursive: true });

let server;
let browser;
let page;
try {
  if (!existsSync(codeServer)) {
    throw new Error(`no code-server at ${codeServer}: run tests/editors/vscode/setup.sh`);
  }
  const vsix = process.env.TRACEFIX_VSIX || path.join(work, "tracefix.vsix");
  if (!process.env.TRACEFIX_VSIX) {
    step(`packaging the extension with its server for ${python}`);
    const version = execFileSync(python, ["-c", "import sys; print('%d.%d' % sys.version_info[:2])"], { encoding: "utf8" }).trim();
    execFileSync("python3", ["package.py", "--python", version, "--out", vsix], { cwd: path.join(repo, "editors/vscode"), stdio: "inherit" });
  }

  // A machine without tracefix: on PATH, python3 is TRACEFIX_PYTHON and nothing else is added;
  // an empty home (no user site-packages, no shell start-up files); and VSCODE_CLI, so that
  // code-server keeps this environment instead of asking a login shell for one.
  mkdirSync(dirs.bin);
  mkdirSync(dirs.home);
  symlinkSync(python, path.join(dirs.bin, "python3"));
  const env = {
    ...process.env,
    PATH: [dirs.bin, path.dirname(process.execPath), "/usr/local/bin", "/usr/bin", "/bin"].join(path.delimiter),
    HOME: dirs.home,
    VSCODE_CLI: "1",
    XDG_CONFIG_HOME: dirs["xdg-config"],
    XDG_DATA_HOME: dirs["xdg-data"],
    XDG_CACHE_HOME: dirs["xdg-cache"],
  };
  delete env.VIRTUAL_ENV;
  delete env.PYTHONPATH;
  assertNoTracefix(env);
  const profile = ["--user-data-dir", dirs["user-data"], "--extensions-dir", dirs.extensions];
  execFileSync(codeServer, ["--install-extension", vsix, ...profile], { env, stdio: "inherit" });

  prepareProject();
  writeJson(path.join(dirs["user-data"], "User/settings.json"), {
    "security.workspace.trust.enabled": false,
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": false,
    "telemetry.telemetryLevel": "off",
    "extensions.autoCheckUpdates": false,
    "extensions.autoUpdate": false,
    // Typed text must land verbatim.
    "editor.autoClosingBrackets": "never",
    "editor.quickSuggestions": { other: false, comments: false, strings: false },
    "editor.suggestOnTriggerCharacters": false,
  });

  const port = await freePort();
  step(`starting code-server on port ${port}`);
  server = spawn(
    codeServer,
    ["--auth", "none", "--bind-addr", `127.0.0.1:${port}`, "--disable-telemetry", "--disable-update-check",
      "--disable-workspace-trust", ...profile, dirs.project],
    { env, detached: true, stdio: ["ignore", "pipe", "pipe"] },
  );
  const serverLog = createWriteStream(path.join(artifacts, "code-server.log"));
  server.stdout.pipe(serverLog);
  server.stderr.pipe(serverLog);
  await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null))?.ok, 60_000, "code-server to answer");

  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", "--window-size=1400,900"],
    defaultViewport: { width: 1400, height: 900 },
  });
  page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(dirs.project)}`);
  await page.waitForSelector(".monaco-workbench", { timeout: 60_000 });
  step("workbench loaded");

  await serverStarted();
  const started = readLog().find((line) => line.includes("Starting the server"));
  if (!started?.includes(`(bundled): ${path.join(dirs.bin, "python3")} `)) {
    throw new Error(`the server inside the extension, run by python3 from PATH, did not start: ${started}`);
  }
  step(started.replace(/^\S+ \S+ \[info\] /, ""));
  await openFile(source);
  step(`breaking ${source}`);
  await editLine(source, original, broken);
  await page.keyboard.down("Control");
  await page.keyboard.press("s");
  await page.keyboard.up("Control");
  await waitFor(() => readFileSync(path.join(dirs.project, source), "utf8").includes(broken), 10_000, "the save");

  step("waiting for a tracefix problem");
  await command("View: Focus Problems (Errors, Warnings, Infos)");
  const marker = await page.waitForFunction(
    (line) =>
      [...document.querySelectorAll(".markers-panel .monaco-list-row")].find(
        (row) => /tracefix/i.test(row.textContent) && row.textContent.includes(`[Ln ${line},`),
      ),
    { timeout: 180_000, polling: 500 },
    blamedLine,
  );
  step(`problem: ${await marker.evaluate((row) => row.textContent)}`);

  // Enter on the marker moves the cursor to it in its editor; the quick fix
  // menu then lists the actions for the diagnostics under the cursor.
  await marker.click();
  await page.keyboard.press("Enter");
  await page.waitForSelector(".monaco-editor.focused", { timeout: 10_000 });
  await page.keyboard.down("Control");
  await page.keyboard.press(".");
  await page.keyboard.up("Control");
  const fix = await page
    .waitForFunction(
      () => [...document.querySelectorAll(".action-widget .monaco-list-row")].find((row) => /fix.*with tracefix/i.test(row.textContent)),
      { timeout: 60_000, polling: 500 },
    )
    .catch(async () => {
      const listed = await page.$$eval(".action-widget .monaco-list-row", (rows) => rows.map((row) => row.textContent));
      throw new Error(`no "Fix ... with tracefix" quick fix; the menu lists ${JSON.stringify(listed)}`);
    });
  step(`quick fix: ${await fix.evaluate((row) => row.textContent)}`);

  const screenshot = path.join(artifacts, "vscode-problems.png");
  await page.screenshot({ path: screenshot });
  if (process.env.TRACEFIX_UPDATE_README_SHOT) {
    // refreshing the README's picture is a choice, not a side effect of every test run
    mkdirSync(path.join(repo, "docs/img"), { recursive: true });
    cpSync(screenshot, path.join(repo, "docs/img/vscode-problems.png"));
  }
  checkLog();
  step("passed");
} catch (error) {
  await page?.screenshot({ path: path.join(artifacts, "failure.png") }).catch(() => undefined);
  console.error(error);
  process.exitCode = 1;
} finally {
  await browser?.close().catch(() => undefined);
  if (server) {
    // code-server's extension host and the tracefix server share its process group.
    try {
      process.kill(-server.pid, "SIGTERM");
    } catch {
      // already gone
    }
  }
  keepLogs();
  rmSync(work, { recursive: true, force: true });
}

/** tracefix is neither importable by python3 nor on PATH: only the .vsix brings it. */
function assertNoTracefix(env) {
  const imports = spawnSync("python3", ["-c", "import tracefix"], { env, encoding: "utf8" });
  if (imports.status === 0) {
    throw new Error(`${python} can import tracefix: the test needs an interpreter without it (TRACEFIX_PYTHON)`);
  }
  const found = env.PATH.split(path.delimiter).filter((dir) => existsSync(path.join(dir, "tracefix")));
  if (found.length) {
    throw new Error(`tracefix is on PATH in ${found.join(", ")}`);
  }
}

/** The example project, with a .venv of its own that has pytest (as a project has), and no tracefix. */
function prepareProject() {
  const example = path.join(repo, "examples/shop");
  cpSync(example, dirs.project, {
    recursive: true,
    filter: (file) => !/(^|\/)(__pycache__|\.pytest_cache|\.tracefix|\.venv)(\/|$)/.test(path.relative(example, file)),
  });
  const venv = path.join(dirs.project, ".venv");
  execFileSync(python, ["-m", "venv", venv], { stdio: "inherit" });
  execFileSync(path.join(venv, "bin", "python"), ["-m", "pip", "install", "--quiet", "pytest"], { stdio: "inherit" });
}

/** The tracefix output channel's log, one entry per line. */
function readLog() {
  const logs = path.join(dirs["user-data"], "logs");
  const files = existsSync(logs)
    ? readdirSync(logs, { recursive: true, withFileTypes: true }).filter((e) => e.isFile() && /tracefix\.log$/.test(e.name))
    : [];
  return files.flatMap((e) => readFileSync(path.join(e.parentPath, e.name), "utf8").split("\n")).filter(Boolean);
}

/** Each event once (the server's stderr and its log messages used to show both), no blank entries. */
function checkLog() {
  const entries = readLog().map((line) => line.replace(/^\S+ \S+ /, "")); // without the time stamp
  const blank = entries.filter((entry) => /^\[\w+\]\s*$/.test(entry));
  const repeated = entries.filter((entry, i) => i > 0 && entry === entries[i - 1]);
  if (blank.length || repeated.length || !entries.some((entry) => /^\[info\] Running \d+ affected tests?$/.test(entry))) {
    throw new Error(`the tracefix log is not one entry per event:\n${entries.join("\n")}`);
  }
  step(`log: ${entries.length} entries, each once`);
}

/** Waits for the status bar to leave "starting"; a save before that reaches no server. */
async function serverStarted() {
  const status = await page.waitForFunction(
    () => {
      const text = document.getElementById("tracefix.tracefix.tracefix.status")?.textContent;
      return text && !text.includes("starting") && text;
    },
    { timeout: 60_000, polling: 250 },
  );
  const text = await status.jsonValue();
  if (text.includes("stopped")) {
    throw new Error("the tracefix server did not start; see artifacts/logs/**/tracefix.log");
  }
  step(`server started: ${text.trim()}`);
}

async function openFile(relative) {
  await page.keyboard.down("Control");
  await page.keyboard.press("p");
  await page.keyboard.up("Control");
  await page.waitForSelector(".quick-input-widget input", { visible: true });
  await page.keyboard.type(relative);
  await waitForQuickPickRow(path.basename(relative));
  await page.keyboard.press("Enter");
  await page.waitForSelector(`.monaco-editor[data-uri$="${relative}"] .view-lines`, { timeout: 30_000 });
}

/** Replaces `before` by `after` on the line of `file` that contains it. */
async function editLine(file, before, after) {
  const lines = readFileSync(path.join(dirs.project, file), "utf8").split("\n");
  const number = lines.findIndex((line) => line.includes(before)) + 1;
  if (number === 0) {
    throw new Error(`${file} has no line with ${before}`);
  }
  await page.keyboard.down("Control");
  await page.keyboard.press("g");
  await page.keyboard.up("Control");
  await page.waitForSelector(".quick-input-widget input", { visible: true });
  await page.keyboard.type(String(number));
  await page.keyboard.press("Enter");
  // End, then Shift+Home, selects the line from its first non-blank character.
  await page.keyboard.press("End");
  await page.keyboard.down("Shift");
  await page.keyboard.press("Home");
  await page.keyboard.up("Shift");
  await page.keyboard.type(lines[number - 1].trim().replace(before, after));
}

/** Runs a command by its title in the command palette. */
async function command(title) {
  await page.keyboard.down("Control");
  await page.keyboard.down("Shift");
  await page.keyboard.press("p");
  await page.keyboard.up("Shift");
  await page.keyboard.up("Control");
  await page.waitForSelector(".quick-input-widget input", { visible: true });
  await page.keyboard.type(title);
  await waitForQuickPickRow(title);
  await page.keyboard.press("Enter");
}

async function waitForQuickPickRow(text) {
  await page.waitForFunction(
    (wanted) => [...document.querySelectorAll(".quick-input-list .monaco-list-row")].some((row) => row.textContent.includes(wanted)),
    { timeout: 30_000 },
    text,
  );
}

async function waitFor(check, timeout, what) {
  const deadline = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout / 1000}s waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

function writeJson(file, value) {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(value, null, 2));
}

/** Keeps the extension host's logs, where the tracefix output channel ends up. */
function keepLogs() {
  const logs = path.join(dirs["user-data"], "logs");
  if (!existsSync(logs)) {
    return;
  }
  for (const entry of readdirSync(logs, { recursive: true, withFileTypes: true })) {
    const file = path.join(entry.parentPath, entry.name);
    const relative = path.relative(logs, file);
    if (entry.isFile() && /exthost|tracefix/i.test(relative)) {
      mkdirSync(path.dirname(path.join(artifacts, "logs", relative)), { recursive: true });
      cpSync(file, path.join(artifacts, "logs", relative));
    }
  }
}
