/**
 * Client for the NodeService and the standard health service that every Switchyard node
 * serves. Used by `switchyard status`, by Reception and Content to follow node load, and
 * by tests.
 */
import type { ClientReadableStream } from "@grpc/grpc-js";
import {
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthClient,
} from "../../gen/grpc/health/v1/health.js";
import type { LoadReport, NodeInfo } from "../../gen/switchyard/node/v1/node.js";
import { NodeServiceClient, type WatchLoadResponse } from "../../gen/switchyard/node/v1/node_service.js";
import { dial, type ChannelSettings } from "../grpc/channel.js";
import { unary, type CallSettings } from "../grpc/call.js";
import { msToDuration } from "../grpc/duration.js";

export type { LoadReport, NodeInfo };
export { ServingStatus };

/** A connection to one node's NodeService and health service. */
export class NodeClient {
  /** The generated NodeService client, for calls this wrapper does not cover. */
  readonly node: NodeServiceClient;
  /** The generated grpc.health.v1 client. */
  readonly health: HealthClient;

  constructor(
    readonly target: string,
    settings: ChannelSettings = {},
  ) {
    this.node = dial(NodeServiceClient, target, settings);
    // Same channel options, separate channel; both close in close().
    this.health = dial(HealthClient, target, settings);
  }

  /** The node's identity. */
  async info(s?: CallSettings): Promise<NodeInfo> {
    const res = await unary(this.node, this.node.getNodeInfo, {}, s);
    if (!res.info) throw new Error("node answered GetNodeInfo without info");
    return res.info;
  }

  /** A fresh load report. */
  async load(s?: CallSettings): Promise<LoadReport> {
    const res = await unary(this.node, this.node.getLoad, {}, s);
    if (!res.load) throw new Error("node answered GetLoad without load");
    return res.load;
  }

  /** Health of one service ("" = the whole node). */
  async check(service = "", s?: CallSettings): Promise<ServingStatus> {
    const res = await unary(this.health, this.health.check, { service }, s);
    return res.status;
  }

  /** Load reports every `intervalMs` until `signal` aborts or the stream fails. */
  async *watchLoad(intervalMs: number, signal?: AbortSignal): AsyncGenerator<LoadReport> {
    const call: ClientReadableStream<WatchLoadResponse> = this.node.watchLoad({ interval: msToDuration(intervalMs) });
    const onAbort = (): void => call.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const msg of call as AsyncIterable<WatchLoadResponse>) {
        if (msg.load) yield msg.load;
      }
    } catch (err) {
      if (!signal?.aborted) throw err; // cancelled on purpose: end quietly
    } finally {
      signal?.removeEventListener("abort", onAbort);
      call.cancel();
    }
  }

  /** Closes both channels. */
  close(): void {
    this.node.close();
    this.health.close();
  }
}
