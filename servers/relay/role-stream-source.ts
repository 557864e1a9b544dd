/**
 * Role "stream-source": serves live streams (published over StreamSourceService.Publish or
 * produced by built-in generators) to subscribers and relays, and stores the usage
 * records relays report, once per record id.
 */
import { isAbsolute, resolve } from "node:path";
import { setMaxListeners } from "node:events";
import { z } from "zod";
import { StreamSourceWireService } from "../../clients/relay/index.js";
import { UnavailableError } from "../runtime/errors.js";
import type { RoleDefinition } from "../runtime/role.js";
import { bytes, duration } from "../runtime/units.js";
import { RELAY_DOMAIN } from "./errors.js";
import { generatorSchema, startGenerator, type Generator } from "./generators.js";
import { checkUsageReporter, fanoutSchema, relayTrustSchema, subscriberIdentity } from "./shared.js";
import { frameSinkFor } from "./sink.js";
import { StreamSourceCore } from "./source.js";

const schema = z.strictObject({
  generators: z.array(generatorSchema).default([]).describe("built-in streams started with the node; default none"),
  maxFrameBytes: bytes().default(1024 * 1024).describe("largest frame a publisher may send; default 1MiB"),
  halfCloseGrace: duration().default(200).describe("wait after a Publish half-close without end_of_stream before ending the stream normally; default 200ms"),
  usageRetention: duration().default(90 * 86_400_000).describe("how long usage records (and their dedup) are kept; default 90d"),
  ...fanoutSchema,
  ...relayTrustSchema,
});

/** Resolved config of a stream source. */
export type StreamSourceConfig = z.output<typeof schema>;

/** The stream-source role. */
export const streamSourceRole: RoleDefinition<StreamSourceConfig> = {
  role: "stream-source",
  summary: "publishes live streams (publishers or built-in generators) and collects relays' usage records",
  configSchema: schema as unknown as z.ZodType<StreamSourceConfig>,
  async create(ctx) {
    const cfg = ctx.config.roleConfig;
    const relays: ReadonlySet<string> = new Set(cfg.relayIdentities);
    // The runtime hangs a listener per open call on the shutdown signal; thousands of
    // subscribers are normal here.
    setMaxListeners(0, ctx.shutdown);
    const core = new StreamSourceCore(
      ctx.store,
      {
        fanout: { maxBufferedFrames: cfg.maxBufferedFrames, policy: cfg.slowSubscriberPolicy, sliceSize: cfg.fanoutSlice },
        maxFrameBytes: cfg.maxFrameBytes,
        usageRetentionMs: cfg.usageRetention,
        halfCloseGraceMs: cfg.halfCloseGrace,
        sourceId: ctx.config.node.id,
        shutdown: ctx.shutdown,
      },
      ctx.log,
    );
    const generators: Generator[] = [];
    const resolvePath = (p: string): string => (isAbsolute(p) ? p : resolve(p));
    try {
      for (const g of cfg.generators) generators.push(startGenerator(core, g, resolvePath));
    } catch (err) {
      generators.forEach((g) => g.stop());
      throw err;
    }
    const service = ctx.implement(StreamSourceWireService, {
      publish: async (requests, call) => {
        const r = await core.publish(requests, call.signal);
        return { frames: BigInt(r.frames), firstSequence: BigInt(r.first), lastSequence: BigInt(r.last) };
      },
      subscribe: async (req, sink, call) => {
        const leave = await core.subscribe(req.stream, subscriberIdentity(req.subscriberId, call, relays), frameSinkFor(sink, cfg.directWrites), call.signal, req.maxBatchFrames);
        if (leave.error) throw leave.error;
      },
      reportUsage: async (req, call) => {
        checkUsageReporter(call, relays);
        return core.reportUsage(req.records);
      },
      listStreams: async (req) => {
        const page = core.listStreams(req.pageSize, req.pageToken);
        return { streams: page.streams, nextPageToken: page.next };
      },
      listUsage: async (req) => {
        const page = await core.listUsage(req.stream, req.pageSize, req.pageToken);
        return { records: page.records, nextPageToken: page.next };
      },
    });
    return {
      services: [service],
      load: () => {
        let subscribers = 0;
        for (const s of core.streams.values()) subscribers += s.subscribers.size;
        return { figures: { streams: core.streams.size, subscribers } };
      },
      stop: async () => {
        generators.forEach((g) => g.stop());
        await core.flush();
        core.closeAll(new UnavailableError("the stream source is shutting down", { reason: "NODE_SHUTTING_DOWN", domain: RELAY_DOMAIN, retryDelayMs: 1000 }));
      },
    };
  },
};
