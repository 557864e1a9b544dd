/** `npm run bench -- NAME [ARGS...]`: runs one benchmark, prints a table, writes JSON. */
import { mkdirSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import Table from "cli-table3";
import { machine, type Benchmark } from "./harness.js";

const [name, ...args] = process.argv.slice(2);
const here = dirname(fileURLToPath(import.meta.url));
if (!name || !/^[a-z0-9-]+$/.test(name) || !existsSync(join(here, `${name}.js`))) {
  process.stderr.write(`usage: npm run bench -- NAME [ARGS...]\n${name ? `no benchmark named ${name}\n` : ""}`);
  process.exit(2);
}
const mod = (await import(pathToFileURL(join(here, `${name}.js`)).href)) as { default: Benchmark };
process.stdout.write(`benchmark ${name}: running (the anchor runs side by side in the same run)\n`);
const rows = await mod.default(args);
const fmt = (n: number): string => (Number.isFinite(n) ? (Math.abs(n) >= 100 ? n.toFixed(0) : n.toPrecision(3)) : String(n));
const table = new Table({ head: ["metric", "unit", "ours", "anchor", "anchor name", "ratio ours/anchor", "better"] });
for (const r of rows) table.push([r.metric, r.unit, fmt(r.ours), fmt(r.anchor), r.anchorName, fmt(r.ratio), r.higherIsBetter ? "higher" : "lower"]);
process.stdout.write(table.toString() + "\n");
const outDir = join(process.cwd(), "bench-results");
mkdirSync(outDir, { recursive: true });
const file = join(outDir, `${name}.json`);
writeFileSync(file, JSON.stringify({ name, rows, machine: machine() }, null, 2) + "\n");
process.stdout.write(`wrote ${file}\n`);
process.exit(0);
