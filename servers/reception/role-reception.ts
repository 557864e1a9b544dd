/**
 * Role "reception": admits orders for content. Content servers register and stream their
 * load to it; it hands out sealed tickets for the least-loaded server or a wait estimate.
 */
import { z } from "zod";
import { ReceptionServiceService } from "../../gen/switchyard/reception/v1/reception_service.js";
import type { RoleDefinition, RoleInstance } from "../runtime/role.js";
import { duration } from "../runtime/units.js";
import { keyList } from "./config.js";
import { Reception } from "./reception.js";

const schema = z
  .strictObject({
    masterKeys: keyList("master key").describe("ticket master keys [{id, secret}]; secrets are 32 bytes (hex or base64)"),
    activeKeyId: z.string().optional().describe("key id new tickets use; default: the first master key"),
    ticketTtl: duration().default(60_000).describe("how long a ticket is valid after issue; default 60s"),
    notBeforeSlack: duration().default(1_000).describe("tickets are valid from issue minus this; default 1s"),
    staleAfter: duration().default(3_000).describe("a content server silent this long gets no orders; default 3s"),
    reportInterval: duration().default(1_000).describe("report interval asked of content servers; default 1s"),
    pingInterval: duration().default(2_000).describe("how often round-trip time is measured; default 2s"),
    notifyTimeout: duration().default(2_000).describe("wait for a content server to acknowledge a ticket notice; default 2s"),
    distances: z.record(z.string(), z.number().min(0)).default({}).describe("distance per content server id (smaller = nearer)"),
    defaultHoldTime: duration().default(5_000).describe("hold time assumed before a server has measured one; default 5s"),
    minRetry: duration().default(100).describe("shortest retry delay given to a waiting client; default 100ms"),
    maxRetry: duration().default(60_000).describe("longest retry delay (a client checks in at least this often); default 60s"),
    queueGrace: duration().default(2_000).describe("a waiting client keeps its place this long past its retry time; default 2s"),
    maxQueue: z.number().int().min(1).default(100_000).describe("most clients waiting at once; default 100000"),
    maxSpread: duration().default(200).describe("largest random spread added to retry delays; default 200ms"),
    parkWithin: duration()
      .default(300)
      .describe("hold a queued client whose slot frees within this long (or whose wait is not estimable yet) until it frees, instead of a retry; 0 = off; default 300ms"),
  })
  .refine((c) => !c.activeKeyId || c.masterKeys.some((k) => k.id === c.activeKeyId), { message: "activeKeyId must name one of masterKeys", path: ["activeKeyId"] });

/** Resolved reception options. */
export type ReceptionConfig = z.output<typeof schema>;

/** A running reception; tests reach the core through RunningNode.role. */
export interface ReceptionInstance extends RoleInstance {
  reception: Reception;
}

/** The reception role. */
export const receptionRole: RoleDefinition<ReceptionConfig> = {
  role: "reception",
  summary: "admits orders: least-loaded content server, sealed single-use tickets, honest wait estimates",
  configSchema: schema as unknown as z.ZodType<ReceptionConfig>,
  create: async (ctx) => {
    const c = ctx.config.roleConfig;
    const reception = new Reception(
      {
        receptionId: ctx.config.node.id,
        masterKeys: c.masterKeys,
        activeKeyId: c.activeKeyId ?? (c.masterKeys[0]?.id as string),
        ticketTtlMs: c.ticketTtl,
        notBeforeSlackMs: c.notBeforeSlack,
        staleAfterMs: c.staleAfter,
        reportIntervalMs: c.reportInterval,
        pingIntervalMs: c.pingInterval,
        notifyTimeoutMs: c.notifyTimeout,
        distances: c.distances,
        defaultHoldMs: c.defaultHoldTime,
        minRetryMs: c.minRetry,
        maxRetryMs: c.maxRetry,
        queueGraceMs: c.queueGrace,
        maxQueue: c.maxQueue,
        maxSpreadMs: c.maxSpread,
        parkWithinMs: c.parkWithin,
      },
      ctx.channel,
      ctx.log,
    );
    const service = ctx.implement(ReceptionServiceService, {
      placeOrder: (req, call) => reception.placeOrder(req, call),
      listContentServers: async (req) => reception.list(req),
      getContentServer: async (req) => ({ server: reception.get(req.serverId) }),
      reportLoad: (requests, sink, call) => reception.reportLoad(requests, sink, call),
    });
    const instance: ReceptionInstance = {
      reception,
      services: [service],
      load: () => ({ figures: reception.figures() }),
      stop: async () => reception.close(),
    };
    return instance;
  },
};
