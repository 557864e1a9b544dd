/**
 * Role "relay": serves StreamSourceService exactly like a source (subscribers cannot tell
 * the difference) by joining all its subscribers of a stream onto one upstream
 * subscription, metering each subscriber and reporting its usage upstream when it leaves;
 * plus RelayService.ListSessions for operators. The upstream is a source or another relay.
 */
import { setMaxListeners } from "node:events";
import { z } from "zod";
import { remainingMs } from "../../clients/grpc/channel.js";
import { unary } from "../../clients/grpc/call.js";
import { StreamSourceClient, StreamSourceWireService } from "../../clients/relay/index.js";
import { RelayServiceService } from "../../gen/switchyard/relay/v1/relay_service.js";
import { SwitchyardError } from "../runtime/errors.js";
import type { RoleDefinition } from "../runtime/role.js";
import type { CallContext } from "../runtime/service.js";
import { duration, hostPort } from "../runtime/units.js";
import { badField, upstreamFailure } from "./errors.js";
import { UsageOutbox } from "./outbox.js";
import { RelayCore } from "./relay.js";
import { checkUsageReporter, fanoutSchema, relayTrustSchema, subscriberIdentity } from "./shared.js";
import { frameSinkFor } from "./sink.js";
import { checkRecords, checkStreamName, MAX_RECORDS_PER_REPORT, toStored } from "./usage.js";

const schema = z.strictObject({
  upstream: hostPort().describe("address of the upstream: a stream-source or another relay (required)"),
  linger: duration().default(5000).describe("how long an upstream with no subscribers stays open; default 5s"),
  upstreamOpenTimeout: duration().default(10_000).describe("how long the upstream may take to confirm a subscription; default 10s"),
  ...fanoutSchema,
  ...relayTrustSchema,
  usageReport: z
    .strictObject({
      batchSize: z.number().int().min(1).max(MAX_RECORDS_PER_REPORT).default(100).describe("records per ReportUsage call; default 100"),
      retryMin: duration().default(200).describe("first wait after a failed report; default 200ms"),
      retryMax: duration().default(10_000).describe("longest wait between report attempts; default 10s"),
      callTimeout: duration().default(5000).describe("deadline of one ReportUsage call; default 5s"),
    })
    .prefault({}),
});

/** Resolved config of a relay. */
export type RelayConfig = z.output<typeof schema>;

/** Deadline for a forwarded unary call: the caller's, else the channel default. */
function forwardDeadline(call: CallContext, fallbackMs: number): number {
  const left = remainingMs(call.deadline);
  return Date.now() + (Number.isFinite(left) ? Math.max(0, left) : fallbackMs);
}

/** The relay role. */
export const relayRole: RoleDefinition<RelayConfig> = {
  role: "relay",
  summary: "joins many subscribers of a stream onto one upstream subscription, meters and reports their usage",
  configSchema: schema as unknown as z.ZodType<RelayConfig>,
  async create(ctx) {
    const cfg = ctx.config.roleConfig;
    const relays: ReadonlySet<string> = new Set(cfg.relayIdentities);
    // The runtime hangs a listener per open call on the shutdown signal; thousands of
    // subscribers are normal here.
    setMaxListeners(0, ctx.shutdown);
    const relayId = ctx.config.node.id;
    const upstream = new StreamSourceClient(cfg.upstream, ctx.channel);
    const outbox = new UsageOutbox(
      ctx.store,
      upstream,
      { batchSize: cfg.usageReport.batchSize, retryMinMs: cfg.usageReport.retryMin, retryMaxMs: cfg.usageReport.retryMax, callTimeoutMs: cfg.usageReport.callTimeout },
      ctx.log,
    );
    const core = new RelayCore(
      upstream,
      outbox,
      {
        relayId,
        upstream: cfg.upstream,
        fanout: { maxBufferedFrames: cfg.maxBufferedFrames, policy: cfg.slowSubscriberPolicy, sliceSize: cfg.fanoutSlice },
        lingerMs: cfg.linger,
        upstreamOpenTimeoutMs: cfg.upstreamOpenTimeout,
      },
      ctx.log,
      ctx.shutdown,
    );
    const defaultMs = ctx.channel.defaultDeadlineMs ?? 10_000;
    const forwardError = (err: unknown, stream: string): never => {
      if (err instanceof SwitchyardError) throw err;
      throw upstreamFailure(err, stream, cfg.upstream);
    };

    const source = ctx.implement(StreamSourceWireService, {
      publish: async (requests, call) => {
        // Forwarded message by message. A publisher that goes away cancels the upstream
        // call too (through the signal), so the source tells subscribers PUBLISHER_LOST.
        const { call: up, response } = upstream.openPublish({ signal: call.signal });
        let settled = false;
        response.then(
          () => (settled = true),
          () => (settled = true),
        );
        let stream = "";
        try {
          for await (const r of requests) {
            if (!stream) {
              checkStreamName(r.stream);
              stream = r.stream;
            }
            if (settled) break; // the upstream answered early (an error): stop reading
            if (!up.write(r)) await new Promise<void>((resolve) => {
              up.once("drain", resolve);
              response.then(() => resolve(), () => resolve());
            });
            if (r.endOfStream) break;
          }
          if (!stream) throw badField("stream", "the Publish call sent no message", "STREAM_NAME_REQUIRED");
        } catch (err) {
          up.cancel();
          throw err;
        }
        up.end();
        try {
          return await response;
        } catch (err) {
          return forwardError(err, stream);
        }
      },
      subscribe: async (req, sink, call) => {
        const leave = await core.subscribe(req.stream, subscriberIdentity(req.subscriberId, call, relays), frameSinkFor(sink, cfg.directWrites), call.signal, req.maxBatchFrames);
        if (leave.error) throw leave.error;
      },
      reportUsage: async (req, call) => {
        // Records of relays below this one: store first, acknowledge, forward upstream.
        checkUsageReporter(call, relays);
        checkRecords(req.records);
        await outbox.add(req.records.map(toStored));
        return { acceptedRecordIds: req.records.map((r) => r.recordId), duplicateRecordIds: [] };
      },
      listStreams: async (req, call) => {
        try {
          return await unary(upstream.client, upstream.client.listStreams, req, { deadline: forwardDeadline(call, defaultMs), signal: call.signal });
        } catch (err) {
          return forwardError(err, "");
        }
      },
      listUsage: async (req, call) => {
        try {
          return await unary(upstream.client, upstream.client.listUsage, req, { deadline: forwardDeadline(call, defaultMs), signal: call.signal });
        } catch (err) {
          return forwardError(err, req.stream);
        }
      },
    });
    const operator = ctx.implement(RelayServiceService, {
      listSessions: async (req) => core.listSessions(req.pageSize, req.pageToken),
    });

    return {
      services: [source, operator],
      load: () => ({
        figures: {
          sessions: core.sessionCount(),
          subscribers: core.subscriberCount(),
          pending_usage_records: outbox.pending,
          upstream_opened_total: core.upstreamOpened,
        },
      }),
      start: () => outbox.start(),
      stop: async () => {
        await core.stop();
        await outbox.stop();
        upstream.close();
      },
    };
  },
};
