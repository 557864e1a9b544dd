/**
 * Built-in stream generators of a source, for demos and benchmarks:
 *  - ticker: a frame every `interval` carrying "tick <sequence> <ISO time>", padded with
 *    '.' to `payloadBytes` when that is larger;
 *  - file: a file of the node's own configuration replayed at `rate` frames per second,
 *    one frame per line (or per `frameBytes` chunk), looping or ending the stream at EOF.
 */
import { readFileSync, statSync } from "node:fs";
import { z } from "zod";
import { StreamOrigin } from "../../gen/switchyard/relay/v1/stream.js";
import { bytes, duration } from "../runtime/units.js";
import type { LiveStream, StreamSourceCore } from "./source.js";

const streamName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, "1-128 letters, digits, '.', '_' or '-'");

/** Config of one generator. */
export const generatorSchema = z.discriminatedUnion("kind", [
  z.strictObject({
    kind: z.literal("ticker"),
    name: streamName.describe("stream name"),
    interval: duration().default(1000).describe("time between frames; default 1s, at least 1ms"),
    payloadBytes: bytes().default(0).describe("pad each frame to this size; default 0 (just the text)"),
  }),
  z.strictObject({
    kind: z.literal("file"),
    name: streamName.describe("stream name"),
    path: z.string().min(1).describe("file to replay (read once at start)"),
    rate: z.number().positive().max(100_000).default(10).describe("frames per second; default 10"),
    frameBytes: bytes().default(0).describe("split into chunks of this size; default 0: one frame per line"),
    loop: z.boolean().default(true).describe("start over at the end; default true (false ends the stream)"),
  }),
]);

/** Config of one generator (parsed). */
export type GeneratorConfig = z.output<typeof generatorSchema>;

/** Largest file a file generator loads. */
export const MAX_REPLAY_FILE_BYTES = 64 * 1024 * 1024;

/** A running generator. */
export interface Generator {
  readonly stream: LiveStream;
  stop(): void;
}

/** Splits a replay file into frame payloads. */
export function replayFrames(data: Buffer, frameBytes: number): Buffer[] {
  const out: Buffer[] = [];
  if (frameBytes > 0) {
    for (let i = 0; i < data.length; i += frameBytes) out.push(data.subarray(i, i + frameBytes));
    return out;
  }
  let start = 0;
  for (let i = 0; i < data.length; i++) {
    if (data[i] === 0x0a) {
      const end = i > start && data[i - 1] === 0x0d ? i - 1 : i;
      out.push(data.subarray(start, end));
      start = i + 1;
    }
  }
  if (start < data.length) out.push(data.subarray(start));
  return out;
}

/** Ticker payload for `sequence`. */
export function tickPayload(sequence: number, now: Date, payloadBytes: number): Buffer {
  const text = Buffer.from(`tick ${sequence} ${now.toISOString()}`, "utf8");
  if (payloadBytes <= text.length) return text;
  const out = Buffer.alloc(payloadBytes, ".");
  text.copy(out);
  return out;
}

/** Starts a generator; throws (the node refuses to start) on an unreadable file. */
export function startGenerator(core: StreamSourceCore, cfg: GeneratorConfig, resolvePath: (p: string) => string): Generator {
  if (cfg.kind === "ticker") {
    const stream = core.open(cfg.name, StreamOrigin.TICKER);
    const every = Math.max(1, cfg.interval);
    const timer = setInterval(() => {
      const now = new Date();
      stream.publish(tickPayload(stream.nextSequence, now, cfg.payloadBytes), now);
    }, every);
    return { stream, stop: () => clearInterval(timer) };
  }
  const path = resolvePath(cfg.path);
  const size = statSync(path).size;
  if (size > MAX_REPLAY_FILE_BYTES) throw new Error(`replay file ${path} is ${size} bytes; the limit is ${MAX_REPLAY_FILE_BYTES}`);
  const frames = replayFrames(readFileSync(path), cfg.frameBytes);
  if (frames.length === 0) throw new Error(`replay file ${path} is empty`);
  const stream = core.open(cfg.name, StreamOrigin.FILE);
  // A timer fires at most every ms: at higher rates several frames go out per tick.
  const periodMs = Math.max(1, 1000 / cfg.rate);
  const started = performance.now();
  let sent = 0;
  let next = 0;
  const timer = setInterval(() => {
    const due = Math.floor(((performance.now() - started) * cfg.rate) / 1000) + 1;
    while (sent < due) {
      if (next >= frames.length) {
        if (!cfg.loop) {
          clearInterval(timer);
          core.close(stream);
          return;
        }
        next = 0;
      }
      stream.publish(frames[next++] as Buffer);
      sent++;
    }
  }, periodMs);
  return { stream, stop: () => clearInterval(timer) };
}
