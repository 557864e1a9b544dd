/** Shared helpers of the relay tests: nodes, subscribers that record what they got. */
import type { ClientReadableStream } from "@grpc/grpc-js";
import type { ChannelSettings } from "../../clients/grpc/channel.js";
import { parseRichError } from "../../clients/grpc/rich-error.js";
import { decodeEvents, RelayClient, StreamSourceClient, type SubscriptionEvent } from "../../clients/relay/index.js";
import { relayRole } from "../../servers/relay/role-relay.js";
import { streamSourceRole } from "../../servers/relay/role-stream-source.js";
import type { RunningNode } from "../../servers/runtime/node.js";
import { eventually, onCleanup, startTestNode } from "../helpers/nodes.js";

/** Starts a stream-source node in this process. */
export function startSource(roleConfig: Record<string, unknown> = {}, opts: { id?: string; dataDir?: string; listen?: string; config?: Record<string, unknown> } = {}): Promise<RunningNode> {
  return startTestNode(streamSourceRole, {
    id: opts.id ?? "source-1",
    roleConfig,
    ...(opts.dataDir ? { dataDir: opts.dataDir } : {}),
    ...(opts.listen || opts.config ? { config: { ...opts.config, ...(opts.listen ? { node: { listen: opts.listen } } : {}) } } : {}),
  });
}

/** Starts a relay node in this process. */
export function startRelay(upstream: string, roleConfig: Record<string, unknown> = {}, opts: { id?: string; dataDir?: string; config?: Record<string, unknown> } = {}): Promise<RunningNode> {
  return startTestNode(relayRole, {
    id: opts.id ?? "relay-1",
    roleConfig: { upstream, linger: "200ms", usageReport: { retryMin: "50ms", retryMax: "300ms" }, ...roleConfig },
    ...(opts.dataDir ? { dataDir: opts.dataDir } : {}),
    ...(opts.config ? { config: opts.config } : {}),
  });
}

/** A StreamSourceClient closed after the test. */
export function sourceClient(address: string, settings: ChannelSettings = {}): StreamSourceClient {
  const c = new StreamSourceClient(address, settings);
  onCleanup(() => c.close());
  return c;
}

/** A RelayClient closed after the test. */
export function relayClient(address: string, settings: ChannelSettings = {}): RelayClient {
  const c = new RelayClient(address, settings);
  onCleanup(() => c.close());
  return c;
}

/** A subscriber that records every event and how its call ended. */
export class RecordingSubscriber {
  readonly events: SubscriptionEvent[] = [];
  readonly call: ClientReadableStream<Buffer>;
  /** Settles with the final status (code 0 = OK) once the call is over. */
  readonly ended: Promise<{ code: number; message: string; reason?: string }>;
  started = false;

  /** Messages received (a batch counts once). */
  messages = 0;

  constructor(client: StreamSourceClient, stream: string, subscriberId: string, maxBatchFrames = 0) {
    this.call = client.subscribeRaw(stream, { subscriberId, maxBatchFrames });
    this.call.on("data", (b: Buffer) => {
      this.messages++;
      for (const ev of decodeEvents(b)) {
        if (ev.type === "started") this.started = true;
        this.events.push(ev);
      }
    });
    this.ended = new Promise((resolve) => {
      this.call.on("error", (err) => {
        const st = parseRichError(err);
        resolve({ code: st.code, message: st.message, ...(st.errorInfo ? { reason: st.errorInfo.reason } : {}) });
      });
      this.call.on("end", () => resolve({ code: 0, message: "" }));
    });
    onCleanup(() => this.call.cancel());
  }

  /** Frames received. */
  get frames(): { sequence: number; payload: Buffer }[] {
    return this.events.flatMap((e) => (e.type === "frame" ? [{ sequence: Number(e.frame.sequence), payload: e.frame.payload }] : []));
  }

  /** Payload bytes received. */
  get bytes(): number {
    return this.frames.reduce((n, f) => n + f.payload.length, 0);
  }

  /** Waits for the started message. */
  async whenStarted(): Promise<void> {
    await eventually(() => this.started, 10_000, 10);
  }

  /** Leaves (cancels the call). */
  leave(): void {
    this.call.cancel();
  }
}

/** Subscribes and waits until the subscription is in place. */
export async function subscribed(client: StreamSourceClient, stream: string, subscriberId: string, maxBatchFrames = 0): Promise<RecordingSubscriber> {
  const s = new RecordingSubscriber(client, stream, subscriberId, maxBatchFrames);
  await Promise.race([
    s.whenStarted(),
    s.ended.then((st) => {
      throw new Error(`subscription ended before it started: ${st.code} ${st.message}`);
    }),
  ]);
  return s;
}

/** An open Publish call that a test feeds frame by frame. */
export function publisher(client: StreamSourceClient, stream: string): { send(payload: string | Buffer): void; end(): Promise<unknown>; cancel(): void; response: Promise<unknown> } {
  const { call, response } = client.openPublish();
  response.catch(() => undefined);
  let first = true;
  onCleanup(() => call.cancel());
  return {
    send(payload) {
      call.write({ stream: first ? stream : "", payload: Buffer.isBuffer(payload) ? payload : Buffer.from(payload), endOfStream: false });
      first = false;
    },
    end() {
      call.write({ stream: first ? stream : "", payload: Buffer.alloc(0), endOfStream: true });
      call.end();
      return response;
    },
    cancel() {
      call.cancel();
    },
    response,
  };
}

/** Waits until the source lists `stream`. */
export async function streamListed(client: StreamSourceClient, stream: string): Promise<void> {
  await eventually(async () => (await client.listStreams()).some((s) => s.name === stream), 10_000, 20);
}
