/**
 * Subscriber host for the relay benchmark: a child process that opens subscriptions on
 * command (IPC) and only counts and timestamps what they receive, so the subscriber side
 * costs as little as possible and is spread over several processes.
 *
 * The subscriptions are raw HTTP/2 gRPC calls over plain sockets (tools/bench/raw-h2.ts: no
 * grpc-js, no node:http2, so a host costs the shared cores as little as possible): the
 * host writes one SubscribeRequest (asking for batches of up to 256 frames) and splits the
 * response body into gRPC messages itself; frames are sliced, never decoded
 * (clients/relay/wire.ts). A frame's arrival time is when the host's socket read it.
 * Each subscriber i records the arrival time of the frames whose sequence ≡ i (mod 16)
 * (every frame when the host has one subscriber, i.e. the probe), with their published_at.
 *
 * Messages in: {cmd:"open", target, stream, count, first} → {ok:"open"} once every
 * subscription started; {cmd:"measure", on:true|false}; {cmd:"report"} →
 * {frames, bytes, messages, gapFrames, samples: [sequence, arrivalMs, publishedMs, subscriber, ...]};
 * {cmd:"close"} → exits.
 */
import { RawH2Connection } from "./raw-h2.js";
import { Frame } from "../../gen/switchyard/relay/v1/stream.js";
import { SubscribeRequest, SubscribeResponse } from "../../gen/switchyard/relay/v1/stream_source_service.js";
import { framesOf } from "../../clients/relay/wire.js";
import { grpcFramed } from "../../clients/grpc/framing.js";

type Msg =
  | { cmd: "open"; target: string; stream: string; count: number; first: number }
  | { cmd: "measure"; on: boolean }
  | { cmd: "report" }
  | { cmd: "close" };

/** Every subscriber i samples the frames with sequence % SAMPLE_EVERY === i % SAMPLE_EVERY. */
const SAMPLE_EVERY = 16;
const PATH = "/switchyard.relay.v1.StreamSourceService/Subscribe";

const connections: RawH2Connection[] = [];
const calls: { conn: RawH2Connection; id: number }[] = [];
/** Set on "close": calls ending from then on are expected. */
let closing = false;
let measuring = false;
let frames = 0;
let bytes = 0;
let messages = 0;
/** Frames announced missing by Gap messages (dropped for a slow subscriber). */
let gapFrames = 0;
let samples: number[] = [];
const clockOrigin = performance.timeOrigin;

function reply(m: unknown): void {
  process.send?.(m);
}

/** One subscription: splits the response body into gRPC messages and meters them. */
function subscribe(conn: RawH2Connection, stream: string, subscriberId: string, subscriberIndex: number, slot: number, sampleAll: boolean, started: () => void, failed: (e: Error) => void): void {
  const req = grpcFramed(Buffer.from(SubscribeRequest.encode({ stream, subscriberId, maxBatchFrames: 256 }).finish()));
  let pending: Buffer | undefined;
  let isStarted = false;
  const id = conn.call(PATH, req, {
    data(chunk, at) {
      const now = clockOrigin + at;
      let buf = pending ? Buffer.concat([pending, chunk]) : chunk;
      pending = undefined;
      while (buf.length >= 5) {
        const len = buf.readUInt32BE(1);
        if (buf.length < 5 + len) break;
        const msg = buf.subarray(5, 5 + len);
        buf = buf.subarray(5 + len);
        if (!isStarted) {
          isStarted = true;
          started();
          continue;
        }
        if (!measuring) continue;
        const list = framesOf(msg);
        if (!list) {
          const ev = SubscribeResponse.decode(msg).event;
          if (ev?.$case === "gap") gapFrames += Number(ev.value.frames);
          continue;
        }
        messages++;
        bytes += msg.length;
        frames += list.length;
        for (const f of list) {
          if (!sampleAll && f.sequence % SAMPLE_EVERY !== slot) continue;
          const published = Frame.decode(f.body).publishedAt?.getTime() ?? NaN;
          samples.push(f.sequence, now, published, subscriberIndex);
        }
      }
      // The chunk is a view into the socket's read buffer: keep a copy of a partial message.
      if (buf.length) pending = Buffer.from(buf);
    },
    end(ok, why) {
      if (!isStarted) failed(new Error(`Subscribe ${subscriberId} at ${conn.target} failed: ${why}`));
      else if (!closing) process.stderr.write(`subscriber ${subscriberId} ended (${ok ? "stream closed" : why})\n`);
    },
  });
  calls.push({ conn, id });
}

async function open(target: string, stream: string, count: number, first: number): Promise<void> {
  // Subscriptions share a few HTTP/2 connections per host (125 each, at most 4) unless
  // RELAY_BENCH_SUBS_PER_CONNECTION says otherwise (1: every subscriber its own
  // connection, as separate subscriber machines would be — more socket writes per frame).
  // The connections announce large windows (tools/bench/raw-h2.ts): with HTTP/2's default
  // 64 KiB connection window, one frame's fan-out to 125 subscriptions (~130 KiB) would
  // wait for this host's WINDOW_UPDATE half-way through, and the host's own scheduling
  // delay would show up as relay latency.
  const perConnection = Number(process.env["RELAY_BENCH_SUBS_PER_CONNECTION"] ?? 0);
  const channels = perConnection > 0 ? Math.max(1, Math.ceil(count / perConnection)) : Math.max(1, Math.min(4, Math.ceil(count / 125)));
  for (let i = 0; i < channels; i++) connections.push(new RawH2Connection(target, (e) => !closing && process.stderr.write(`${e.message}\n`)));
  const starts: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const n = first + i;
    starts.push(new Promise<void>((resolve, reject) => subscribe(connections[connections.length - channels + (i % channels)] as RawH2Connection, stream, `bench-${n}`, n, n % SAMPLE_EVERY, count === 1, resolve, reject)));
  }
  await Promise.all(starts);
}

process.on("message", (m: Msg) => {
  if (m.cmd === "open") {
    open(m.target, m.stream, m.count, m.first).then(
      () => reply({ ok: "open" }),
      (err: unknown) => reply({ error: String(err) }),
    );
  } else if (m.cmd === "measure") {
    measuring = m.on;
  } else if (m.cmd === "report") {
    reply({ frames, bytes, messages, gapFrames, samples });
    gapFrames = 0;
    frames = 0;
    bytes = 0;
    messages = 0;
    samples = [];
  } else {
    closing = true;
    for (const c of calls) c.conn.cancel(c.id);
    for (const c of connections) c.close();
    setTimeout(() => process.exit(0), 100);
  }
});
reply({ ok: "ready" });
