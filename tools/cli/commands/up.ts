/** `switchyard up`: run a whole cluster locally until Ctrl-C. */
import { join } from "node:path";
import type { Command } from "commander";
import Table from "cli-table3";
import { packageRoot } from "../../../servers/runtime/paths.js";
import { launchCluster } from "../../cluster/launcher.js";
import { resolveReferences } from "../../cluster/cluster-file.js";

/** The cluster `npm start` runs. */
export function defaultClusterFile(): string {
  return join(packageRoot(), "tools", "cluster", "default.yaml");
}

/** Registers `up`. */
export function registerUp(program: Command): void {
  program
    .command("up")
    .description("start every node of a cluster file, each its own process, until Ctrl-C")
    .option("--cluster <file>", "cluster file", defaultClusterFile())
    .option("--data <dir>", "data folder (node stores, logs, cluster.json)", "data")
    .action(async (opts: { cluster: string; data: string }) => {
      const started = Date.now();
      process.stdout.write(`Starting cluster from ${opts.cluster} (data in ${opts.data}/)\n`);
      // Ctrl-C while nodes are still starting stops the ones already up.
      const starting = new AbortController();
      const interrupt = (): void => starting.abort();
      process.once("SIGINT", interrupt);
      process.once("SIGTERM", interrupt);
      let cluster;
      try {
        cluster = await launchCluster({ clusterFile: opts.cluster, dataRoot: opts.data, signal: starting.signal });
      } catch (err) {
        process.stderr.write(`switchyard up: ${(err as Error).message}\n`);
        process.exitCode = 1;
        return;
      }
      process.removeListener("SIGINT", interrupt);
      process.removeListener("SIGTERM", interrupt);
      const table = new Table({ head: ["node", "role", "gRPC address", "metrics", "pid"] });
      for (const n of cluster.nodes.values()) {
        table.push([n.id, n.role, n.address, n.metricsPort ? `http://127.0.0.1:${n.metricsPort}/metrics` : "-", String(n.pid)]);
      }
      process.stdout.write(`\n${table.toString()}\n`);
      process.stdout.write(`\nAll ${cluster.nodes.size} nodes serving after ${((Date.now() - started) / 1000).toFixed(1)} s. Logs: ${opts.data}/<node>/node.log\n`);
      const addresses = new Map([...cluster.nodes.values()].map((n) => [n.id, n.address]));
      const tips = ["npx switchyard status", ...resolveReferences(cluster.file.tips, addresses)];
      process.stdout.write(`\nTry:\n${tips.map((t) => `  ${t}`).join("\n")}\n\nPress Ctrl-C to stop.\n`);

      let stopping = false;
      const shutdown = (why: string): void => {
        if (stopping) return;
        stopping = true;
        process.stdout.write(`\n${why}: stopping ${cluster.nodes.size} nodes...\n`);
        cluster.stop().then(() => {
          process.stdout.write("All nodes stopped.\n");
          process.exit(0);
        });
      };
      process.on("SIGINT", () => shutdown("Ctrl-C"));
      process.on("SIGTERM", () => shutdown("SIGTERM"));
      cluster.crashed.then((c) => {
        if (stopping) return;
        const why = c.signal ? `signal ${c.signal}` : `exit code ${c.code}`;
        process.stderr.write(`\n✗ node ${c.id} exited unexpectedly (${why}); see ${opts.data}/${c.id}/node.log. The other nodes keep running.\n`);
      });
    });
}
