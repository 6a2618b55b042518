// Real-editor test: code-server with the packaged extension, driven by
// headless Chromium. Breaks a function in the example project, saves, and
// expects a tracefix problem and its "Fix ... with tracefix" quick fix.
//
// Needs setup.sh to have run. Environment:
//   TRACEFIX_PYTHON        interpreter with tracefix installed (default python3)
//   TRACEFIX_EDITOR_CACHE  where setup.sh put code-server (default /tmp/tracefix-editors)
//   TRACEFIX_CHROMIUM      browser (default /usr/bin/chromium)
import { execFileSync, spawn } from "node:child_process";
import { cpSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../../..");
const artifacts = path.join(here, "artifacts");
const python = process.env.TRACEFIX_PYTHON || "python3";
const cache = process.env.TRACEFIX_EDITOR_CACHE || "/tmp/tracefix-editors";
const chromium = process.env.TRACEFIX_CHROMIUM || "/usr/bin/chromium";
const codeServer = path.join(cache, "code-server/node_modules/.bin/code-server");

// The edit: apply_discount adds instead of subtracting, which
// tests/test_pricing.py::test_apply_discount catches.
const source = "shop/pricing.py";
const original = "return price * (1 - percent / 100)";
const broken = "return price * (1 + percent / 100)";

const started = Date.now();
const step = (text) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${text}`);

const work = mkdtempSync(path.join(tmpdir(), "tracefix-vscode-"));
const dirs = Object.fromEntries(
  ["project", "user-data", "extensions", "xdg-config", "xdg-data", "xdg-cache"].map((name) => [name, path.join(work, name)]),
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
  step("packaging the extension");
  const vsix = path.join(work, "tracefix.vsix");
  execFileSync("npm", ["run", "package", "--", "--out", vsix], { cwd: path.join(repo, "editors/vscode"), stdio: "inherit" });

  const env = {
    ...process.env,
    XDG_CONFIG_HOME: dirs["xdg-config"],
    XDG_DATA_HOME: dirs["xdg-data"],
    XDG_CACHE_HOME: dirs["xdg-cache"],
  };
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
    () => [...document.querySelectorAll(".markers-panel .monaco-list-row")].find((row) => /tracefix/i.test(row.textContent)),
    { timeout: 180_000, polling: 500 },
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

function prepareProject() {
  const example = path.join(repo, "examples/shop");
  cpSync(example, dirs.project, {
    recursive: true,
    filter: (file) => !/(^|\/)(__pycache__|\.pytest_cache|\.tracefix)(\/|$)/.test(path.relative(example, file)),
  });
  writeJson(path.join(dirs.project, ".vscode/settings.json"), {
    "tracefix.server.command": [python, "-m", "tracefix", "serve"],
  });
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
