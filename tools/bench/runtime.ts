/**
 * `npm run bench -- runtime [SECONDS]`: unary throughput and latency of NodeService.Echo
 * through the full Switchyard runtime (metrics interceptor, error boundary, async handler
 * wrapper, health and reflection registered) against a bare grpc-js server with the same
 * handler. Both servers run as child processes; one load generator (this process) drives
 * them in alternating rounds so drift hits both alike.
 */
import { startBareEcho, startBenchNode } from "./processes.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NodeServiceClient } from "../../gen/switchyard/node/v1/node_service.js";
import { dial } from "../../clients/grpc/channel.js";
import { unary } from "../../clients/grpc/call.js";
import { median, percentile, row, type BenchRow } from "./harness.js";

const CONCURRENCY = 64;
const PAYLOAD = Buffer.alloc(64, 7);



/** Drives `address` with CONCURRENCY outstanding calls for `ms`; returns rps and latencies. */
async function drive(address: string, ms: number): Promise<{ rps: number; lat: number[] }> {
  const client = dial(NodeServiceClient, address, { defaultDeadlineMs: 10_000 });
  // Warm up the connection.
  for (let i = 0; i < 200; i++) await unary(client, client.echo, { payload: PAYLOAD });
  const lat: number[] = [];
  const end = performance.now() + ms;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const t = performance.now();
      await unary(client, client.echo, { payload: PAYLOAD });
      lat.push(performance.now() - t);
      done++;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const elapsed = performance.now() - start;
  client.close();
  return { rps: (done * 1000) / elapsed, lat };
}

export default async function runtime(args: string[]): Promise<BenchRow[]> {
  const seconds = Number(args[0] ?? 12);
  const dir = mkdtempSync(join(tmpdir(), "switchyard-bench-"));
  const ours = await startBenchNode(dir, { node: { id: "bench-node", role: "bare" }, metrics: { listen: "127.0.0.1:0" } });
  const bare = await startBareEcho();
  try {
    const o = { rps: [] as number[], lat: [] as number[] };
    const b = { rps: [] as number[], lat: [] as number[] };
    // Many short alternating rounds: the ratio of medians is far steadier on a shared
    // 2-core machine than a few long rounds.
    const rounds = 12;
    for (let i = 0; i < rounds; i++) {
      // Alternate the order each round so neither side always runs first.
      const order = i % 2 === 0 ? [ours, bare] : [bare, ours];
      for (const target of order) {
        const r = await drive(target.address, (seconds * 1000) / rounds);
        const acc = target === ours ? o : b;
        acc.rps.push(r.rps);
        acc.lat.push(...r.lat);
      }
    }
    return [
      row("unary_rps", "calls/s", median(o.rps), median(b.rps), "bare grpc-js server, same handler", true),
      row("unary_p50_ms", "ms", percentile(o.lat, 50), percentile(b.lat, 50), "bare grpc-js server, same handler", false),
      row("unary_p99_ms", "ms", percentile(o.lat, 99), percentile(b.lat, 99), "bare grpc-js server, same handler", false),
    ];
  } finally {
    ours.child.kill("SIGTERM");
    bare.child.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}
