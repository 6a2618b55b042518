// ESLint's and typescript-eslint's recommended rules, with type information.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "out/", "bundled/", "node_modules/", "*.mjs"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // `void promise` marks a promise deliberately not awaited
      "@typescript-eslint/no-floating-promises": ["error", { ignoreVoid: true }],
    },
  },
  {
    // node:test runs the tests its test() calls return; probes answer at once
    files: ["test/**"],
    rules: { "@typescript-eslint/no-floating-promises": "off", "@typescript-eslint/require-await": "off" },
  },
);
