#!/usr/bin/env node
/**
 * Lean entry point of one node process: `node dist/servers/node-entry.js --config FILE`.
 * The launcher forks this instead of the full CLI so that a node loads only the runtime and
 * its own role, not every subsystem's CLI commands; `switchyard node` does the same thing.
 */
import { runNode } from "./main.js";

const args = process.argv.slice(2);
const at = args.indexOf("--config");
const file = at >= 0 ? args[at + 1] : undefined;
if (!file) {
  process.stderr.write("usage: node-entry.js --config FILE\n");
  process.exit(2);
}
process.exit(await runNode(file));
