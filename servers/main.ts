/**
 * Runs one node process: load config, start the role, stop in stages on SIGINT/SIGTERM
 * (or when the launcher that spawned it goes away), exit non-zero on a bad config.
 */
import { ConfigError, loadNodeConfig, rawRole, readRawConfig } from "./runtime/config.js";
import { startNode, type RunningNode } from "./runtime/node.js";
import { loadRole, roleNames, roleSchemasFor } from "./roles.js";

/** Message a node sends its launcher over IPC once it serves. */
export interface ReadyMessage {
  type: "ready";
  id: string;
  role: string;
  address: string;
  metricsPort: number | undefined;
  pid: number;
}

/** Starts the node described by `configFile`; resolves when it has stopped. */
export async function runNode(configFile: string, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let node: RunningNode;
  try {
    const raw = readRawConfig({ file: configFile, env });
    const config = loadNodeConfig({ raw, file: configFile }, await roleSchemasFor(rawRole(raw)), roleNames());
    const role = await loadRole(config.node.role);
    if (!role) throw new ConfigError(`unknown role ${config.node.role}`);
    node = await startNode(config, role);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`switchyard node: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`switchyard node: failed to start: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  }
  const stop = (reason: string): void => {
    node.stop(reason).then(
      () => process.exit(0),
      (err: unknown) => {
        node.log.fatal({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.once("SIGINT", () => stop("SIGINT"));
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.on("uncaughtException", (err) => {
    node.log.fatal({ err }, "uncaught exception; exiting");
    process.exit(70);
  });
  process.on("unhandledRejection", (err) => {
    node.log.fatal({ err }, "unhandled rejection; exiting");
    process.exit(70);
  });
  if (process.send) {
    // Spawned by `switchyard up`: report readiness and stop if the launcher disappears.
    const ready: ReadyMessage = {
      type: "ready",
      id: node.config.node.id,
      role: node.config.node.role,
      address: node.advertisedAddress,
      metricsPort: node.metricsPort,
      pid: process.pid,
    };
    process.send(ready);
    process.once("disconnect", () => stop("launcher went away"));
  }
  return new Promise<number>(() => undefined); // runs until a signal ends the process
}
