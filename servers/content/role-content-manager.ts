/**
 * Role "content-manager": the management server and portal of the content system
 * (ContentManagerService). Callers authenticate with configured bearer tokens;
 * distribution nodes register themselves with a token that has the register permission.
 */
import { z } from "zod";
import { ContentManagerServiceService } from "../../gen/switchyard/content/v1/content_manager_service.js";
import { deserializeUploadRequest } from "../../clients/content/upload-wire.js";
import { durationToMs } from "../../clients/grpc/duration.js";
import { msToDuration } from "../../clients/grpc/duration.js";
import type { CallContext } from "../runtime/service.js";
import type { RoleDefinition } from "../runtime/role.js";
import { bytes, duration, hostPort } from "../runtime/units.js";
import { ContentAuthError, ContentPermissionError } from "./errors.js";
import { GrantSigner, grantPrivateKeysSchema } from "./grant.js";
import { Manager, MAX_PIECE_SIZE_SETTING, type Caller } from "./manager.js";

/** What a token may do. */
const PERMISSIONS = ["upload", "download", "admin", "register"] as const;
type Permission = (typeof PERMISSIONS)[number];

/** Options of the content manager (section `contentManager`). */
export const contentManagerConfigSchema = z.strictObject({
  tokens: z
    .array(
      z.strictObject({
        principal: z.string().min(1).max(128).describe("who the token stands for (history, ownership)"),
        token: z.string().min(16, "at least 16 characters").describe("bearer token the caller presents"),
        permissions: z.array(z.enum(PERMISSIONS)).min(1).describe("upload, download, admin and/or register (what distribution nodes use to add themselves)"),
      }),
    )
    .min(1)
    .describe("callers and what each may do"),
  grantKeys: grantPrivateKeysSchema,
  nodes: z.array(hostPort()).default([]).describe("distribution nodes to add at start (they may also register themselves)"),
  chunking: z.enum(["fixed", "content-defined"]).default("content-defined").describe("default chunking; default content-defined"),
  pieceSize: bytes().default(1024 * 1024).describe("default (average) piece size; default 1MiB"),
  maxAutoPieceSize: bytes()
    .refine((n) => n <= MAX_PIECE_SIZE_SETTING, "at most 8MiB")
    .default(MAX_PIECE_SIZE_SETTING)
    .describe("for an upload that names no piece size and states its size, pieceSize doubles up to this while the content would have more than 64 pieces (fewer GetPiece calls per byte); pieceSize or less disables; default 8MiB"),
  replicationFactor: z.number().int().min(1).max(16).default(2).describe("default replicas per piece; default 2"),
  minReplicas: z.number().int().min(1).max(16).default(2).describe("node removal refused below this; default 2"),
  mirror: z
    .strictObject({
      abovePerMinute: z.number().positive().default(30).describe("manifest requests/min that add a mirror; default 30"),
      belowPerMinute: z.number().min(0).default(5).describe("requests/min under which a mirror goes; default 5"),
      maxReplicas: z.number().int().min(0).max(16).default(2).describe("most mirror replicas per piece; default 2"),
      interval: duration().default(10_000).describe("how often demand is evaluated; 0 disables; default 10s"),
      window: duration().default(60_000).describe("window the access rate is measured over; default 1m"),
      dwell: duration().default(30_000).describe("least time between two changes of one content; default 30s"),
    })
    .prefault({}),
  uploadConcurrency: z.number().int().min(1).max(64).default(4).describe("pieces placed in parallel per upload; default 4"),
  grantTtl: duration().default(600_000).describe("default grant lifetime; default 10m"),
  maxGrantTtl: duration().default(3_600_000).describe("longest grant a caller may ask for; default 1h"),
  historyRetention: duration().default(30 * 86_400_000).describe("how long history is kept; default 30d"),
  drainConcurrency: z.number().int().min(1).max(64).default(4).describe("pieces moved in parallel by a drain; default 4"),
  nodePollInterval: duration().default(5000).describe("how often node status is polled; default 5s"),
  orphanGrace: duration().default(600_000).describe("age before an unused piece counts as an orphan; default 10m"),
});

/** Resolved manager options. */
export type ContentManagerConfig = z.output<typeof contentManagerConfigSchema>;

/** Role "content-manager". */
export const contentManagerRole: RoleDefinition<ContentManagerConfig> = {
  role: "content-manager",
  summary: "content portal: splits, encrypts and places uploads on distribution nodes; manifests, membership, history",
  configSchema: contentManagerConfigSchema as z.ZodType<ContentManagerConfig>,
  async create(ctx) {
    const cfg = ctx.config.roleConfig;
    if (cfg.mirror.belowPerMinute >= cfg.mirror.abovePerMinute) {
      throw new Error("contentManager.mirror.belowPerMinute: must be lower than abovePerMinute (hysteresis)");
    }
    const grants = new GrantSigner(cfg.grantKeys);
    const tokens = new Map(cfg.tokens.map((t) => [t.token, t]));
    const manager = new Manager(
      ctx.store,
      grants,
      {
        chunking: cfg.chunking,
        pieceSize: cfg.pieceSize,
        maxAutoPieceSize: cfg.maxAutoPieceSize,
        policy: {
          rf: cfg.replicationFactor,
          minReplicas: Math.min(cfg.minReplicas, cfg.replicationFactor),
          mirrorAbove: cfg.mirror.abovePerMinute,
          unmirrorBelow: cfg.mirror.belowPerMinute,
          maxMirrors: cfg.mirror.maxReplicas,
        },
        uploadConcurrency: cfg.uploadConcurrency,
        grantTtlMs: cfg.grantTtl,
        maxGrantTtlMs: cfg.maxGrantTtl,
        historyRetentionMs: cfg.historyRetention,
        drainConcurrency: cfg.drainConcurrency,
        nodePollIntervalMs: cfg.nodePollInterval,
        mirrorIntervalMs: cfg.mirror.interval,
        mirrorWindowMs: cfg.mirror.window,
        mirrorDwellMs: cfg.mirror.dwell,
        orphanGraceMs: cfg.orphanGrace,
      },
      ctx.log,
      ctx.channel,
      ctx.shutdown,
    );

    /** Authenticates the call and checks one permission. */
    const auth = (call: CallContext, need: Permission): Caller => {
      const header = call.metadata.get("authorization")[0];
      const value = typeof header === "string" ? header : header?.toString("utf8");
      if (!value) throw new ContentAuthError("authorization metadata is required (Bearer <token>)", "TOKEN_MISSING");
      if (!value.startsWith("Bearer ")) throw new ContentAuthError("authorization must be 'Bearer <token>'", "TOKEN_MISSING");
      const t = tokens.get(value.slice(7));
      if (!t) throw new ContentAuthError("unknown token", "TOKEN_UNKNOWN");
      const perms = t.permissions as string[];
      const ok = perms.includes("admin") || perms.includes(need);
      if (!ok) throw new ContentPermissionError(`token of ${t.principal} lacks the ${need} permission`, "PERMISSION_MISSING");
      return { principal: t.principal, peer: call.peer };
    };

    // Upload's own deserializer: data chunks are views of the received messages (upload-wire.ts).
    const definition = { ...ContentManagerServiceService, upload: { ...ContentManagerServiceService.upload, requestDeserialize: deserializeUploadRequest } };
    const service = ctx.implement(definition, {
      upload: async (requests, call) => {
        const caller = auth(call, "upload");
        const { content, elapsedMs } = await manager.upload(requests, caller, call.signal);
        return { content, elapsed: msToDuration(elapsedMs) };
      },
      getContent: async (req, call) => {
        auth(call, "download");
        return { content: await manager.getContent(req.contentId) };
      },
      getManifest: async (req, call) => {
        const caller = auth(call, "download");
        return { manifest: await manager.manifest(req.contentId, durationToMs(req.grantTtl), caller) };
      },
      deleteContent: async (req, call) => {
        const caller = auth(call, "upload");
        const r = await manager.deleteContent(req.contentId, caller);
        return { piecesDeleted: r.deleted, piecesShared: r.shared, deletionsPending: r.pending };
      },
      listContents: async (req, call) => {
        auth(call, "download");
        return manager.listContents(req.pageSize, req.pageToken);
      },
      reportDownload: async (req, call) => {
        const caller = auth(call, "download");
        await manager.reportDownload(req.contentId, Number(req.bytes), durationToMs(req.elapsed, 0), req.requestId, caller);
        return {};
      },
      listHistory: async (req, call) => {
        auth(call, "admin");
        return manager.listHistory(req);
      },
      addNode: async (req, call) => {
        auth(call, "register");
        return { node: await manager.addNode(req.address, req.securityRank) };
      },
      drainNode: async (req, call) => {
        auth(call, "admin");
        return { node: await manager.drainNode(req.nodeId) };
      },
      removeNode: async (req, call) => {
        auth(call, "admin");
        return { placementsDropped: BigInt(await manager.removeNode(req.nodeId)) };
      },
      listNodes: async (_req, call) => {
        auth(call, "download");
        return { nodes: await manager.listNodes() };
      },
      locatePiece: async (req, call) => {
        auth(call, "admin");
        const r = await manager.locate(req.pieceId, req.askNodes);
        return {
          recorded: r.recorded,
          reportedNodeIds: r.reported,
          unreachableNodeIds: r.unreachable,
          contentIds: r.contents,
          ...(r.confirmedAt ? { confirmedAt: r.confirmedAt } : {}),
        };
      },
      repair: async (req, call) => {
        auth(call, "admin");
        const r = await manager.repair(req.dryRun);
        return {
          piecesChecked: BigInt(r.checked),
          missingReplicas: BigInt(r.missing),
          replicasCreated: BigInt(r.created),
          orphansDeleted: BigInt(r.orphans),
          piecesLost: BigInt(r.lost),
          unreachableNodeIds: r.unreachable,
        };
      },
      getReplicaPolicy: async (_req, call) => {
        auth(call, "download");
        return { policy: manager.policyMessage() };
      },
      setReplicaPolicy: async (req, call) => {
        auth(call, "admin");
        if (!req.policy) return { policy: manager.policyMessage() };
        return { policy: await manager.setPolicy(req.policy) };
      },
    });

    return {
      services: [service],
      manager,
      load: () => ({ figures: {} }),
      start: async () => {
        await manager.init();
        for (const address of cfg.nodes) {
          await manager.addNode(address, 0).catch((err: unknown) => ctx.log.warn({ err, address }, "configured node did not answer; it can register later"));
        }
      },
      stop: () => manager.stop(),
    };
  },
};
