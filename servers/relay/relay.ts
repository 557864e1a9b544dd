/**
 * The relay's session control (seed 002, claims 1-6):
 *  - the first subscriber of a stream makes the relay open one upstream subscription
 *    (to the source or to another relay) and join it once the upstream confirmed;
 *  - later subscribers join the open session without any call upstream;
 *  - every upstream frame is written, as the same bytes, to every subscriber;
 *  - each subscriber is metered from join to leave; on leave its usage record goes to the
 *    durable outbox, which reports it upstream until acknowledged;
 *  - when the last subscriber leaves, the upstream stays open for `lingerMs` (a subscriber
 *    joining meanwhile re-uses it) and is then closed.
 * Upstream failure: every subscriber gets the frames already received, then the
 * upstream's status (or UNAVAILABLE / UPSTREAM_LOST); the session is gone and the next
 * subscriber opens a new one.
 */
import { randomUUID } from "node:crypto";
import type { ClientReadableStream, ServiceError, StatusObject } from "@grpc/grpc-js";
import { status as Status } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { decodeEvent, encodeEvent, type StreamSourceClient } from "../../clients/relay/index.js";
import type { ListSessionsResponse } from "../../gen/switchyard/relay/v1/relay_service.js";
import { UpstreamState, type UpstreamSession } from "../../gen/switchyard/relay/v1/session.js";
import { LeaveReason } from "../../gen/switchyard/relay/v1/usage.js";
import type { SwitchyardError } from "../runtime/errors.js";
import { upstreamFailure, UpstreamLostError } from "./errors.js";
import { framesOf, type WireFrame } from "../../clients/relay/wire.js";
import { FrameGroup, MAX_BATCH_FRAMES, SlicedFanout, Subscriber, type FanoutOptions, type FrameSink, type Leave } from "./fanout.js";
import type { UsageOutbox } from "./outbox.js";
import { checkStreamName, pageSize, pageTokenAfter, readPageToken, type StoredUsage } from "./usage.js";
import type { SubscriberIdentity } from "./source.js";
import { RELAY_ID_PREFIX } from "./shared.js";

/** Options of a relay. */
export interface RelayOptions {
  relayId: string;
  upstream: string;
  fanout: FanoutOptions;
  /** How long an upstream with no subscribers stays open, in ms. */
  lingerMs: number;
  /** How long the upstream may take to confirm a new subscription, in ms. */
  upstreamOpenTimeoutMs: number;
}

/** One upstream subscription shared by the relay's subscribers of a stream. */
class Session {
  state = UpstreamState.OPENING;
  readonly openedAt = new Date();
  readonly subscribers = new Set<Subscriber>();
  /** Subscribers waiting for the upstream to confirm. */
  waiting = 0;
  framesReceived = 0;
  bytesReceived = 0;
  nextSequence = 0;
  lingerTimer: NodeJS.Timeout | undefined;
  lingerUntil: Date | undefined;
  closed = false;
  call!: ClientReadableStream<Buffer>;
  readonly ready: Promise<void>;
  resolveReady!: () => void;
  rejectReady!: (err: SwitchyardError) => void;

  constructor(
    readonly stream: string,
    readonly fanout: SlicedFanout,
  ) {
    this.ready = new Promise<void>((res, rej) => {
      this.resolveReady = res;
      this.rejectReady = rej;
    });
    this.ready.catch(() => undefined);
  }
}

/** The relay's sessions and meters. */
export class RelayCore {
  private readonly sessions = new Map<string, Session>();
  private readonly pendingWrites = new Set<Promise<void>>();
  /** Upstream subscriptions opened since start (tests and ListSessions). */
  upstreamOpened = 0;

  constructor(
    private readonly upstream: StreamSourceClient,
    private readonly outbox: UsageOutbox,
    private readonly opts: RelayOptions,
    private readonly log: Logger,
    private readonly shutdown: AbortSignal,
  ) {}

  /** Serves one subscriber; resolves with how it left (its usage is recorded by then). */
  async subscribe(name: string, who: SubscriberIdentity, sink: FrameSink, signal: AbortSignal, maxBatchFrames = 0): Promise<Leave> {
    checkStreamName(name);
    let session = this.sessions.get(name);
    if (!session) session = this.open(name);
    else if (session.state === UpstreamState.LINGERING) this.resume(session);
    session.waiting++;
    try {
      await abortable(session.ready, signal);
    } catch (err) {
      if (signal.aborted) return { reason: LeaveReason.CANCELLED };
      throw err;
    } finally {
      session.waiting--;
      if (signal.aborted) this.maybeLinger(session);
    }
    if (session.closed) throw new UpstreamLostError(name, this.opts.upstream);
    const sub = new Subscriber(who.id, who.peer, name, sink, this.opts.fanout, undefined, maxBatchFrames);
    sub.deliverRaw(encodeEvent({ event: { $case: "started", value: { stream: name, nextSequence: BigInt(session.nextSequence) } } }));
    session.subscribers.add(sub);
    session.fanout.joined();
    const onAbort = (): void => sub.cancel(this.shutdown.aborted ? LeaveReason.SHUTDOWN : LeaveReason.CANCELLED);
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    let leave: Leave;
    try {
      leave = await sub.done;
    } finally {
      signal.removeEventListener("abort", onAbort);
      session.subscribers.delete(sub);
      this.maybeLinger(session);
    }
    await this.record(sub, leave);
    return leave;
  }

  /** Writes the subscriber's usage record to the outbox. */
  private record(sub: Subscriber, leave: Leave): Promise<void> {
    const rec: StoredUsage = {
      recordId: `${this.opts.relayId}:${randomUUID()}`,
      subscriberId: sub.id,
      stream: sub.stream,
      bytes: String(sub.bytes),
      frames: String(sub.frames),
      startedAtMs: sub.joinedAt.getTime(),
      endedAtMs: Date.now(),
      relayId: this.opts.relayId,
      droppedFrames: String(sub.droppedFrames),
      leaveReason: leave.reason,
    };
    const p = this.outbox.add([rec]).catch((err: unknown) => {
      this.log.error({ err, record: rec }, "could not store a usage record");
    });
    this.pendingWrites.add(p);
    void p.finally(() => this.pendingWrites.delete(p));
    return p;
  }

  private open(name: string): Session {
    const s = new Session(name, new SlicedFanout(this.opts.fanout.sliceSize ?? 0, this.opts.fanout.maxBufferedFrames));
    this.sessions.set(name, s);
    this.upstreamOpened++;
    this.log.info({ stream: name, upstream: this.opts.upstream }, "opening upstream subscription");
    // Batches from upstream: a frame that arrives alone is still forwarded alone at once.
    s.call = this.upstream.subscribeRaw(name, { subscriberId: `${RELAY_ID_PREFIX}${this.opts.relayId}`, maxBatchFrames: MAX_BATCH_FRAMES });
    const timer = setTimeout(() => {
      if (s.state === UpstreamState.OPENING) this.fail(s, new UpstreamLostError(name, this.opts.upstream, new Error("upstream did not confirm in time")));
    }, this.opts.upstreamOpenTimeoutMs);
    timer.unref();
    s.call.on("data", (buf: Buffer) => this.onData(s, buf));
    // 'error' carries the status for non-OK ends; 'status' always comes last.
    s.call.on("error", () => undefined);
    s.call.on("status", (st: StatusObject) => {
      clearTimeout(timer);
      this.onStatus(s, st);
    });
    return s;
  }

  private onData(s: Session, buf: Buffer): void {
    if (s.closed) return;
    s.bytesReceived += buf.length;
    let frames: WireFrame[] | undefined;
    let ev;
    try {
      // Frames (single or batch) are only sliced, never decoded; other events are rare.
      frames = framesOf(buf);
      if (!frames) ev = decodeEvent(buf);
    } catch (err) {
      this.fail(s, new UpstreamLostError(s.stream, this.opts.upstream, err));
      return;
    }
    if (frames) {
      if (frames.length === 0) return;
      s.framesReceived += frames.length;
      s.nextSequence = (frames[frames.length - 1] as WireFrame).sequence + 1;
      s.fanout.frames(new FrameGroup(frames, buf), s.subscribers);
    } else if (!ev) {
      return;
    } else if (ev.type === "frame") {
      return; // not reached: frames are handled above
    } else if (ev.type === "gap") {
      s.nextSequence = Number(ev.gap.lastSequence) + 1;
      const missed = Number(ev.gap.frames);
      s.fanout.flush();
      for (const sub of s.subscribers) sub.deliverRaw(buf, missed);
    } else if (s.state === UpstreamState.OPENING) {
      s.nextSequence = Number(ev.started.nextSequence);
      s.state = UpstreamState.OPEN;
      s.resolveReady();
      // Nobody waited for it any more (they cancelled): linger like any idle session.
      this.maybeLinger(s);
    }
  }

  private onStatus(s: Session, st: StatusObject): void {
    if (s.closed) return;
    if (st.code === Status.OK) {
      this.log.info({ stream: s.stream }, "upstream ended the stream");
      this.end(s, { reason: LeaveReason.END_OF_STREAM });
      s.rejectReady(new UpstreamLostError(s.stream, this.opts.upstream, new Error("stream ended before it started")));
      return;
    }
    const err = Object.assign(new Error(st.details), st) as unknown as ServiceError;
    this.fail(s, upstreamFailure(err, s.stream, this.opts.upstream));
  }

  private fail(s: Session, err: SwitchyardError): void {
    if (s.closed) return;
    this.log.warn({ stream: s.stream, error: err.message, reason: err.reason }, "upstream subscription failed");
    s.rejectReady(err);
    this.end(s, { reason: LeaveReason.UPSTREAM_LOST, error: err });
  }

  /** Removes the session; subscribers get what is buffered, then `leave`. */
  private end(s: Session, leave: Leave): void {
    s.closed = true;
    clearTimeout(s.lingerTimer);
    if (this.sessions.get(s.stream) === s) this.sessions.delete(s.stream);
    s.call.cancel();
    s.fanout.flush();
    for (const sub of s.subscribers) sub.finish(leave);
  }

  private maybeLinger(s: Session): void {
    if (s.closed || s.subscribers.size > 0 || s.waiting > 0 || s.state === UpstreamState.LINGERING) return;
    if (s.state === UpstreamState.OPENING) return; // decided once the upstream answers
    s.state = UpstreamState.LINGERING;
    s.lingerUntil = new Date(Date.now() + this.opts.lingerMs);
    this.log.info({ stream: s.stream, lingerMs: this.opts.lingerMs }, "last subscriber left; upstream lingers");
    s.lingerTimer = setTimeout(() => {
      this.log.info({ stream: s.stream }, "closing idle upstream subscription");
      this.end(s, { reason: LeaveReason.CANCELLED });
    }, this.opts.lingerMs);
  }

  private resume(s: Session): void {
    clearTimeout(s.lingerTimer);
    s.lingerTimer = undefined;
    s.lingerUntil = undefined;
    s.state = UpstreamState.OPEN;
    this.log.info({ stream: s.stream }, "subscriber rejoined a lingering upstream");
  }

  /** Sessions for ListSessions, in stream order, one page. */
  listSessions(size: number, token: string): ListSessionsResponse {
    const after = readPageToken(token);
    const n = pageSize(size);
    const names = [...this.sessions.keys()].filter((k) => k > after).sort();
    const page = names.slice(0, n);
    const sessions: UpstreamSession[] = page.map((k) => {
      const s = this.sessions.get(k) as Session;
      return {
        stream: s.stream,
        state: s.state,
        openedAt: s.openedAt,
        framesReceived: BigInt(s.framesReceived),
        bytesReceived: BigInt(s.bytesReceived),
        ...(s.lingerUntil ? { lingerUntil: s.lingerUntil } : {}),
        subscribers: [...s.subscribers].map((sub) => ({
          subscriberId: sub.id,
          peer: sub.peer,
          joinedAt: sub.joinedAt,
          frames: BigInt(sub.frames),
          bytes: BigInt(sub.bytes),
          droppedFrames: BigInt(sub.droppedFrames),
          bufferedFrames: sub.bufferedFrames,
        })),
      };
    });
    return {
      sessions,
      nextPageToken: names.length > n && page.length ? pageTokenAfter(page[page.length - 1] as string) : "",
      upstream: this.opts.upstream,
      pendingUsageRecords: BigInt(this.outbox.pending),
      relayId: this.opts.relayId,
    };
  }

  /** Subscribers attached right now, over all sessions. */
  subscriberCount(): number {
    let n = 0;
    for (const s of this.sessions.values()) n += s.subscribers.size;
    return n;
  }

  /** Number of upstream sessions right now. */
  sessionCount(): number {
    return this.sessions.size;
  }

  /** Closes every upstream and waits until every usage record is stored. */
  async stop(): Promise<void> {
    for (const s of [...this.sessions.values()]) {
      this.end(s, { reason: LeaveReason.SHUTDOWN, error: new UpstreamLostError(s.stream, this.opts.upstream) });
    }
    while (this.pendingWrites.size) await Promise.all([...this.pendingWrites]);
  }
}

/** Resolves with `p`, or rejects once `signal` aborts. */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e as Error);
      },
    );
  });
}
