/**
 * `npm run bench -- relay [SUBSCRIBERS] [SECONDS] [INTERVAL_MS] [PROCESSES] [LADDER]`: 1 source →
 * 1 relay → SUBSCRIBERS (default 1000) subscribers of a ticker stream of 1 KiB frames, one
 * every INTERVAL_MS (default 8 ms: ≈125 frames/s, so ≈125,000 deliveries/s are *offered*,
 * more than the 100,000/s target; at 10 ms the offered load is exactly 100,000/s and the
 * delivered rate could never show headroom), against the same subscribers attached
 * directly to the source, in the same run. Source and relay are child processes of the
 * compiled build; the subscribers live in PROCESSES (default 4) subscriber hosts
 * (relay-subscribers.ts). Each measuring window starts WARMUP_MS after the last
 * subscription started (the nodes' heaps have settled after 1,000 calls were set up).
 *
 * Rows:
 *  - source_egress: bytes/s the source sends with the relay in place (ours) vs the bytes/s
 *    of one subscriber's stream (a probe subscribed directly at the same time);
 *  - direct_egress: the same egress (ours) vs the source's egress when the subscribers
 *    are attached to it directly;
 *  - offered_deliveries_per_s: frames published in the window × subscribers, per second;
 *  - deliveries_per_s: frames/s received by all subscribers via the relay vs directly;
 *  - lost_deliveries: frames the subscribers were told they missed (Gap), via relay vs directly;
 *  - added_p99_ms / added_p50_ms: per frame, its arrival at a subscriber via the relay
 *    minus its arrival (same sequence) at the probe subscribed directly, p99 / median over
 *    the window (ours), vs the probe's own p99 / median source→subscriber latency;
 *  - cpu_us_per_delivery: CPU time of the relay process per frame delivered (ours) vs the
 *    source process per frame delivered directly: what a delivery costs, whatever share of
 *    the machine the run got (1e6 / it = deliveries per second per core);
 *  - host_cpu_share: CPU of the subscriber hosts (the benchmark's own client side), in
 *    cores: with 2 cores, a client side near 1 core would measure itself, not the relay;
 *  - p99_via_relay_ms: source→subscriber p99 via the relay vs directly;
 *  - frames_per_message: how many frames a gRPC message carried (batches).
 * A fifth argument LADDER (comma-separated ticker intervals in ms, e.g. 6,4,3,2) adds a
 * saturation ladder after the main run: per step a fresh source and relay, the offered
 * and delivered rates, loss, added p99, frames per message and relay CPU per delivery,
 * and max_sustained_deliveries_per_s, the highest delivered rate of a step without loss.
 * Environment: RELAY_BENCH_PROF=DIR (CPU profiles of every child), RELAY_BENCH_NODE_ARGS
 * (extra node flags for every child, e.g. --trace-gc), RELAY_BENCH_PUBLIC_WRITES=1 (nodes
 * write through grpc-js's stream writer, `directWrites: false`), RELAY_BENCH_DUMP=FILE
 * (raw latency samples as JSON), RELAY_BENCH_SUBS_PER_CONNECTION=N (subscriptions per HTTP/2
 * connection of a host; default 125, at most 4 connections per host; 1 gives every
 * subscriber its own connection).
 */
import { startBenchNode, type BenchProcess } from "./processes.js";
import { fork, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { StreamSourceClient } from "../../clients/relay/index.js";
import { percentile, row, type BenchRow } from "./harness.js";

const STREAM = "bench";
/** Time between the last subscription starting and the measuring window. */
const WARMUP_MS = 5000;
/** RELAY_BENCH_PROF=DIR: every child process (nodes, subscriber hosts) writes a V8 CPU profile into DIR. */
const PROF = process.env["RELAY_BENCH_PROF"];
/** RELAY_BENCH_PUBLIC_WRITES=1: source and relay write through grpc-js's stream writer (directWrites: false), for comparison. */
const PUBLIC_WRITES = process.env["RELAY_BENCH_PUBLIC_WRITES"] === "1";
/** RELAY_BENCH_SLICE=N: source and relay write a frame to N subscribers per event-loop turn (fanoutSlice). */
const SLICE = process.env["RELAY_BENCH_SLICE"];
const nodeTuning = (): Record<string, unknown> => ({ ...(PUBLIC_WRITES ? { directWrites: false } : {}), ...(SLICE !== undefined ? { fanoutSlice: Number(SLICE) } : {}) });
const profArgs = (): string[] => [...(PROF ? ["--cpu-prof", "--cpu-prof-dir", PROF] : []), ...(process.env["RELAY_BENCH_NODE_ARGS"]?.split(" ").filter(Boolean) ?? [])];


interface Meter {
  frames: number;
  bytes: number;
  /** gRPC messages that carried those frames (a batch counts once). */
  messages: number;
  /** Frames announced as missed (Gap messages). */
  gapFrames: number;
  /** Flat triples: sequence, arrival time (ms since the epoch, sub-ms), published_at (ms). */
  samples: number[];
}

/** Source→subscriber latencies (arrival − published_at) of the sampled frames, ms. */
function latencies(m: Meter): number[] {
  const out: number[] = [];
  for (let i = 0; i < m.samples.length; i += 4) out.push((m.samples[i + 1] as number) - (m.samples[i + 2] as number));
  return out;
}

/**
 * What the relay path adds, frame by frame: arrival via the relay minus the arrival of
 * the same frame (same sequence) at the probe subscribed directly to the source.
 */
function addedLatencies(via: Meter, probe: Meter): number[] {
  const direct = new Map<number, number>();
  for (let i = 0; i < probe.samples.length; i += 4) direct.set(probe.samples[i] as number, probe.samples[i + 1] as number);
  const out: number[] = [];
  for (let i = 0; i < via.samples.length; i += 4) {
    const d = direct.get(via.samples[i] as number);
    if (d !== undefined) out.push((via.samples[i + 1] as number) - d);
  }
  return out;
}

/** A group of subscriber host processes. */
interface Hosts {
  started: Promise<void>;
  measure(on: boolean): void;
  report(): Promise<Meter>;
  close(): void;
  /** CPU seconds the host processes used so far. */
  cpu(): number;
}

function request(child: ChildProcess, msg: unknown, until: (m: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const on = (m: Record<string, unknown>): void => {
      if (m["error"]) {
        child.off("message", on);
        reject(new Error(String(m["error"])));
      } else if (until(m)) {
        child.off("message", on);
        resolve(m);
      }
    };
    child.on("message", on);
    child.send(msg as never);
  });
}

/** Opens `n` subscriptions to `target` spread over `processes` subscriber hosts. */
function subscribeMany(target: string, n: number, processes: number): Hosts {
  const script = join(dirname(fileURLToPath(import.meta.url)), "relay-subscribers.js");
  const k = Math.max(1, Math.min(processes, n));
  // A larger young generation: fewer scavenges and promotions, so the hosts' own GC
  // pauses (up to 80 ms mark-compacts seen with the default) do not pass for relay latency.
  const children = Array.from({ length: k }, () => fork(script, [], { stdio: ["ignore", "inherit", "inherit", "ipc"], execArgv: ["--max-semi-space-size=32", ...profArgs()] }));
  const per = Math.ceil(n / k);
  const started = Promise.all(
    children.map(async (c, i) => {
      await new Promise<void>((r) => c.once("message", () => r()));
      const count = Math.min(per, n - i * per);
      if (count > 0) await request(c, { cmd: "open", target, stream: STREAM, count, first: i * per }, (m) => m["ok"] === "open");
    }),
  ).then(() => undefined);
  return {
    started,
    measure: (on) => children.forEach((c) => c.send({ cmd: "measure", on })),
    report: async () => {
      const parts = await Promise.all(children.map((c) => request(c, { cmd: "report" }, (m) => "frames" in m)));
      return {
        frames: parts.reduce((a, p) => a + Number(p["frames"]), 0),
        bytes: parts.reduce((a, p) => a + Number(p["bytes"]), 0),
        messages: parts.reduce((a, p) => a + Number(p["messages"]), 0),
        gapFrames: parts.reduce((a, p) => a + Number(p["gapFrames"]), 0),
        samples: parts.flatMap((p) => p["samples"] as number[]),
      };
    },
    close: () => children.forEach((c) => c.send({ cmd: "close" })),
    cpu: () => children.reduce((a, c) => a + cpuSeconds(c.pid), 0),
  };
}

/** CPU seconds (user + system) a process used so far, from /proc (Linux); NaN elsewhere. */
function cpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 of stat (utime, stime) in clock ticks of 1/100 s.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

/** The source's counters of the bench stream: bytes written to subscribers, frames published. */
async function egress(client: StreamSourceClient): Promise<{ bytes: number; frames: number }> {
  const s = (await client.listStreams()).find((x) => x.name === STREAM);
  return { bytes: Number(s?.deliveredBytes ?? 0), frames: Number(s?.framesPublished ?? 0) };
}

/** Measures for `ms`: meters on, source egress before/after. */
async function window(
  ms: number,
  src: StreamSourceClient,
  hosts: Hosts[],
  cpuOf: ChildProcess,
): Promise<{ seconds: number; egressBytes: number; framesPublished: number; cpu: number; hostCpu: number; meters: Meter[] }> {
  await Promise.all(hosts.map((h) => h.report())); // reset
  const e0 = await egress(src);
  const c0 = cpuSeconds(cpuOf.pid);
  const h0 = (hosts[0] as Hosts).cpu();
  const t0 = performance.now();
  hosts.forEach((h) => h.measure(true));
  await new Promise((r) => setTimeout(r, ms));
  hosts.forEach((h) => h.measure(false));
  const seconds = (performance.now() - t0) / 1000;
  const e1 = await egress(src);
  const cpu = cpuSeconds(cpuOf.pid) - c0;
  const hostCpu = (hosts[0] as Hosts).cpu() - h0;
  return { seconds, cpu, hostCpu, egressBytes: e1.bytes - e0.bytes, framesPublished: e1.frames - e0.frames, meters: await Promise.all(hosts.map((h) => h.report())) };
}

/** A source with a ticker of 1 KiB frames every `intervalMs` and a relay in front of it. */
async function startSourceAndRelay(dir: string, intervalMs: number, execArgv?: string[]): Promise<{ source: BenchProcess; relay: BenchProcess }> {
  const source = await startBenchNode(
    dir,
    {
      node: { id: "bench-source", role: "stream-source" },
      streamSource: { generators: [{ kind: "ticker", name: STREAM, interval: intervalMs, payloadBytes: 1024 }], ...nodeTuning() },
    },
    execArgv,
  );
  const relay = await startBenchNode(dir, { node: { id: "bench-relay", role: "relay" }, relay: { upstream: source.address, linger: "1s", ...nodeTuning() } }, execArgv);
  return { source, relay };
}

/**
 * The measurement via the relay: `subscribers` at the relay plus one probe directly at
 * the source, a window of `seconds` after the warm-up; the relay's CPU is the one metered.
 */
async function measureViaRelay(
  source: BenchProcess,
  relay: BenchProcess,
  src: StreamSourceClient,
  subscribers: number,
  processes: number,
  seconds: number,
): Promise<{ w: Awaited<ReturnType<typeof window>>; via: Meter; probe: Meter }> {
  const via = subscribeMany(relay.address, subscribers, processes);
  const probe = subscribeMany(source.address, 1, 1);
  await Promise.all([via.started, probe.started]);
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  const w = await window(seconds * 1000, src, [via, probe], relay.child);
  via.close();
  probe.close();
  const [v, pr] = w.meters as [Meter, Meter];
  return { w, via: v, probe: pr };
}

/** One step of the saturation ladder: fresh source (ticker every `intervalMs`) and relay, subscribers at the relay only. */
async function ladderStep(intervalMs: number, subscribers: number, processes: number, seconds: number): Promise<{ offered: number; delivered: number; lost: number; p99: number; probeP99: number; cpuUs: number; framesPerMessage: number }> {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-bench-relay-"));
  const { source, relay } = await startSourceAndRelay(dir, intervalMs);
  const src = new StreamSourceClient(source.address);
  try {
    const { w, via: v, probe: pr } = await measureViaRelay(source, relay, src, subscribers, processes, seconds);
    const added = addedLatencies(v, pr);
    return {
      offered: (w.framesPublished * subscribers) / w.seconds,
      delivered: v.frames / w.seconds,
      lost: v.gapFrames,
      p99: percentile(added, 99),
      probeP99: percentile(latencies(pr), 99),
      cpuUs: (w.cpu * 1e6) / Math.max(1, v.frames),
      framesPerMessage: v.frames / Math.max(1, v.messages),
    };
  } finally {
    src.close();
    relay.child.kill("SIGTERM");
    source.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Saturation ladder (`LADDER` = comma-separated ticker intervals in ms, e.g. 6,4,3,2):
 * per step the offered and delivered rates via the relay, lost deliveries, added p99,
 * frames per message (above 1: subscribers fell behind and got batches) and the relay's
 * CPU per delivery; then the highest delivered rate of a step without loss (every
 * offered frame delivered, within 1 %).
 */
async function ladder(intervals: number[], subscribers: number, processes: number, seconds: number): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  let best = { delivered: 0, offered: 0, at: 0 };
  for (const ms of intervals) {
    const r = await ladderStep(ms, subscribers, processes, seconds);
    rows.push(
      row(`ladder_${ms}ms_deliveries_per_s`, "frames/s", r.delivered, r.offered, `offered (${subscribers} subscribers, a frame every ${ms} ms)`, true),
      row(`ladder_${ms}ms_lost_deliveries`, "frames", r.lost, 0, "none", false),
      row(`ladder_${ms}ms_added_p99_ms`, "ms", r.p99, r.probeP99, "the direct probe's own p99", false),
      row(`ladder_${ms}ms_frames_per_message`, "frames", r.framesPerMessage, 1, "one frame per message", false),
      row(`ladder_${ms}ms_cpu_us_per_delivery`, "µs", r.cpuUs, r.cpuUs, "same (relay CPU per delivery at this step)", false),
    );
    if (r.lost === 0 && r.delivered >= 0.99 * r.offered && r.delivered > best.delivered) best = { delivered: r.delivered, offered: r.offered, at: ms };
  }
  rows.push(row("max_sustained_deliveries_per_s", "frames/s", best.delivered, best.offered, `offered at that step (a frame every ${best.at} ms); no loss`, true));
  return rows;
}

export default async function relayBench(args: string[]): Promise<BenchRow[]> {
  const subscribers = Number(args[0] ?? 1000);
  const seconds = Number(args[1] ?? 10);
  const intervalMs = Number(args[2] ?? 8);
  const processes = Number(args[3] ?? 4);
  const steps = (args[4] ?? "").split(",").filter(Boolean).map(Number);
  const main = await mainRun(subscribers, seconds, intervalMs, processes);
  return steps.length ? [...main, ...(await ladder(steps, subscribers, processes, Math.min(seconds, 5)))] : main;
}

async function mainRun(subscribers: number, seconds: number, intervalMs: number, processes: number): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-bench-relay-"));
  const { source, relay } = await startSourceAndRelay(dir, intervalMs, profArgs());
  const src = new StreamSourceClient(source.address);
  try {
    // Ours: subscribers at the relay, one probe directly at the source.
    const { w: ours, via: viaMeter, probe: probeMeter } = await measureViaRelay(source, relay, src, subscribers, processes, seconds);
    // Anchor: the same subscribers attached directly to the source.
    await new Promise((r) => setTimeout(r, 1500)); // the relay's upstream lingers out
    const direct = subscribeMany(source.address, subscribers, processes);
    await direct.started;
    await new Promise((r) => setTimeout(r, WARMUP_MS));
    const anchor = await window(seconds * 1000, src, [direct], source.child);
    const [directMeter] = anchor.meters as [Meter];
    direct.close();

    // One subscriber's stream over exactly the window the source's counters cover: every
    // frame published, at the encoded size the probe saw. The probe's own share of the
    // source's egress is that same stream, so it is subtracted to leave the relay's.
    const frameBytes = probeMeter.frames ? probeMeter.bytes / probeMeter.frames : 0;
    const oneStream = (ours.framesPublished * frameBytes) / ours.seconds;
    const relayEgress = ours.egressBytes / ours.seconds - oneStream;
    const directEgress = anchor.egressBytes / anchor.seconds;
    const p99Via = percentile(latencies(viaMeter), 99);
    const p99Probe = percentile(latencies(probeMeter), 99);
    const added = addedLatencies(viaMeter, probeMeter);
    if (process.env["RELAY_BENCH_DUMP"]) writeFileSync(process.env["RELAY_BENCH_DUMP"], JSON.stringify({ via: viaMeter.samples, probe: probeMeter.samples, direct: directMeter.samples }));
    const note = `${subscribers} subscribers, 1 KiB frames every ${intervalMs} ms`;
    return [
      row("source_egress", "bytes/s", relayEgress, oneStream, `one subscriber's stream (${note})`, false),
      row("direct_egress", "bytes/s", relayEgress, directEgress, `same subscribers attached to the source`, false),
      row("offered_deliveries_per_s", "frames/s", (ours.framesPublished * subscribers) / ours.seconds, (anchor.framesPublished * subscribers) / anchor.seconds, "same, subscribers attached to the source", true),
      row("deliveries_per_s", "frames/s", viaMeter.frames / ours.seconds, directMeter.frames / anchor.seconds, "same subscribers attached to the source", true),
      row("lost_deliveries", "frames", viaMeter.gapFrames, directMeter.gapFrames, "subscribers attached to the source", false),
      row("added_p99_ms", "ms", percentile(added, 99), p99Probe, "per frame: via-relay arrival − direct probe's arrival; anchor: probe's p99", false),
      row("added_p50_ms", "ms", percentile(added, 50), percentile(latencies(probeMeter), 50), "same, median; anchor: probe's median", false),
      row("cpu_us_per_delivery", "µs", (ours.cpu * 1e6) / Math.max(1, viaMeter.frames), (anchor.cpu * 1e6) / Math.max(1, directMeter.frames), "source process, subscribers attached directly", false),
      row("host_cpu_share", "cores", ours.hostCpu / ours.seconds, anchor.hostCpu / anchor.seconds, "subscriber hosts' CPU, subscribers attached to the source", false),
      row("p99_via_relay_ms", "ms", p99Via, percentile(latencies(directMeter), 99), "p99 with the subscribers attached to the source", false),
      row("frames_per_message", "frames", viaMeter.frames / Math.max(1, viaMeter.messages), directMeter.frames / Math.max(1, directMeter.messages), "subscribers attached to the source", true),
    ];
  } finally {
    src.close();
    relay.child.kill("SIGTERM");
    source.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    rmSync(dir, { recursive: true, force: true });
  }
}
