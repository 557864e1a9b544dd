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
import { SubscriberTooSlowError } from "./errors.js";
import { LeaveReason } from "../../gen/switchyard/relay/v1/usage.js";

/** What a subscriber does when its buffer overflows. */
export type SlowSubscriberPolicy = "drop-oldest" | "disconnect";

/** Buffer bound and overflow policy of every subscriber of a node. */
export interface FanoutOptions {
  /** Frames that may wait for one subscriber before the policy applies. */
  maxBufferedFrames: number;
  policy: SlowSubscriberPolicy;
}

/** The part of a server stream the fan-out writes to (grpc-js backpressure semantics). */
export interface FrameSink {
  /** Writes; false when the transport is over its high-water mark. */
  write(buf: Buffer): boolean;
  /** Writes and resolves once the transport drained below its high-water mark. */
  send(buf: Buffer): Promise<void>;
}

/** One item waiting for a subscriber. */
type Item =
  | { kind: "frame"; buf: Buffer; sequence: number; payloadBytes: number }
  | { kind: "gap"; first: number; last: number; frames: number }
  | { kind: "raw"; buf: Buffer; droppedFrames: number };

/** Frame delivered to subscribers: encoded once, shared by all. */
export interface EncodedFrame {
  /** The encoded SubscribeResponse{frame}. */
  buf: Buffer;
  sequence: number;
  /** Length of the frame's payload (what usage records count). */
  payloadBytes: number;
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

/** One subscriber's buffer, policy and meter. */
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
  private ending: Leave | undefined;
  private left: Leave | undefined;
  private settle!: (l: Leave) => void;
  /** Settles once the subscription is over (never rejects). */
  readonly done: Promise<Leave>;

  constructor(
    readonly id: string,
    readonly peer: string,
    readonly stream: string,
    private readonly sink: FrameSink,
    private readonly opts: FanoutOptions,
    private readonly counters?: DeliveryCounters,
  ) {
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

  /** Delivers one frame (the shared encoded bytes). */
  deliverFrame(f: EncodedFrame): void {
    this.push({ kind: "frame", buf: f.buf, sequence: f.sequence, payloadBytes: f.payloadBytes });
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
    if (!this.pumping && !this.blocked && this.queue.length === 0) {
      // Fast path: the transport takes it now.
      if (!this.sink.write(this.account(item))) this.blocked = true;
      return;
    }
    this.queue.push(item);
    if (item.kind === "frame" && ++this.queuedFrames > this.opts.maxBufferedFrames) this.overflow();
    if (!this.pumping && !this.left) void this.pump();
  }

  private overflow(): void {
    if (this.opts.policy === "disconnect") {
      this.close({ reason: LeaveReason.TOO_SLOW, error: new SubscriberTooSlowError(this.stream, this.opts.maxBufferedFrames) });
      return;
    }
    // Drop the oldest buffered frame; a Gap takes its place. The common shapes are O(1):
    // [frame, ...] and [gap, frame, ...] (the gap grows as the subscriber stays behind).
    const q = this.queue;
    let i = 0;
    while (i < q.length && q[i]?.kind !== "frame") i++;
    const dropped = q[i];
    if (!dropped || dropped.kind !== "frame") return;
    this.queuedFrames--;
    this.droppedFrames++;
    const before = q[i - 1];
    if (before?.kind === "gap" && before.last + 1 === dropped.sequence) {
      before.last = dropped.sequence;
      before.frames++;
      if (i === 1) {
        q.shift(); // the gap...
        q[0] = before; // ...moves into the dropped frame's slot
      } else {
        q.splice(i, 1);
      }
    } else {
      q[i] = { kind: "gap", first: dropped.sequence, last: dropped.sequence, frames: 1 };
    }
  }

  /** Meters an item as it is handed to the transport; returns its bytes. */
  private account(item: Item): Buffer {
    let buf: Buffer;
    if (item.kind === "frame") {
      buf = item.buf;
      this.frames++;
      this.bytes += item.payloadBytes;
      if (this.counters) this.counters.deliveredFrames++;
    } else if (item.kind === "gap") {
      buf = encodeEvent({
        event: { $case: "gap", value: { firstSequence: BigInt(item.first), lastSequence: BigInt(item.last), frames: BigInt(item.frames) } },
      });
    } else {
      buf = item.buf;
      this.droppedFrames += item.droppedFrames;
    }
    if (this.counters) this.counters.deliveredBytes += buf.length;
    return buf;
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (this.queue.length > 0 && !this.left) {
        const item = this.queue.shift() as Item;
        if (item.kind === "frame") this.queuedFrames--;
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
