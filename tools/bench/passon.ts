/**
 * `npm run bench -- passon [SECONDS]`: latency of an invoke served at the local vs passed on
 * one hop (center) and two hops (upper center) — the same echo module at each level — and
 * invocations/s of the sandboxed echo app at the local vs a bare grpc-js unary echo (the
 * anchor of the runtime benchmark), all in the same run. Nodes run as child processes.
 */
import { fork, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify as toYaml } from "yaml";
import { NodeServiceClient } from "../../gen/switchyard/node/v1/node_service.js";
import { dial } from "../../clients/grpc/channel.js";
import { unary } from "../../clients/grpc/call.js";
import { MaintenanceClient, PassonClient } from "../../clients/passon/index.js";
import { nodeEntryPoint } from "../cluster/launcher.js";
import { median, percentile, row, type BenchRow } from "./harness.js";

const CONCURRENCY = 64;
const PAYLOAD = Buffer.alloc(64, 7);

async function startNode(dir: string, id: string, role: string, section: string, cfg: Record<string, unknown>): Promise<{ child: ChildProcess; address: string }> {
  const file = join(dir, `${id}.yaml`);
  writeFileSync(file, toYaml({ node: { id, role, listen: "127.0.0.1:0", dataDir: join(dir, id) }, log: { level: "warn" }, metrics: { listen: "" }, [section]: cfg }));
  const child = fork(nodeEntryPoint(), ["--config", file], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const address = await new Promise<string>((resolve, reject) => {
    child.once("message", (m: { address: string }) => resolve(m.address));
    child.once("exit", (c) => reject(new Error(`${id} exited ${c}`)));
  });
  return { child, address };
}

async function startBare(): Promise<{ child: ChildProcess; address: string }> {
  const script = join(dirname(fileURLToPath(import.meta.url)), "bare-echo-server.js");
  const child = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<string>((resolve) => child.stdout?.once("data", (b: Buffer) => resolve(b.toString().trim())));
  return { child, address: `127.0.0.1:${port}` };
}

async function latencies(c: PassonClient, app: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await c.invoke(app, PAYLOAD);
    out.push(performance.now() - t);
  }
  return out;
}

async function rps(call: () => Promise<unknown>, ms: number): Promise<number> {
  for (let i = 0; i < 200; i++) await call();
  let done = 0;
  const end = performance.now() + ms;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < end) {
        await call();
        done++;
      }
    }),
  );
  return (done * 1000) / (performance.now() - start);
}

export default async function passon(args: string[]): Promise<BenchRow[]> {
  const seconds = Number(args[0] ?? 4);
  const dir = mkdtempSync(join(tmpdir(), "switchyard-bench-passon-"));
  const users = [{ name: "bench", password: "bench-pw", apps: ["*"] }];
  const procs: ChildProcess[] = [];
  try {
    const upper = await startNode(dir, "upper-b", "upper-center", "upperCenter", { apps: [{ app: "echo2", module: "demo:echo" }] });
    procs.push(upper.child);
    const center = await startNode(dir, "center-b", "center", "center", {
      parent: upper.address,
      users,
      apps: [{ app: "echo1", module: "demo:echo" }],
      provision: [{ node: "local-b", app: "echo", module: "demo:echo" }],
      statusInterval: "500ms",
    });
    procs.push(center.child);
    const local = await startNode(dir, "local-b", "local", "local", { parent: center.address, statusInterval: "500ms" });
    procs.push(local.child);
    const bare = await startBare();
    procs.push(bare.child);
    const m = new MaintenanceClient(center.address);
    for (let i = 0; i < 200; i++) {
      const c = (await m.children()).children.find((x) => x.nodeId === "local-b");
      if (c?.online && c.apps.some((a) => a.name === "echo") && c.delegationNotAfter) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    m.close();
    const user = new PassonClient(local.address);
    await user.signOn("bench", "bench-pw");
    for (const app of ["echo", "echo1", "echo2"]) await latencies(user, app, 100);
    const lat = { local: [] as number[], one: [] as number[], two: [] as number[] };
    for (let round = 0; round < 4; round++) {
      lat.local.push(...(await latencies(user, "echo", 300)));
      lat.one.push(...(await latencies(user, "echo1", 300)));
      lat.two.push(...(await latencies(user, "echo2", 300)));
    }
    const echo = dial(NodeServiceClient, bare.address, {});
    const ours: number[] = [];
    const anchor: number[] = [];
    for (let round = 0; round < 4; round++) {
      const slice = (seconds * 1000) / 8;
      if (round % 2 === 0) {
        ours.push(await rps(() => user.invoke("echo", PAYLOAD), slice));
        anchor.push(await rps(() => unary(echo, echo.echo, { payload: PAYLOAD }), slice));
      } else {
        anchor.push(await rps(() => unary(echo, echo.echo, { payload: PAYLOAD }), slice));
        ours.push(await rps(() => user.invoke("echo", PAYLOAD), slice));
      }
    }
    echo.close();
    user.close();
    const p50 = { local: percentile(lat.local, 50), one: percentile(lat.one, 50), two: percentile(lat.two, 50) };
    const perHop = (p50.two - p50.local) / 2;
    return [
      row("local_p50_ms", "ms", p50.local, p50.local, "local hit (itself)", false),
      row("local_p99_ms", "ms", percentile(lat.local, 99), percentile(lat.local, 99), "local hit (itself)", false),
      row("one_hop_p50_ms", "ms", p50.one, p50.local, "local hit, same run", false),
      row("one_hop_p99_ms", "ms", percentile(lat.one, 99), percentile(lat.local, 99), "local hit, same run", false),
      row("two_hop_p50_ms", "ms", p50.two, p50.local, "local hit, same run", false),
      row("two_hop_p99_ms", "ms", percentile(lat.two, 99), percentile(lat.local, 99), "local hit, same run", false),
      row("hop_overhead_p50_ms", "ms", perHop, 1, "target: 1 ms per hop", false),
      row("local_invoke_rps", "calls/s", median(ours), median(anchor), "bare grpc-js unary echo (runtime bench anchor)", true),
    ];
  } finally {
    for (const p of procs) p.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    rmSync(dir, { recursive: true, force: true });
  }
}
