// Bundles the extension into dist/, or with --tests the unit tests into out/test/.
import * as esbuild from "esbuild";
import { readdirSync } from "node:fs";

const common = { bundle: true, platform: "node", format: "cjs", target: "node20", sourcemap: true, logLevel: "warning" };

if (process.argv.includes("--tests")) {
  // `vscode` is deliberately not external here: a unit-tested module that
  // imports it fails to bundle instead of failing at run time.
  await esbuild.build({
    ...common,
    entryPoints: readdirSync("test").filter((f) => f.endsWith(".test.ts")).map((f) => `test/${f}`),
    outdir: "out/test",
  });
} else {
  await esbuild.build({
    ...common,
    entryPoints: ["src/extension.ts"],
    outfile: "dist/extension.js",
    external: ["vscode"],
    minify: true,
  });
}
