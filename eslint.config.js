// Lint rules: typescript-eslint's recommended type-aware set, plus the few habits STYLE.md asks for.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  // bench/experiments/plain-forward.js is loaded in place of dist/proxy/forward.js (compiled JavaScript, not project source).
  { ignores: ["dist/**", "node_modules/**", ".tap/**", "coverage/**", "bench/experiments/plain-forward.js"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-restricted-syntax": [
        "error",
        { selector: "TSEnumDeclaration", message: "Only erasable syntax: use a union of string literals." },
        { selector: "TSParameterProperty", message: "Only erasable syntax: no parameter properties." },
        { selector: "TSModuleDeclaration[kind='namespace']", message: "Only erasable syntax: no namespaces." },
        { selector: "ExportDefaultDeclaration", message: "Named exports only." }
      ],
      "no-restricted-properties": [
        "error",
        { object: "process", property: "exit", message: "Only src/main.ts may exit the process." }
      ]
    }
  },
  {
    files: ["src/main.ts", "bench/**", "test/**", "eslint.config.js"],
    rules: { "no-restricted-properties": "off", "no-restricted-syntax": "off" }
  },
  {
    files: ["test/**"],
    rules: {
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
      "@typescript-eslint/no-unsafe-call": "off",
      "@typescript-eslint/no-unsafe-argument": "off",
      "@typescript-eslint/no-non-null-assertion": "off",
      // tap's t.test() returns a promise that tap itself tracks; async test bodies need no await.
      "@typescript-eslint/no-floating-promises": "off",
      "@typescript-eslint/require-await": "off"
    }
  },
  {
    files: ["eslint.config.js"],
    ...tseslint.configs.disableTypeChecked
  }
);
