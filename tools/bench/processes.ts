/** Child processes the benchmarks measure: Switchyard nodes and the bare grpc-js echo anchor. */
import { fork, spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify as toYaml } from "yaml";
import { roleV8Flags } from "../../servers/roles.js";
import { nodeEntryPoint } from "../cluster/launcher.js";

/** A started child process and the gRPC address it serves. */
export interface BenchProcess {
  child: ChildProcess;
  address: string;
}

/**
 * Starts one node from the compiled build. `config` is a node configuration with at least
 * `node.id` and `node.role`; defaults: port 0, data under `dir/<id>`, warn-level logs, no
 * metrics endpoint. `execArgv` goes to the node process (e.g. --cpu-prof).
 */
export async function startBenchNode(dir: string, config: Record<string, unknown>, execArgv: string[] = []): Promise<BenchProcess> {
  const id = (config["node"] as { id: string }).id;
  const file = join(dir, `${id}.yaml`);
  writeFileSync(
    file,
    toYaml({ log: { level: "warn" }, metrics: { listen: "" }, ...config, node: { listen: "127.0.0.1:0", dataDir: join(dir, id), ...(config["node"] as object) } }),
  );
  // With the role's V8 options, as `switchyard up` starts it.
  const role = String((config["node"] as { role?: string }).role ?? "");
  const child = fork(nodeEntryPoint(), ["--config", file], { stdio: ["ignore", "inherit", "inherit", "ipc"], execArgv: [...process.execArgv, ...roleV8Flags(role), ...execArgv] });
  const address = await new Promise<string>((resolve, reject) => {
    child.once("message", (m: { address: string }) => resolve(m.address));
    child.once("exit", (c) => reject(new Error(`${id} exited ${c}`)));
  });
  return { child, address };
}

/** Starts the bare grpc-js server with NodeService.Echo only (the unary anchor). */
export async function startBareEcho(): Promise<BenchProcess> {
  const script = join(dirname(fileURLToPath(import.meta.url)), "bare-echo-server.js");
  const child = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<string>((resolve, reject) => {
    child.stdout?.once("data", (b: Buffer) => resolve(b.toString().trim()));
    child.once("exit", (c) => reject(new Error(`bare echo server exited ${c}`)));
  });
  return { child, address: `127.0.0.1:${port}` };
}
