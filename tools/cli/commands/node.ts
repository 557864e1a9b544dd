/** `switchyard node --config FILE`: run one node (the way a cluster spreads over machines). */
import type { Command } from "commander";
import { runNode } from "../../../servers/main.js";
import { roleSummaries } from "../../../servers/roles.js";

/** Registers `node` and `roles`. */
export function registerNode(program: Command): void {
  program
    .command("node")
    .description("run one node from a YAML config file (env SWITCHYARD_<SECTION>__<KEY> overrides)")
    .requiredOption("--config <file>", "node configuration file")
    .action(async (opts: { config: string }) => {
      const code = await runNode(opts.config);
      process.exit(code);
    });
  program
    .command("roles")
    .description("list the roles a node can run")
    .action(() => {
      for (const r of roleSummaries()) process.stdout.write(`${r.role.padEnd(18)} ${r.summary}\n`);
    });
}
