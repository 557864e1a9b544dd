#!/usr/bin/env node
// Entry point of `npx switchyard`: runs the compiled CLI (build it with `npm run build`;
// `npm ci` builds it through the prepare script).
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const main = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "tools", "cli", "main.js");
if (!existsSync(main)) {
  process.stderr.write(`switchyard: ${main} is missing; run 'npm run build' in the checkout first\n`);
  process.exit(1);
}
await import(pathToFileURL(main).href);
