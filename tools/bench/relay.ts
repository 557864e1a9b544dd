/**
 * `npm run bench -- relay [SUBSCRIBERS] [SECONDS] [INTERVAL_MS]`: 1 source → 1 relay →
 * SUBSCRIBERS (default 1000) subscribers of a ticker stream of 1 KiB frames (one every
 * INTERVAL_MS, default 10 ms), against the same subscribers attached directly to the
 * source, in the same run. Source and relay are child processes of the compiled build;
 * the subscribers live in this process.
 *
 * Rows:
 *  - source_egress: bytes/s the source sends with the relay in place (ours) vs the bytes/s
 *    of one subscriber's stream (a probe subscribed directly at the same time);
 *  - direct_egress: the same egress (ours) vs the source's egress when the subscribers
 *    are attached to it directly;
 *  - deliveries_per_s: frames/s received by all subscribers via the relay vs directly;
 *  - added_p99_ms: p99 source→subscriber latency via the relay minus the probe's p99 in
 *    the same window (ours), vs the probe's p99 (the direct baseline it adds to).
 */
import { fork, type ChildProcess } from "node:child_process";
import type { ClientReadableStream } from "@grpc/grpc-js";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify as toYaml } from "yaml";
import { decodeEvent, StreamSourceClient } from "../../clients/relay/index.js";
import { nodeEntryPoint } from "../cluster/launcher.js";
import { percentile, row, type BenchRow } from "./harness.js";

const STREAM = "bench";

async function startNode(dir: string, config: Record<string, unknown>): Promise<{ child: ChildProcess; address: string }> {
  const id = (config["node"] as { id: string }).id;
  const file = join(dir, `${id}.yaml`);
  writeFileSync(file, toYaml({ log: { level: "warn" }, metrics: { listen: "" }, ...config, node: { listen: "127.0.0.1:0", dataDir: join(dir, id), ...(config["node"] as object) } }));
  const child = fork(nodeEntryPoint(), ["node", "--config", file], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const address = await new Promise<string>((resolve, reject) => {
    child.once("message", (m: { address: string }) => resolve(m.address));
    child.once("exit", (c) => reject(new Error(`${id} exited ${c}`)));
  });
  return { child, address };
}

interface Meter {
  frames: number;
  bytes: number;
  latencies: number[];
  measuring: boolean;
}

/** Opens `n` subscriptions to `target` spread over several connections. */
function subscribeMany(target: string, n: number, meter: Meter): { close(): void; started: Promise<void> } {
  const channels = Math.max(1, Math.min(8, Math.ceil(n / 125)));
  const clients = Array.from({ length: channels }, () => new StreamSourceClient(target, { extra: { "grpc.use_local_subchannel_pool": 1 } }));
  const calls: ClientReadableStream<Buffer>[] = [];
  const starts: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const call = (clients[i % channels] as StreamSourceClient).subscribeRaw(STREAM, { subscriberId: `bench-${i}` });
    starts.push(new Promise<void>((resolve, reject) => {
      call.once("data", () => resolve());
      call.once("error", reject);
    }));
    call.on("data", (buf: Buffer) => {
      // Field 2 (frame), length-delimited: tag byte 0x12. Only a sample is decoded, to
      // keep this process (which hosts every subscriber) from being the bottleneck.
      if (!meter.measuring || buf[0] !== 0x12) return;
      meter.frames++;
      meter.bytes += buf.length;
      if ((meter.frames & 15) === 0) {
        const ev = decodeEvent(buf);
        if (ev.type === "frame" && ev.frame.publishedAt) meter.latencies.push(Date.now() - ev.frame.publishedAt.getTime());
      }
    });
    call.on("error", () => undefined);
    calls.push(call);
  }
  return {
    started: Promise.all(starts).then(() => undefined),
    close: () => {
      for (const c of calls) c.cancel();
      for (const c of clients) c.close();
    },
  };
}

async function egress(client: StreamSourceClient): Promise<number> {
  const s = (await client.listStreams()).find((x) => x.name === STREAM);
  return Number(s?.deliveredBytes ?? 0);
}

const newMeter = (): Meter => ({ frames: 0, bytes: 0, latencies: [], measuring: false });

/** Measures for `ms`: meters on, source egress before/after. */
async function window(ms: number, src: StreamSourceClient, meters: Meter[]): Promise<{ seconds: number; egressBytes: number }> {
  const e0 = await egress(src);
  const t0 = performance.now();
  meters.forEach((m) => (m.measuring = true));
  await new Promise((r) => setTimeout(r, ms));
  meters.forEach((m) => (m.measuring = false));
  const seconds = (performance.now() - t0) / 1000;
  const e1 = await egress(src);
  return { seconds, egressBytes: e1 - e0 };
}

export default async function relayBench(args: string[]): Promise<BenchRow[]> {
  const subscribers = Number(args[0] ?? 1000);
  const seconds = Number(args[1] ?? 10);
  const intervalMs = Number(args[2] ?? 10);
  const dir = mkdtempSync(join(tmpdir(), "switchyard-bench-relay-"));
  const source = await startNode(dir, {
    node: { id: "bench-source", role: "stream-source" },
    streamSource: { generators: [{ kind: "ticker", name: STREAM, interval: intervalMs, payloadBytes: 1024 }], maxBufferedFrames: 4096 },
  });
  const relay = await startNode(dir, {
    node: { id: "bench-relay", role: "relay" },
    relay: { upstream: source.address, linger: "1s", maxBufferedFrames: 4096 },
  });
  const src = new StreamSourceClient(source.address);
  try {
    // Ours: subscribers at the relay, one probe directly at the source.
    const viaMeter = newMeter();
    const probeMeter = newMeter();
    const via = subscribeMany(relay.address, subscribers, viaMeter);
    const probe = subscribeMany(source.address, 1, probeMeter);
    await Promise.all([via.started, probe.started]);
    await new Promise((r) => setTimeout(r, 1000)); // warm up
    const ours = await window(seconds * 1000, src, [viaMeter, probeMeter]);
    via.close();
    probe.close();
    // Anchor: the same subscribers attached directly to the source.
    await new Promise((r) => setTimeout(r, 1500)); // the relay's upstream lingers out
    const directMeter = newMeter();
    const direct = subscribeMany(source.address, subscribers, directMeter);
    await direct.started;
    await new Promise((r) => setTimeout(r, 1000));
    const anchor = await window(seconds * 1000, src, [directMeter]);
    direct.close();

    const relayEgress = (ours.egressBytes - probeMeter.bytes) / ours.seconds;
    const oneStream = probeMeter.bytes / ours.seconds;
    const directEgress = anchor.egressBytes / anchor.seconds;
    const p99Via = percentile(viaMeter.latencies, 99);
    const p99Probe = percentile(probeMeter.latencies, 99);
    const note = `${subscribers} subscribers, 1 KiB frames every ${intervalMs} ms`;
    return [
      row("source_egress", "bytes/s", relayEgress, oneStream, `one subscriber's stream (${note})`, false),
      row("direct_egress", "bytes/s", relayEgress, directEgress, `same subscribers attached to the source`, false),
      row("deliveries_per_s", "frames/s", viaMeter.frames / ours.seconds, directMeter.frames / anchor.seconds, "same subscribers attached to the source", true),
      row("added_p99_ms", "ms", p99Via - p99Probe, p99Probe, "p99 of a direct subscriber, same window", false),
      row("p99_via_relay_ms", "ms", p99Via, percentile(directMeter.latencies, 99), "p99 with the subscribers attached to the source", false),
    ];
  } finally {
    src.close();
    relay.child.kill("SIGTERM");
    source.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    rmSync(dir, { recursive: true, force: true });
  }
}
