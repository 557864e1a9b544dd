/**
 * Fan-out to one subscriber: a bounded buffer in front of its gRPC stream, the slow-
 * subscriber policy, and the meter (frames and payload bytes written from join to leave).
 *
 * A frame arrives as the already-encoded SubscribeResponse bytes; the same Buffer is
 * handed to every subscriber's stream, never re-encoded. While the subscriber's transport
 * accepts writes, a frame is written at once (no queueing, no promise); when the
 * transport pushes back, frames wait in the subscriber's own buffer of at most
 * `maxBufferedFrames` frames, so nobody else waits for it. When that buffer overflows:
 *  - "drop-oldest": the oldest buffered frames are dropped and one Gap message (first and
 *    last dropped sequence, count) takes their place;
 *  - "disconnect": the call ends with RESOURCE_EXHAUSTED / SUBSCRIBER_TOO_SLOW.
 * Frames already written to the transport still reach the subscriber before the status.
 */
import { encodeEvent } from "../../clients/relay/index.js";
import { batchMessage, type WireFrame } from "../../clients/relay/wire.js";
import { GRPC_PREFIX_BYTES, grpcFramed } from "../../clients/grpc/framing.js";
import { SubscriberTooSlowError } from "./errors.js";
import { LeaveReason } from "../../gen/switchyard/relay/v1/usage.js";

/** What a subscriber does when its buffer overflows. */
export type SlowSubscriberPolicy = "drop-oldest" | "disconnect";

/** Buffer bound and overflow policy of every subscriber of a node. */
export interface FanoutOptions {
  /** Frames that may wait for one subscriber before the policy applies. */
  maxBufferedFrames: number;
  policy: SlowSubscriberPolicy;
  /** Subscribers a frame is written to per event-loop turn (SlicedFanout); 0: all at once. */
  sliceSize?: number;
}

import type { FrameSink } from "./sink.js";
export type { FrameSink } from "./sink.js";

/** Frames handed to the transport as one message (one frame, or a batch of them). */
interface FrameItem {
  kind: "frame";
  /** The message with gRPC's 5-byte prefix; shared by every subscriber that gets the same piece. */
  framed: Buffer;
  /** The frames, `list[from..to)`. */
  list: readonly WireFrame[];
  from: number;
  to: number;
  /** Sum of their payload lengths. */
  payloadBytes: number;
}

/** One item waiting for a subscriber. */
type Item = FrameItem | { kind: "gap"; first: number; last: number; frames: number } | { kind: "raw"; buf: Buffer; droppedFrames: number };

/** Largest batch a node sends, whatever the subscriber asked for. */
export const MAX_BATCH_FRAMES = 256;

/**
 * Frames that became ready together (one upstream message, one publish): encoded once,
 * the same bytes for every subscriber. Single-frame messages and batches of a given size
 * are built on first use and shared.
 */
export class FrameGroup {
  private singles: FrameItem[] | undefined;
  private readonly batches = new Map<number, FrameItem[]>();

  /**
   * @param whole the message that carries exactly `frames` when there is one (the
   *   upstream's message, or the publish's encoding): re-used as is where it fits.
   */
  constructor(
    readonly frames: readonly WireFrame[],
    private readonly whole?: Buffer,
  ) {}

  /** These frames followed by `other`'s, as one group (nothing built yet is kept). */
  merge(other: FrameGroup): FrameGroup {
    return new FrameGroup([...this.frames, ...other.frames]);
  }

  /** One message per frame (subscribers that did not ask for batches). */
  single(): FrameItem[] {
    if (!this.singles) this.singles = pieces(this.frames, 1);
    return this.singles;
  }

  /** Messages of at most `max` frames each. */
  batched(max: number): FrameItem[] {
    if (max <= 1 || this.frames.length === 1) return this.single();
    let p = this.batches.get(max);
    if (!p) {
      p = this.whole && this.frames.length <= max ? [frameItem(this.frames, 0, this.frames.length, this.whole)] : pieces(this.frames, max);
      this.batches.set(max, p);
    }
    return p;
  }
}

/** `list` cut into messages of at most `max` frames. */
function pieces(list: readonly WireFrame[], max: number): FrameItem[] {
  const out: FrameItem[] = [];
  for (let from = 0; from < list.length; from += max) out.push(frameItem(list, from, Math.min(list.length, from + max)));
  return out;
}

function frameItem(list: readonly WireFrame[], from: number, to: number, message?: Buffer): FrameItem {
  let payloadBytes = 0;
  for (let i = from; i < to; i++) payloadBytes += (list[i] as WireFrame).payloadBytes;
  return { kind: "frame", framed: message ? grpcFramed(message) : batchMessage(list, from, to, true), list, from, to, payloadBytes };
}

/**
 * Hands frames to the subscribers of one stream in slices of `sliceSize` subscribers, one
 * slice per event-loop turn, in order: every subscriber gets group k before group k+1.
 * Why: writing one frame to 1,000 subscribers is milliseconds of synchronous work, and
 * node:http2 sends what was written only after that work returns (its session flush is a
 * native immediate). In slices, the first subscribers' bytes leave while the node is still
 * writing to the later ones, so on more than one core their readers run in parallel with
 * the fan-out instead of after it, and a new upstream frame is read in between.
 * Subscribers are taken as they were when the frames arrived (a subscriber that joins
 * meanwhile starts after them, as its `started.next_sequence` says; one that left is
 * skipped). Anything else for the subscribers (a gap from upstream, the end of the
 * stream) calls `flush()` first, so it stays behind every frame, synchronously as before.
 * The owner calls `joined()` when it adds a subscriber.
 */
export class SlicedFanout {
  private readonly pending: { group: FrameGroup; subs: Subscriber[]; next: number }[] = [];
  private pendingFrames = 0;
  /** A subscriber joined after the last pending group's snapshot (no merging into it). */
  private joinedSinceSnapshot = false;
  private scheduled = false;
  private readonly onTurn = (): void => {
    this.scheduled = false;
    this.step(this.sliceSize);
  };

  /**
   * @param sliceSize subscribers written per event-loop turn (0: all at once).
   * @param maxPendingFrames frames that may wait here; beyond, everything pending is
   *   written at once, so an overloaded node falls back to one pass per frame and the
   *   subscribers' own bounded buffers and slow-subscriber policy apply.
   */
  constructor(
    private readonly sliceSize: number,
    private readonly maxPendingFrames = 1024,
  ) {}

  /** A subscriber was added to the set: frames pending so far are not for it. */
  joined(): void {
    this.joinedSinceSnapshot = true;
  }

  /**
   * Delivers `group` to `subscribers` (all of them now when few, else slice by slice).
   * Frames that arrive while a group waits whose fan-out has not begun join that group
   * (when nobody joined since, up to MAX_BATCH_FRAMES): a subscriber that asked for
   * batches then gets them in one shared message, so a node that falls behind writes
   * fewer, larger messages and catches up.
   */
  frames(group: FrameGroup, subscribers: Set<Subscriber>): void {
    if (this.pending.length === 0 && (this.sliceSize <= 0 || subscribers.size <= this.sliceSize)) {
      this.joinedSinceSnapshot = false;
      for (const s of subscribers) s.deliverFrames(group);
      return;
    }
    const last = this.pending[this.pending.length - 1];
    if (last && last.next === 0 && !this.joinedSinceSnapshot && last.group.frames.length + group.frames.length <= MAX_BATCH_FRAMES) {
      last.group = last.group.merge(group);
    } else {
      this.pending.push({ group, subs: [...subscribers], next: 0 });
      this.joinedSinceSnapshot = false;
    }
    this.pendingFrames += group.frames.length;
    if (this.pendingFrames > this.maxPendingFrames) this.flush();
    else if (!this.scheduled) this.step(this.sliceSize);
  }

  /** Delivers everything still pending, now. */
  flush(): void {
    this.step(Infinity);
  }

  private step(budget: number): void {
    while (budget > 0 && this.pending.length > 0) {
      const p = this.pending[0] as { group: FrameGroup; subs: Subscriber[]; next: number };
      const end = Math.min(p.subs.length, p.next + budget);
      for (let i = p.next; i < end; i++) (p.subs[i] as Subscriber).deliverFrames(p.group);
      budget -= end - p.next;
      p.next = end;
      if (end === p.subs.length) {
        this.pending.shift();
        this.pendingFrames -= p.group.frames.length;
      }
    }
    if (this.pending.length > 0 && !this.scheduled) {
      this.scheduled = true;
      setImmediate(this.onTurn);
    }
  }
}

/** How a subscription ended. */
export interface Leave {
  reason: LeaveReason;
  /** The status to end the call with; undefined for OK (or nobody listening). */
  error?: Error;
}

/** Counters a node keeps over all subscribers of a stream. */
export interface DeliveryCounters {
  deliveredFrames: number;
  deliveredBytes: number;
}

/**
 * One subscriber's buffer, policy and meter.
 *
 * A subscriber that asked for batches (`maxBatch` > 1) has at most one message in the
 * transport at a time: frames that become ready while it is in flight wait here and go
 * out together, as one batch, when the transport took it. So a subscriber that keeps up
 * gets every frame at once in its own message, and one that falls behind (or a node that
 * falls behind) costs one message per round instead of one per frame. A subscriber that
 * did not ask for batches gets one message per frame, written while the transport
 * accepts them, as before batches existed.
 */
export class Subscriber {
  readonly joinedAt = new Date();
  /** Frames written to the subscriber's transport. */
  frames = 0;
  /** Payload bytes of those frames. */
  bytes = 0;
  /** Frames dropped for it (its own overflow and gaps from upstream). */
  droppedFrames = 0;
  private readonly queue: Item[] = [];
  private queuedFrames = 0;
  private blocked = false;
  private pumping = false;
  private inFlight = false;
  private ending: Leave | undefined;
  private left: Leave | undefined;
  private settle!: (l: Leave) => void;
  /** Settles once the subscription is over (never rejects). */
  readonly done: Promise<Leave>;
  private readonly maxBatch: number;
  private readonly onWritten = (err?: Error | null): void => this.written(err);
  /** A write failed: the call is going away (its cancellation ends the subscription). */
  private broken = false;

  constructor(
    readonly id: string,
    readonly peer: string,
    readonly stream: string,
    private readonly sink: FrameSink,
    private readonly opts: FanoutOptions,
    private readonly counters?: DeliveryCounters,
    maxBatchFrames = 1,
  ) {
    this.maxBatch = Math.max(1, Math.min(MAX_BATCH_FRAMES, maxBatchFrames));
    this.done = new Promise<Leave>((r) => (this.settle = r));
  }

  /** Frames waiting in this subscriber's buffer. */
  get bufferedFrames(): number {
    return this.queuedFrames;
  }

  /** True once the subscription is over. */
  get closed(): boolean {
    return this.left !== undefined;
  }

  /** Delivers frames that became ready together (their shared encoded bytes). */
  deliverFrames(group: FrameGroup): void {
    if (this.left || this.ending) return;
    const items = this.maxBatch > 1 ? group.batched(this.maxBatch) : group.single();
    for (let i = 0; i < items.length; i++) this.push(items[i] as FrameItem);
  }

  /** Delivers a message that is not a frame (started, or a gap from upstream). */
  deliverRaw(buf: Buffer, droppedFrames = 0): void {
    this.push({ kind: "raw", buf, droppedFrames });
  }

  /** Ends the subscription after everything buffered is written (end of stream or upstream error). */
  finish(leave: Leave): void {
    if (this.left || this.ending) return;
    this.ending = leave;
    if (!this.pumping && this.queue.length === 0) this.close(leave);
  }

  /** Ends the subscription now, dropping what is buffered (the subscriber went away). */
  cancel(reason: LeaveReason): void {
    this.close({ reason });
  }

  private close(leave: Leave): void {
    if (this.left) return;
    this.left = leave;
    this.queue.length = 0;
    this.queuedFrames = 0;
    this.settle(leave);
  }

  private push(item: Item): void {
    if (this.left || this.ending) return;
    if (this.maxBatch > 1) {
      if (!this.inFlight && this.queue.length === 0) this.writeOne(item);
      else this.enqueue(item);
      return;
    }
    if (!this.pumping && !this.blocked && this.queue.length === 0) {
      // Fast path: the transport takes it now.
      if (!this.sink.write(this.account(item))) this.blocked = true;
      return;
    }
    this.enqueue(item);
    if (!this.pumping && !this.left) void this.pump();
  }

  private enqueue(item: Item): void {
    this.queue.push(item);
    if (item.kind !== "frame") return;
    this.queuedFrames += item.to - item.from;
    while (this.queuedFrames > this.opts.maxBufferedFrames && !this.left) if (!this.overflow()) break;
  }

  /** Batch mode: hands one message to the transport; the next goes when it was taken. */
  private writeOne(item: Item): void {
    this.inFlight = true;
    this.sink.write(this.account(item), this.onWritten);
  }

  /** Batch mode: the transport took the message in flight; send what gathered meanwhile. */
  private written(err?: Error | null): void {
    this.inFlight = false;
    if (err) this.broken = true;
    if (this.left || this.broken) return;
    const head = this.queue.shift();
    if (!head) {
      if (this.ending) this.close(this.ending);
      return;
    }
    if (head.kind !== "frame") {
      this.writeOne(head);
      return;
    }
    // Consecutive frame messages merge into one batch of at most maxBatch frames.
    let n = head.to - head.from;
    let last = 0;
    while (last < this.queue.length) {
      const next = this.queue[last] as Item;
      if (next.kind !== "frame" || n + next.to - next.from > this.maxBatch) break;
      n += next.to - next.from;
      last++;
    }
    this.queuedFrames -= head.to - head.from;
    if (last === 0) {
      this.writeOne(head);
      return;
    }
    const list: WireFrame[] = head.list.slice(head.from, head.to);
    let payloadBytes = head.payloadBytes;
    for (const it of this.queue.splice(0, last) as FrameItem[]) {
      for (let i = it.from; i < it.to; i++) list.push(it.list[i] as WireFrame);
      payloadBytes += it.payloadBytes;
      this.queuedFrames -= it.to - it.from;
    }
    this.writeOne({ kind: "frame", framed: batchMessage(list, 0, list.length, true), list, from: 0, to: list.length, payloadBytes });
  }

  /** Applies the overflow policy once; false when nothing could be dropped. */
  private overflow(): boolean {
    if (this.opts.policy === "disconnect") {
      this.close({ reason: LeaveReason.TOO_SLOW, error: new SubscriberTooSlowError(this.stream, this.opts.maxBufferedFrames) });
      return false;
    }
    // Drop the oldest buffered frame message; a Gap takes its place. The common shapes
    // are O(1): [frame, ...] and [gap, frame, ...] (the gap grows as the subscriber stays behind).
    const q = this.queue;
    let i = 0;
    while (i < q.length && q[i]?.kind !== "frame") i++;
    const dropped = q[i];
    if (!dropped || dropped.kind !== "frame") return false;
    const count = dropped.to - dropped.from;
    const first = (dropped.list[dropped.from] as WireFrame).sequence;
    const last = (dropped.list[dropped.to - 1] as WireFrame).sequence;
    this.queuedFrames -= count;
    this.droppedFrames += count;
    const before = q[i - 1];
    if (before?.kind === "gap" && before.last + 1 === first) {
      before.last = last;
      before.frames += count;
      if (i === 1) {
        q.shift(); // the gap...
        q[0] = before; // ...moves into the dropped frame's slot
      } else {
        q.splice(i, 1);
      }
    } else {
      q[i] = { kind: "gap", first, last, frames: count };
    }
    return true;
  }

  /** Meters an item as it is handed to the transport; returns its framed bytes. */
  private account(item: Item): Buffer {
    let buf: Buffer;
    if (item.kind === "frame") {
      buf = item.framed;
      const n = item.to - item.from;
      this.frames += n;
      this.bytes += item.payloadBytes;
      if (this.counters) this.counters.deliveredFrames += n;
    } else if (item.kind === "gap") {
      buf = grpcFramed(
        encodeEvent({
          event: { $case: "gap", value: { firstSequence: BigInt(item.first), lastSequence: BigInt(item.last), frames: BigInt(item.frames) } },
        }),
      );
    } else {
      buf = grpcFramed(item.buf);
      this.droppedFrames += item.droppedFrames;
    }
    // Message bytes, gRPC's prefix excluded (as the source's egress counters always were).
    if (this.counters) this.counters.deliveredBytes += buf.length - GRPC_PREFIX_BYTES;
    return buf;
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (this.queue.length > 0 && !this.left) {
        const item = this.queue.shift() as Item;
        if (item.kind === "frame") this.queuedFrames -= item.to - item.from;
        await this.sink.send(this.account(item));
      }
      this.blocked = false;
    } catch {
      // The call is gone; the handler sees its abort signal and cancels.
    } finally {
      this.pumping = false;
    }
    if (this.ending && this.queue.length === 0) this.close(this.ending);
  }
}
