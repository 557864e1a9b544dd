/** `switchyard status`: health and load of every node in a table. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import Table from "cli-table3";
import { NodeClient, ServingStatus } from "../../../clients/node/index.js";
import { describeError } from "../../../clients/grpc/call.js";
import type { ClusterEntry } from "../../cluster/launcher.js";
import { clientSettings } from "../settings.js";

function humanBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

/** Targets from --target or from the running cluster's cluster.json. */
function targets(opts: { target?: string[]; data: string }): { id: string; address: string }[] {
  if (opts.target?.length) return opts.target.map((t) => ({ id: "?", address: t }));
  const file = join(opts.data, "cluster.json");
  try {
    const state = JSON.parse(readFileSync(file, "utf8")) as { nodes: ClusterEntry[] };
    return state.nodes;
  } catch {
    throw new Error(`no running cluster found (${file} is missing): start one with 'npm start' or pass --target HOST:PORT`);
  }
}

/** Registers `status`. */
export function registerStatus(program: Command): void {
  program
    .command("status")
    .description("show every node's health and load")
    .option("--target <host:port...>", "nodes to ask (default: the cluster started by 'switchyard up')")
    .option("--data <dir>", "data folder of 'switchyard up'", "data")
    .option("--json", "print JSON instead of a table")
    .action(async (opts: { target?: string[]; data: string; json?: boolean }) => {
      const list = targets(opts);
      const rows = await Promise.all(
        list.map(async (t) => {
          const c = new NodeClient(t.address, clientSettings());
          const deadline = Date.now() + 3000;
          try {
            const [health, info, load] = await Promise.all([c.check("", { deadline }), c.info({ deadline }), c.load({ deadline })]);
            return { id: info.nodeId, role: info.role, address: t.address, health: ServingStatus[health] ?? String(health), info, load };
          } catch (err) {
            return { id: t.id, role: "?", address: t.address, health: "UNREACHABLE", error: describeError(err) };
          } finally {
            c.close();
          }
        }),
      );
      if (opts.json) {
        process.stdout.write(JSON.stringify(rows, (_, v: unknown) => (typeof v === "bigint" ? Number(v) : v), 2) + "\n");
      } else {
        const table = new Table({ head: ["node", "role", "address", "health", "calls", "conns", "cpu", "rss", "util", "uptime", "role figures"] });
        for (const r of rows) {
          if (!("load" in r) || !r.load) {
            table.push([r.id, r.role, r.address, r.health, { colSpan: 7, content: "error" in r ? (r.error ?? "") : "" }]);
            continue;
          }
          const l = r.load;
          const figures = Object.entries(l.roleFigures).map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toFixed(2)}`).join(" ");
          const up = r.info.uptime ? Number(r.info.uptime.seconds) * 1000 : 0;
          table.push([r.id, r.role, r.address, r.health, l.activeCalls, l.connections, l.cpuCores.toFixed(2), humanBytes(Number(l.memoryRssBytes)), `${Math.round(l.utilization * 100)}%`, humanDuration(up), figures]);
        }
        process.stdout.write(table.toString() + "\n");
      }
      if (rows.some((r) => r.health !== "SERVING")) process.exitCode = 1;
    });
}
