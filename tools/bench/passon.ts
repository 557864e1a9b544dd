/**
 * `npm run bench -- passon [SECONDS] [CALLS_PER_ROUND]`: latency of an invoke served at the
 * local vs passed on one hop (center) and two hops (upper center) — the same echo module at
 * each level — with the CPU the nodes spend per hop, and
 * invocations/s of the sandboxed echo app at the local vs a bare grpc-js unary echo (the
 * anchor of the runtime benchmark), all in the same run. Nodes run as child processes.
 *
 * Fairness: one load generator (this process) drives both sides with the same concurrency
 * and the same payload, in many short rounds whose order alternates; rows are medians over
 * rounds. Latency rounds also alternate the order of local / one hop / two hops. On Linux the
 * CPU time per call of the servers (from /proc/<pid>/stat: the pass-on nodes together vs the
 * bare server) is reported too: it hardly depends on how busy the machine is.
 */
import { startBareEcho, startBenchNode, type BenchProcess } from "./processes.js";
import { readFileSync } from "node:fs";
import { type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NodeServiceClient } from "../../gen/switchyard/node/v1/node_service.js";
import { dial } from "../../clients/grpc/channel.js";
import { unary } from "../../clients/grpc/call.js";
import { MaintenanceClient, PassonClient } from "../../clients/passon/index.js";
import { median, percentile, row, type BenchRow } from "./harness.js";

const CONCURRENCY = 64;
const PAYLOAD = Buffer.alloc(64, 7);



/** A pass-on node with its role section. */
function startNode(dir: string, id: string, role: string, section: string, cfg: Record<string, unknown>): Promise<BenchProcess> {
  return startBenchNode(dir, { node: { id, role }, [section]: cfg });
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

/** CPU time (user + system, all threads) of a process in ms, or NaN where /proc is unavailable. */
function cpuMs(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // clock ticks at USER_HZ 100
  } catch {
    return NaN;
  }
}

/** Drives `call` with CONCURRENCY calls in flight for `ms`; returns calls/s and the CPU µs per call of `servers`. */
async function rps(call: () => Promise<unknown>, ms: number, servers: ChildProcess[]): Promise<{ rps: number; cpuUs: number }> {
  for (let i = 0; i < 50; i++) await call();
  const cpu0 = servers.reduce((t, p) => t + cpuMs(p.pid), 0);
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
  const elapsed = performance.now() - start;
  const cpu = servers.reduce((t, p) => t + cpuMs(p.pid), 0) - cpu0;
  return { rps: (done * 1000) / elapsed, cpuUs: (cpu * 1000) / done };
}

export default async function passon(args: string[]): Promise<BenchRow[]> {
  const seconds = Number(args[0] ?? 12);
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
    const bare = await startBareEcho();
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
    const echo = dial(NodeServiceClient, bare.address, {});
    for (const app of ["echo", "echo1", "echo2"]) await latencies(user, app, 100);
    for (let i = 0; i < 100; i++) await unary(echo, echo.echo, { payload: PAYLOAD });
    const lat = { local: [] as number[], one: [] as number[], two: [] as number[] };
    // CPU of the three pass-on nodes per sequential call, per level (ms, calls).
    const seqCpu = { local: { ms: 0, calls: 0 }, one: { ms: 0, calls: 0 }, two: { ms: 0, calls: 0 } };
    const bareLat: number[] = [];
    const bareCpu = { ms: 0, calls: 0 };
    const nodes = [upper.child, center.child, local.child];
    const perRound = Math.max(20, Math.round(Number(args[1] ?? 150)));
    for (let round = 0; round < 8; round++) {
      const order = round % 2 === 0 ? (["local", "one", "two"] as const) : (["two", "one", "local"] as const);
      for (const k of order) {
        const c0 = nodes.reduce((t, p) => t + cpuMs(p.pid), 0);
        lat[k].push(...(await latencies(user, k === "local" ? "echo" : k === "one" ? "echo1" : "echo2", perRound)));
        seqCpu[k].ms += nodes.reduce((t, p) => t + cpuMs(p.pid), 0) - c0;
        seqCpu[k].calls += perRound;
      }
      // The bare unary round trip, sequential too: what one hop costs at the least.
      const b0 = cpuMs(bare.child.pid);
      for (let i = 0; i < perRound; i++) {
        const t = performance.now();
        await unary(echo, echo.echo, { payload: PAYLOAD });
        bareLat.push(performance.now() - t);
      }
      bareCpu.ms += cpuMs(bare.child.pid) - b0;
      bareCpu.calls += perRound;
    }
    const ours: number[] = [];
    const anchor: number[] = [];
    const oursCpu: number[] = [];
    const anchorCpu: number[] = [];
    const rounds = 12;
    const slice = (seconds * 1000) / (2 * rounds);
    const runOurs = async (): Promise<void> => {
      const r = await rps(() => user.invoke("echo", PAYLOAD), slice, nodes);
      ours.push(r.rps);
      oursCpu.push(r.cpuUs);
    };
    const runAnchor = async (): Promise<void> => {
      const r = await rps(() => unary(echo, echo.echo, { payload: PAYLOAD }), slice, [bare.child]);
      anchor.push(r.rps);
      anchorCpu.push(r.cpuUs);
    };
    for (let round = 0; round < rounds; round++) {
      if (round % 2 === 0) {
        await runOurs();
        await runAnchor();
      } else {
        await runAnchor();
        await runOurs();
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
      row("bare_unary_p50_ms", "ms", percentile(bareLat, 50), p50.local, "local hit, same run", false),
      ...(Number.isFinite(seqCpu.two.ms)
        ? [
            row(
              "hop_server_cpu_us",
              "µs/call",
              ((seqCpu.two.ms / seqCpu.two.calls - seqCpu.local.ms / seqCpu.local.calls) * 1000) / 2,
              (bareCpu.ms * 1000) / bareCpu.calls,
              "bare grpc-js server CPU per sequential echo",
              false,
            ),
          ]
        : []),
      row("local_invoke_rps", "calls/s", median(ours), median(anchor), "bare grpc-js unary echo (runtime bench anchor)", true),
      ...(Number.isFinite(median(oursCpu))
        ? [row("local_invoke_server_cpu_us", "µs/call", median(oursCpu), median(anchorCpu), "bare grpc-js server CPU per echo", false)]
        : []),
    ];
  } finally {
    for (const p of procs) p.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    rmSync(dir, { recursive: true, force: true });
  }
}
