/**
 * The stream source: live streams fed by publishers or built-in generators, fan-out to
 * their subscribers (relays, or subscribers attached directly), and the usage ledger
 * where relays' reports are stored once per record id.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { sleep } from "../../clients/grpc/retry.js";
import { encodeEvent } from "../../clients/relay/index.js";
import type { StreamInfo } from "../../gen/switchyard/relay/v1/stream.js";
import { StreamOrigin } from "../../gen/switchyard/relay/v1/stream.js";
import type { ReportUsageResponse } from "../../gen/switchyard/relay/v1/stream_source_service.js";
import type { UsageRecord } from "../../gen/switchyard/relay/v1/usage.js";
import { LeaveReason } from "../../gen/switchyard/relay/v1/usage.js";
import type { Collection, NodeStore } from "../runtime/store.js";
import { badField, PublisherLostError, StreamAlreadyPublishedError, StreamNotFoundError } from "./errors.js";
import { framesOf, type WireFrame } from "../../clients/relay/wire.js";
import { FrameGroup, SlicedFanout, Subscriber, type FanoutOptions, type FrameSink, type Leave } from "./fanout.js";
import { checkRecords, checkStreamName, fromStored, pageSize, pageTokenAfter, readPageToken, toStored, type StoredUsage } from "./usage.js";
import { RELAY_ID_PREFIX } from "./shared.js";

/** One live stream at the source. */
export class LiveStream {
  readonly startedAt = new Date();
  readonly subscribers = new Set<Subscriber>();
  nextSequence = 1;
  subscriptionsTotal = 0;
  framesPublished = 0;
  readonly counters = { deliveredFrames: 0, deliveredBytes: 0 };
  ended = false;

  constructor(
    readonly name: string,
    readonly origin: StreamOrigin,
    private readonly fanout = new SlicedFanout(0),
  ) {}

  /** Publishes one frame: encoded once, the same bytes go to every subscriber. */
  publish(payload: Buffer, now = new Date()): number {
    const sequence = this.nextSequence++;
    this.framesPublished++;
    if (this.subscribers.size === 0) return sequence;
    const buf = encodeEvent({ event: { $case: "frame", value: { sequence: BigInt(sequence), payload, publishedAt: now } } });
    this.fanout.frames(new FrameGroup(framesOf(buf) as WireFrame[], buf), this.subscribers);
    return sequence;
  }

  /** A subscriber was added: frames still being fanned out are not for it. */
  joined(): void {
    this.fanout.joined();
  }

  /** Ends the stream: subscribers get what is buffered, then OK (or `error`). */
  end(error?: Error): void {
    this.ended = true;
    const leave: Leave = error ? { reason: LeaveReason.UPSTREAM_LOST, error } : { reason: LeaveReason.END_OF_STREAM };
    this.fanout.flush();
    for (const s of this.subscribers) s.finish(leave);
  }

  /** The stream as ListStreams shows it. */
  info(): StreamInfo {
    return {
      name: this.name,
      origin: this.origin,
      nextSequence: BigInt(this.nextSequence),
      subscribers: this.subscribers.size,
      subscriptionsTotal: BigInt(this.subscriptionsTotal),
      framesPublished: BigInt(this.framesPublished),
      deliveredFrames: BigInt(this.counters.deliveredFrames),
      deliveredBytes: BigInt(this.counters.deliveredBytes),
      startedAt: this.startedAt,
    };
  }
}

/** Options of a source. */
export interface SourceOptions {
  fanout: FanoutOptions;
  /** Largest frame payload accepted from publishers. */
  maxFrameBytes: number;
  /** How long stored usage records are kept (and retries deduplicated), in ms. */
  usageRetentionMs: number;
  /** Wait after a half-close without end_of_stream before ending the stream normally, in ms. */
  halfCloseGraceMs: number;
  /** Node id of the source, the relay_id of the records of its direct subscribers. */
  sourceId: string;
  /** The node's shutdown signal (leave reason SHUTDOWN instead of CANCELLED). */
  shutdown?: AbortSignal;
}

/** Who is subscribing, as the handler knows it. */
export interface SubscriberIdentity {
  id: string;
  peer: string;
}

/** The source's streams and usage ledger. */
export class StreamSourceCore {
  readonly streams = new Map<string, LiveStream>();
  private readonly usage: Collection<StoredUsage>;
  private reporting: Promise<unknown> = Promise.resolve();
  private readonly pendingWrites = new Set<Promise<unknown>>();

  constructor(
    private readonly store: NodeStore,
    private readonly opts: SourceOptions,
    private readonly log: Logger,
  ) {
    this.usage = store.collection<StoredUsage>("usage", { encoding: "json", ttl: true });
  }

  /** Creates a stream owned by a publisher or generator; ALREADY_EXISTS when taken. */
  open(name: string, origin: StreamOrigin): LiveStream {
    checkStreamName(name);
    if (this.streams.has(name)) throw new StreamAlreadyPublishedError(name);
    const s = new LiveStream(name, origin, new SlicedFanout(this.opts.fanout.sliceSize ?? 0, this.opts.fanout.maxBufferedFrames));
    this.streams.set(name, s);
    this.log.info({ stream: name, origin: StreamOrigin[origin] }, "stream started");
    return s;
  }

  /** Ends a stream and forgets it. */
  close(stream: LiveStream, error?: Error): void {
    if (stream.ended) return;
    stream.end(error);
    if (this.streams.get(stream.name) === stream) this.streams.delete(stream.name);
    this.log.info({ stream: stream.name, frames: stream.framesPublished, error: error?.message }, "stream ended");
  }

  /**
   * Runs one Publish call: frames from `requests` into the stream its first message
   * names. Ends the stream when the call ends; PUBLISHER_LOST to subscribers when it broke.
   */
  async publish(
    requests: AsyncIterable<{ stream: string; payload: Buffer; endOfStream: boolean }>,
    signal: AbortSignal,
  ): Promise<{ frames: number; first: number; last: number }> {
    let stream: LiveStream | undefined;
    let frames = 0;
    let first = 0;
    let last = 0;
    let marked = false;
    try {
      for await (const req of requests) {
        if (!stream) {
          stream = this.open(req.stream, StreamOrigin.PUBLISHED);
        } else if (req.stream !== "" && req.stream !== stream.name) {
          throw badField("stream", `a Publish call publishes into one stream (${stream.name}), got ${req.stream}`, "STREAM_NAME_CHANGED");
        }
        if (req.payload.length > this.opts.maxFrameBytes) {
          throw badField("payload", `frame of ${req.payload.length} bytes exceeds the limit of ${this.opts.maxFrameBytes}`, "FRAME_TOO_LARGE");
        }
        if (!req.endOfStream || req.payload.length > 0) {
          last = stream.publish(req.payload);
          if (frames++ === 0) first = last;
        }
        if (req.endOfStream) {
          marked = true;
          break;
        }
      }
      if (!marked) {
        // grpc-js shows a publisher that went away (RST_STREAM) as a half-close first and
        // as a cancellation a moment later: give the cancellation time to arrive.
        await sleep(this.opts.halfCloseGraceMs, signal).catch(() => undefined);
        if (signal.aborted) throw signal.reason;
      }
    } catch (err) {
      if (stream) this.close(stream, new PublisherLostError(stream.name));
      throw err;
    }
    if (stream) this.close(stream);
    else throw badField("stream", "the Publish call sent no message", "STREAM_NAME_REQUIRED");
    return { frames, first, last };
  }

  /** Subscribes `sink` to a live stream; resolves when the subscription is over. */
  async subscribe(name: string, who: SubscriberIdentity, sink: FrameSink, signal: AbortSignal, maxBatchFrames = 0): Promise<Leave> {
    checkStreamName(name);
    const stream = this.streams.get(name);
    if (!stream || stream.ended) throw new StreamNotFoundError(name);
    const sub = new Subscriber(who.id, who.peer, name, sink, this.opts.fanout, stream.counters, maxBatchFrames);
    sub.deliverRaw(encodeEvent({ event: { $case: "started", value: { stream: name, nextSequence: BigInt(stream.nextSequence) } } }));
    stream.subscribers.add(sub);
    stream.joined();
    stream.subscriptionsTotal++;
    const onAbort = (): void => sub.cancel(this.opts.shutdown?.aborted ? LeaveReason.SHUTDOWN : LeaveReason.CANCELLED);
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    let leave: Leave;
    try {
      leave = await sub.done;
    } finally {
      signal.removeEventListener("abort", onAbort);
      stream.subscribers.delete(sub);
    }
    await this.recordDirect(sub, leave);
    return leave;
  }

  /**
   * A subscriber attached directly is metered like one at a relay and its record goes
   * straight into the ledger. Relays' own upstream subscriptions are not recorded here:
   * the relays report their subscribers, and the upstream relay reports the hop.
   */
  private async recordDirect(sub: Subscriber, leave: Leave): Promise<void> {
    if (sub.id.startsWith(RELAY_ID_PREFIX)) return;
    const rec: StoredUsage = {
      recordId: `${this.opts.sourceId}:${randomUUID()}`,
      subscriberId: sub.id,
      stream: sub.stream,
      bytes: String(sub.bytes),
      frames: String(sub.frames),
      startedAtMs: sub.joinedAt.getTime(),
      endedAtMs: Date.now(),
      relayId: this.opts.sourceId,
      droppedFrames: String(sub.droppedFrames),
      leaveReason: leave.reason,
    };
    const p = this.putAll([rec]).catch((err: unknown) => this.log.error({ err, record: rec }, "could not store a usage record"));
    this.pendingWrites.add(p);
    void p.finally(() => this.pendingWrites.delete(p));
    await p;
  }

  /** Waits until every usage record of a direct subscriber is stored. */
  async flush(): Promise<void> {
    while (this.pendingWrites.size) await Promise.all([...this.pendingWrites]);
  }

  /** Live streams in name order, one page. */
  listStreams(size: number, token: string): { streams: StreamInfo[]; next: string } {
    const after = readPageToken(token);
    const n = pageSize(size);
    const names = [...this.streams.keys()].filter((k) => k > after).sort();
    const page = names.slice(0, n);
    const next = names.length > n && page.length ? pageTokenAfter(page[page.length - 1] as string) : "";
    return { streams: page.map((k) => (this.streams.get(k) as LiveStream).info()), next };
  }

  /**
   * Stores reported usage, each record id once. Acknowledges (returns) only after the
   * write: what was acknowledged survives a crash. Calls are serialized so two concurrent
   * retries of the same record cannot both count it.
   */
  async reportUsage(records: UsageRecord[]): Promise<ReportUsageResponse> {
    checkRecords(records);
    const run = this.reporting.then(async () => {
      const unique = new Map(records.map((r) => [r.recordId, r]));
      const ids = [...unique.keys()];
      const existing = await this.usage.getMany(ids);
      const accepted: string[] = [];
      const duplicates: string[] = [];
      const writes: StoredUsage[] = [];
      ids.forEach((id, i) => {
        if (existing[i] !== undefined) duplicates.push(id);
        else {
          accepted.push(id);
          writes.push(toStored(unique.get(id) as UsageRecord));
        }
      });
      await this.putAll(writes);
      if (accepted.length) this.log.info({ accepted: accepted.length, duplicates: duplicates.length }, "usage records stored");
      return { acceptedRecordIds: accepted, duplicateRecordIds: duplicates };
    });
    this.reporting = run.catch(() => undefined);
    return run;
  }

  private async putAll(records: StoredUsage[]): Promise<void> {
    if (!records.length) return;
    const b = this.store.batch();
    for (const r of records) b.put(this.usage, r.recordId, r, { ttlMs: this.opts.usageRetentionMs });
    await b.write();
  }

  /** Stored usage records in record-id order, one page, optionally of one stream. */
  async listUsage(stream: string, size: number, token: string): Promise<{ records: UsageRecord[]; next: string }> {
    if (stream) checkStreamName(stream);
    const after = readPageToken(token);
    const n = pageSize(size);
    const out: UsageRecord[] = [];
    let lastKey = "";
    let more = false;
    for await (const [key, v] of this.usage.entries(after ? { gt: after } : {})) {
      if (stream && v.stream !== stream) continue;
      if (out.length === n) {
        more = true;
        break;
      }
      out.push(fromStored(v));
      lastKey = key;
    }
    return { records: out, next: more ? pageTokenAfter(lastKey) : "" };
  }

  /** Ends every stream (node shutdown). */
  closeAll(error: Error): void {
    for (const s of [...this.streams.values()]) this.close(s, error);
  }
}
