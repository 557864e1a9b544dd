/**
 * Subscriber host for the relay benchmark: a child process that opens subscriptions on
 * command (IPC) and only counts and timestamps what they receive, so the subscriber side
 * costs as little as possible and is spread over several processes.
 *
 * The subscriptions are raw HTTP/2 gRPC calls (node:http2, no grpc-js): the host writes
 * one SubscribeRequest (asking for batches of up to 256 frames) and splits the response
 * body into gRPC messages itself; frames are sliced, never decoded (clients/relay/wire.ts).
 * Each subscriber i records the arrival time of the frames whose sequence ≡ i (mod 16)
 * (every frame when the host has one subscriber, i.e. the probe), with their published_at.
 *
 * Messages in: {cmd:"open", target, stream, count, first} → {ok:"open"} once every
 * subscription started; {cmd:"measure", on:true|false}; {cmd:"report"} →
 * {frames, bytes, messages, gapFrames, samples: [sequence, arrivalMs, publishedMs, subscriber, ...]};
 * {cmd:"close"} → exits.
 */
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream } from "node:http2";
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

const sessions: ClientHttp2Session[] = [];
const streams: ClientHttp2Stream[] = [];
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
function subscribe(session: ClientHttp2Session, stream: string, subscriberId: string, subscriberIndex: number, slot: number, sampleAll: boolean, started: () => void, failed: (e: Error) => void): void {
  const req = SubscribeRequest.encode({ stream, subscriberId, maxBatchFrames: 256 }).finish();
  const call = session.request({
    [constants.HTTP2_HEADER_METHOD]: "POST",
    [constants.HTTP2_HEADER_PATH]: PATH,
    [constants.HTTP2_HEADER_CONTENT_TYPE]: "application/grpc",
    te: "trailers",
  });
  call.end(grpcFramed(req));
  let pending: Buffer | undefined;
  let isStarted = false;
  call.on("data", (chunk: Buffer) => {
    const now = clockOrigin + performance.now();
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
    if (buf.length) pending = Buffer.from(buf);
  });
  call.on("response", (h) => {
    const st = h[constants.HTTP2_HEADER_STATUS];
    const grpc = h["grpc-status"];
    if (Number(st) !== 200 || (grpc !== undefined && grpc !== "0")) failed(new Error(`Subscribe failed: HTTP ${st} grpc-status ${grpc} ${h["grpc-message"] ?? ""}`));
  });
  call.on("error", () => undefined);
  streams.push(call);
}

async function open(target: string, stream: string, count: number, first: number): Promise<void> {
  // Subscriptions share a few HTTP/2 connections per host (125 each, at most 4) unless
  // RELAY_BENCH_SUBS_PER_CONNECTION says otherwise (1: every subscriber its own
  // connection, as separate subscriber machines would be — more socket writes per frame).
  const perConnection = Number(process.env["RELAY_BENCH_SUBS_PER_CONNECTION"] ?? 0);
  const channels = perConnection > 0 ? Math.max(1, Math.ceil(count / perConnection)) : Math.max(1, Math.min(4, Math.ceil(count / 125)));
  for (let i = 0; i < channels; i++) {
    const s = connect(`http://${target}`, { settings: { initialWindowSize: 1 << 20 } });
    // The connection-level window stays at HTTP/2's 64 KiB unless raised: with 125
    // subscriptions of ~1 KiB frames on one connection, one frame's fan-out (~130 KiB)
    // would then wait for this host's WINDOW_UPDATE half-way through, and the host's
    // own scheduling delay would show up as relay latency.
    s.once("connect", () => s.setLocalWindowSize(32 << 20));
    s.on("error", () => undefined);
    sessions.push(s);
  }
  const starts: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const n = first + i;
    starts.push(new Promise<void>((resolve, reject) => subscribe(sessions[i % channels] as ClientHttp2Session, stream, `bench-${n}`, n, n % SAMPLE_EVERY, count === 1, resolve, reject)));
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
    for (const c of streams) c.close(constants.NGHTTP2_CANCEL);
    for (const s of sessions) s.close();
    setTimeout(() => process.exit(0), 100);
  }
});
reply({ ok: "ready" });
