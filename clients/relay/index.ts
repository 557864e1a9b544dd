/**
 * Client library of the Relay subsystem: subscribe to a live stream at a source or at any
 * relay (the call is the same), publish frames, and the operator calls (streams, usage,
 * relay sessions). Relays use it to talk to their upstream.
 *
 * Subscriptions are read as raw message bytes (`subscribeRaw`) or as decoded events
 * (`subscribe`). Relays use the raw form: a frame received from upstream is forwarded as
 * the same bytes to every subscriber, never re-encoded.
 */
import {
  makeGenericClientConstructor,
  Metadata,
  type CallOptions,
  type Client,
  type ClientReadableStream,
  type ClientWritableStream,
  type ServiceError,
} from "@grpc/grpc-js";
import { ListSessionsResponse, RelayServiceClient } from "../../gen/switchyard/relay/v1/relay_service.js";
import { UpstreamState, type UpstreamSession } from "../../gen/switchyard/relay/v1/session.js";
import type { Frame, Gap, StreamInfo, SubscriptionStarted } from "../../gen/switchyard/relay/v1/stream.js";
import { StreamOrigin } from "../../gen/switchyard/relay/v1/stream.js";
import {
  ListStreamsResponse,
  ListUsageResponse,
  PublishRequest,
  PublishResponse,
  ReportUsageResponse,
  StreamSourceServiceClient,
  StreamSourceServiceService,
  SubscribeRequest,
  SubscribeResponse,
} from "../../gen/switchyard/relay/v1/stream_source_service.js";
import { LeaveReason, type UsageRecord } from "../../gen/switchyard/relay/v1/usage.js";
import { dial, type ChannelSettings, type ClientConstructor } from "../grpc/channel.js";
import { cancelledError, unary, type CallSettings } from "../grpc/call.js";

export type { Frame, Gap, StreamInfo, SubscriptionStarted, UsageRecord, UpstreamSession, PublishResponse, ReportUsageResponse };
export { LeaveReason, StreamOrigin, UpstreamState, SubscribeResponse, SubscribeRequest, PublishRequest, ListSessionsResponse };

const passThrough = (b: Buffer): Buffer => b;

/**
 * StreamSourceService with Subscribe responses kept as raw bytes on both sides: a server
 * writes pre-encoded SubscribeResponse buffers (encoded once, written to every
 * subscriber), a client receives the bytes undecoded.
 */
export const StreamSourceWireService = {
  ...StreamSourceServiceService,
  subscribe: {
    ...StreamSourceServiceService.subscribe,
    responseSerialize: passThrough,
    responseDeserialize: passThrough,
  },
} as const;

/** The generated client with Subscribe returning raw SubscribeResponse bytes. */
export type StreamSourceWireClient = Omit<StreamSourceServiceClient, "subscribe"> & {
  subscribe(request: SubscribeRequest, metadata?: Metadata, options?: Partial<CallOptions>): ClientReadableStream<Buffer>;
};

const WireClient = makeGenericClientConstructor(
  StreamSourceWireService,
  "switchyard.relay.v1.StreamSourceService",
) as unknown as ClientConstructor<StreamSourceWireClient & Client>;

/** Encodes a SubscribeResponse once into a Buffer that shares the encoder's memory. */
export function encodeEvent(event: SubscribeResponse): Buffer {
  const u8 = SubscribeResponse.encode(event).finish();
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** One decoded event of a subscription. */
export type SubscriptionEvent =
  | { type: "started"; started: SubscriptionStarted }
  | { type: "frame"; frame: Frame }
  | { type: "gap"; gap: Gap };

/**
 * Decodes the raw bytes of one SubscribeResponse into its events: one event, or one
 * `frame` event per frame of a batch (sent only to subscribers that asked for batches).
 */
export function decodeEvents(buf: Uint8Array): SubscriptionEvent[] {
  const ev = SubscribeResponse.decode(buf).event;
  switch (ev?.$case) {
    case "started":
      return [{ type: "started", started: ev.value }];
    case "frame":
      return [{ type: "frame", frame: ev.value }];
    case "gap":
      return [{ type: "gap", gap: ev.value }];
    case "batch":
      return ev.value.frames.map((frame) => ({ type: "frame", frame }));
    default:
      throw new Error("SubscribeResponse without an event");
  }
}

/** Decodes the raw bytes of one SubscribeResponse that is not a batch. */
export function decodeEvent(buf: Uint8Array): SubscriptionEvent {
  const evs = decodeEvents(buf);
  if (evs.length !== 1) throw new Error(`expected one event, got a batch of ${evs.length} frames (use decodeEvents)`);
  return evs[0] as SubscriptionEvent;
}

/** Options of a subscription. */
export interface SubscribeOptions {
  /** Identity for usage records (not verified; mTLS certificates win). */
  subscriberId?: string;
  /** Cancels the subscription (the subscriber leaves). */
  signal?: AbortSignal;
  /** Request metadata. */
  metadata?: Metadata;
  /**
   * Most frames per message (SubscribeRequest.max_batch_frames). `subscribeRaw` defaults
   * to 0 (one frame per message); `subscribe` defaults to 256 (it expands batches).
   */
  maxBatchFrames?: number;
}

/** A client of StreamSourceService, pointed at a source or at a relay alike. */
export class StreamSourceClient {
  /** The underlying grpc-js client (Subscribe in raw form). */
  readonly client: StreamSourceWireClient & Client;

  constructor(
    readonly target: string,
    settings: ChannelSettings = {},
  ) {
    this.client = dial(WireClient, target, settings);
  }

  /**
   * Opens a subscription whose messages arrive as raw SubscribeResponse bytes. The first
   * message is `started`; the call ends with OK at end of stream or with an error status.
   */
  subscribeRaw(stream: string, opts: SubscribeOptions = {}): ClientReadableStream<Buffer> {
    const call = this.client.subscribe(
      { stream, subscriberId: opts.subscriberId ?? "", maxBatchFrames: opts.maxBatchFrames ?? 0 },
      opts.metadata ?? new Metadata(),
      {},
    );
    if (opts.signal) {
      const onAbort = (): void => call.cancel();
      if (opts.signal.aborted) onAbort();
      else opts.signal.addEventListener("abort", onAbort, { once: true });
      call.once("status", () => opts.signal?.removeEventListener("abort", onAbort));
    }
    return call;
  }

  /**
   * The events of a subscription, decoded. Ends quietly at end of stream or when `signal`
   * aborts; throws the call's error status otherwise.
   */
  async *subscribe(stream: string, opts: SubscribeOptions = {}): AsyncGenerator<SubscriptionEvent> {
    const call = this.subscribeRaw(stream, { maxBatchFrames: 256, ...opts });
    try {
      for await (const buf of call as AsyncIterable<Buffer>) yield* decodeEvents(buf);
    } catch (err) {
      if (!opts.signal?.aborted) throw err;
    } finally {
      call.cancel();
    }
  }

  /**
   * Opens a Publish call: write PublishRequest messages (the first names the stream),
   * then `end()` it; `response` settles when the source answers.
   */
  openPublish(s: CallSettings = {}): { call: ClientWritableStream<PublishRequest>; response: Promise<PublishResponse> } {
    let call!: ClientWritableStream<PublishRequest>;
    const response = new Promise<PublishResponse>((resolve, reject) => {
      const options: Partial<CallOptions> = s.deadline !== undefined ? { deadline: s.deadline } : { deadline: Infinity };
      call = this.client.publish(s.metadata ?? new Metadata(), options, (err: ServiceError | null, res?: PublishResponse) => {
        if (err) reject(err);
        else if (res) resolve(res);
        else reject(new Error("Publish answered without a response"));
      });
    });
    if (s.signal) {
      const onAbort = (): void => call.cancel();
      if (s.signal.aborted) onAbort();
      else s.signal.addEventListener("abort", onAbort, { once: true });
      response.then(
        () => s.signal?.removeEventListener("abort", onAbort),
        () => s.signal?.removeEventListener("abort", onAbort),
      );
    }
    return { call, response };
  }

  /** Publishes every payload of `frames` into `stream`, then ends the stream. */
  async publish(stream: string, frames: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, s: CallSettings = {}): Promise<PublishResponse> {
    if (s.signal?.aborted) throw cancelledError(s.signal);
    const { call, response } = this.openPublish(s);
    // Surface an early rejection (e.g. the stream name is taken) instead of writing on.
    let failed: unknown;
    response.catch((err: unknown) => (failed = err));
    let first = true;
    try {
      for await (const payload of frames) {
        if (failed !== undefined) break;
        const buf = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
        const ok = call.write({ stream: first ? stream : "", payload: buf, endOfStream: false });
        first = false;
        if (!ok) await new Promise<void>((r) => call.once("drain", r));
      }
      call.write({ stream: first ? stream : "", payload: Buffer.alloc(0), endOfStream: true });
    } catch (err) {
      call.cancel();
      throw err;
    }
    call.end();
    return response;
  }

  /** Reports usage records (idempotent by record id). */
  reportUsage(records: UsageRecord[], s?: CallSettings): Promise<ReportUsageResponse> {
    return unary(this.client, this.client.reportUsage, { records }, s);
  }

  /** Every live stream (all pages). */
  async listStreams(s?: CallSettings): Promise<StreamInfo[]> {
    const out: StreamInfo[] = [];
    let pageToken = "";
    do {
      const res: ListStreamsResponse = await unary(this.client, this.client.listStreams, { pageSize: 1000, pageToken }, s);
      out.push(...res.streams);
      pageToken = res.nextPageToken;
    } while (pageToken);
    return out;
  }

  /** Every stored usage record, optionally of one stream only (all pages). */
  async listUsage(stream = "", s?: CallSettings): Promise<UsageRecord[]> {
    const out: UsageRecord[] = [];
    let pageToken = "";
    do {
      const res: ListUsageResponse = await unary(this.client, this.client.listUsage, { stream, pageSize: 1000, pageToken }, s);
      out.push(...res.records);
      pageToken = res.nextPageToken;
    } while (pageToken);
    return out;
  }

  /** Closes the channel. */
  close(): void {
    this.client.close();
  }
}

/** A client of a relay's operator service. */
export class RelayClient {
  readonly client: RelayServiceClient;

  constructor(
    readonly target: string,
    settings: ChannelSettings = {},
  ) {
    this.client = dial(RelayServiceClient, target, settings);
  }

  /** Every upstream session of the relay, with its subscribers and pending usage (all pages). */
  async listSessions(s?: CallSettings): Promise<ListSessionsResponse> {
    let pageToken = "";
    let all: ListSessionsResponse | undefined;
    do {
      const res = await unary(this.client, this.client.listSessions, { pageSize: 1000, pageToken }, s);
      if (all) all.sessions.push(...res.sessions);
      else all = res;
      pageToken = res.nextPageToken;
    } while (pageToken);
    all.nextPageToken = "";
    return all;
  }

  /** Closes the channel. */
  close(): void {
    this.client.close();
  }
}
