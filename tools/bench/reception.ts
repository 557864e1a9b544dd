/**
 * `npm run bench -- reception [SECONDS]`:
 * - orders_rps / orders_p99_ms: PlaceOrder through a reception (mint + notice to a
 *   content server over its stream) vs a bare grpc-js unary echo server, same run,
 *   12 alternating rounds, 64 calls outstanding; orders_rps is the median of the
 *   per-round ratios times the median anchor rate.
 * - orders_cpu_us: CPU time per order of every process involved (load generator,
 *   reception, content server; from process.cpuUsage() and /proc/PID/stat) vs the same
 *   for the echo (load generator, bare server): a figure that other load on the machine
 *   disturbs much less than the rates.
 * - ticket_verify_per_core: TicketVerifier.verify (parse, AES-256-GCM open, claims
 *   decode, window and client checks) on one thread vs a raw AES-256-GCM open of the same
 *   bytes.
 * - wait_estimate_p50_error / p90_error: in a saturation run (2 servers × capacity 2,
 *   3× as many clients, rate-limited serving), |first estimate − actual wait| / actual
 *   for every client that had to wait, the actual wait counted from the moment the
 *   estimate arrived to admission; anchor: the 25 % target.
 */
import { startBareEcho, startBenchNode } from "./processes.js";
import { createDecipheriv, createSecretKey, randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NodeServiceClient } from "../../gen/switchyard/node/v1/node_service.js";
import { dial } from "../../clients/grpc/channel.js";
import { unary } from "../../clients/grpc/call.js";
import { order, ReceptionClient } from "../../clients/reception/index.js";
import { deriveServerKey, parseToken, TicketMinter, TicketVerifier } from "../../servers/reception/index.js";
import { median, percentile, row, type BenchRow } from "./harness.js";

const CONCURRENCY = 64;



/** CPU time (user + system) of a child process so far, in µs; 0 where /proc is missing. */
function childCpuUs(pid: number | undefined): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    return (Number(f[11]) + Number(f[12])) * 10_000; // clock ticks of 10 ms
  } catch {
    return 0;
  }
}

async function drive(call: () => Promise<unknown>, ms: number, pids: (number | undefined)[]): Promise<{ rps: number; lat: number[]; cpuUs: number }> {
  for (let i = 0; i < 200; i++) await call();
  const cpuOf = (): number => {
    let t = 0;
    for (const p of pids) t += childCpuUs(p);
    return t;
  };
  const cpu0 = cpuOf();
  const own0 = process.cpuUsage();
  const lat: number[] = [];
  const end = performance.now() + ms;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const t = performance.now();
      await call();
      lat.push(performance.now() - t);
      done++;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const wall = performance.now() - start;
  const own = process.cpuUsage(own0);
  const cpu = cpuOf() - cpu0 + own.user + own.system;
  return { rps: (done * 1000) / wall, lat, cpuUs: cpu / Math.max(1, done) };
}

function verifyRate(ms: number): { ours: number; raw: number } {
  const master = randomBytes(32);
  const minter = new TicketMinter([{ id: "k1", secret: master }], "k1");
  const verifier = new TicketVerifier("content-1", [{ id: "k1", secret: deriveServerKey(master, "k1", "content-1") }]);
  const now = Date.now();
  const token = minter.mint({ ticketId: randomUUID(), clientId: "bench-client", clientAddress: "10.1.2.3", serverId: "content-1", contentLocation: "hello.txt", notBefore: new Date(now - 1000), notAfter: new Date(now + 3_600_000), issuer: "reception-1" });
  const by = { clientId: "bench-client", clientAddress: "10.1.2.3" };
  const p = parseToken(token);
  const key = createSecretKey(deriveServerKey(master, "k1", "content-1"));
  const loop = (fn: () => void): number => {
    for (let i = 0; i < 2000; i++) fn();
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < ms) {
      for (let i = 0; i < 500; i++) fn();
      n += 500;
    }
    return (n * 1000) / (performance.now() - t0);
  };
  const ours = loop(() => void verifier.verify(token, by));
  const raw = loop(() => {
    const d = createDecipheriv("aes-256-gcm", key, p.nonce);
    d.setAAD(p.aad);
    d.setAuthTag(p.tag);
    d.update(p.ciphertext);
    d.final();
  });
  return { ours, raw };
}

async function saturation(dir: string, master: Buffer): Promise<number[]> {
  const reception = await startBenchNode(dir, { node: { id: "reception-s", role: "reception" }, reception: { masterKeys: [{ id: "k1", secret: master.toString("hex") }], staleAfter: "2s" } });
  const servers = [];
  for (const id of ["content-s1", "content-s2"]) {
    servers.push(
      await startBenchNode(dir, {
        node: { id, role: "content-server" },
        contentServer: { receptions: [reception.address], capacity: 2, ticketKeys: [{ id: "k1", secret: deriveServerKey(master, "k1", id).toString("hex") }], reportInterval: "300ms", serveBytesPerSecond: "64KiB", chunkBytes: "4KiB", seed: [{ itemId: "slow.bin", kind: "binary", bytes: 48 * 1024 }] },
      }),
    );
  }
  try {
    const rc = new ReceptionClient(reception.address);
    for (let i = 0; i < 100; i++) {
      if ((await rc.listServers()).filter((s) => s.load).length === 2) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    rc.close();
    const errors: number[] = [];
    const runs: Promise<void>[] = [];
    for (let i = 0; i < 24; i++) {
      runs.push(
        order({ reception: reception.address, itemId: "slow.bin", clientId: `c${i}`, sink: () => undefined }).then((r) => {
          // The estimate counts from the moment it was given: the actual wait is measured
          // from then to admission (not including connection setup and the first call).
          const actual = r.waitedMs - (r.firstEstimateAtMs ?? 0);
          if (r.firstEstimateMs !== undefined && actual > 0) errors.push(Math.abs(r.firstEstimateMs - actual) / actual);
        }),
      );
      await new Promise((r) => setTimeout(r, 20));
    }
    await Promise.all(runs);
    return errors;
  } finally {
    for (const n of [reception, ...servers]) n.child.kill("SIGTERM");
  }
}

export default async function reception(args: string[]): Promise<BenchRow[]> {
  const seconds = Number(args[0] ?? 12);
  const dir = mkdtempSync(join(tmpdir(), "switchyard-bench-reception-"));
  const master = randomBytes(32);
  const r = await startBenchNode(dir, { node: { id: "reception-b", role: "reception" }, reception: { masterKeys: [{ id: "k1", secret: master.toString("hex") }], ticketTtl: "3s" } });
  const cs = await startBenchNode(dir, { node: { id: "content-b", role: "content-server" }, contentServer: { receptions: [r.address], capacity: 1_000_000, ticketKeys: [{ id: "k1", secret: deriveServerKey(master, "k1", "content-b").toString("hex") }], seed: [{ itemId: "hello.txt", kind: "text", bytes: 1000 }] } });
  const bare = await startBareEcho();
  try {
    const rc = new ReceptionClient(r.address);
    for (let i = 0; i < 100; i++) {
      if ((await rc.listServers())[0]?.load) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    const echo = dial(NodeServiceClient, bare.address);
    const payload = Buffer.alloc(64, 7);
    let n = 0;
    const o = { rps: [] as number[], lat: [] as number[], cpu: [] as number[] };
    const b = { rps: [] as number[], lat: [] as number[], cpu: [] as number[] };
    const rounds = 12;
    for (let i = 0; i < rounds; i++) {
      const sides: ["o" | "b", () => Promise<unknown>, (number | undefined)[]][] = [
        ["o", () => rc.placeOrder({ itemId: "hello.txt", clientId: `client-${n++ % 1000}` }), [r.child.pid, cs.child.pid]],
        ["b", () => unary(echo, echo.echo, { payload }), [bare.child.pid]],
      ];
      if (i % 2) sides.reverse();
      for (const [side, call, pids] of sides) {
        const res = await drive(call, (seconds * 1000) / rounds, pids);
        const acc = side === "o" ? o : b;
        acc.rps.push(res.rps);
        acc.lat.push(...res.lat);
        acc.cpu.push(res.cpuUs);
      }
    }
    const ratio = median(o.rps.map((x, i) => x / (b.rps[i] as number)));
    rc.close();
    echo.close();
    const v = verifyRate(1500);
    const errs = await saturation(dir, master);
    return [
      row("orders_rps", "orders/s", ratio * median(b.rps), median(b.rps), "bare grpc-js unary echo, same run", true),
      row("orders_p99_ms", "ms", percentile(o.lat, 99), percentile(b.lat, 99), "bare grpc-js unary echo, same run", false),
      row("orders_cpu_us", "µs CPU/order", median(o.cpu), median(b.cpu), "bare grpc-js unary echo, all processes", false),
      row("ticket_verify_per_core", "verifies/s", v.ours, v.raw, "raw AES-256-GCM open of the same token", true),
      row("wait_estimate_p50_error", "fraction", percentile(errs, 50), 0.25, "target 25%", false),
      row("wait_estimate_p90_error", "fraction", percentile(errs, 90), 0.25, "target 25%", false),
    ];
  } finally {
    for (const n of [r, cs, bare]) n.child.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}
