/**
 * Role "distribution-node": stores encrypted pieces and serves them (DistributionNodeService).
 * Verifies every grant by itself with the manager's Ed25519 public keys (it holds no
 * key that could sign one); never sees content keys.
 * With `manager` configured, it registers itself with the content manager at start
 * (retrying in the background until the manager answers).
 */
import { join } from "node:path";
import { z } from "zod";
import { DistributionNodeServiceService, GetPiecesResponse, type GetPieceRequest, type GetPieceResponse, type GetPiecesRequest } from "../../gen/switchyard/content/v1/distribution_node_service.js";
import { PIECE_ID, sha256Hex } from "../../clients/content/crypto.js";
import { NodeClientPool } from "../../clients/content/node-client.js";
import { ContentManagerClient } from "../../clients/content/manager-client.js";
import { describeError, sleep } from "../../clients/grpc/index.js";
import type { RoleDefinition } from "../runtime/role.js";
import { bytes, hostPort } from "../runtime/units.js";
import { badField, ContentNotFoundError, NodeFullError, NodeUnavailableError, PieceCorruptError } from "./errors.js";
import { GrantVerifier, grantPublicKeysSchema } from "./grant.js";
import { Pacer } from "./pacer.js";
import { ChunkPool, PieceStore, PieceTruncatedError } from "./piece-store.js";
import { framed, serializePieceResponse, type EncodedPieceResponse } from "../../clients/content/piece-wire.js";
import { grpcFramed } from "../../clients/grpc/framing.js";
import { rpcStatusFromError } from "../runtime/errors.js";
import { openDirectStream, type DirectStream } from "../runtime/direct-write.js";
import type { StreamSink } from "../runtime/service.js";

// Paced nodes send small chunks so pacing stays smooth. Unpaced ones send the largest
// messages every gRPC client takes by default (4 MiB, grpc.max_receive_message_length in
// grpc-js, grpcio and grpc-go), less room for the message's fields: per chunk a node pays
// a file read, a promise chain and an HTTP/2 write, so 4 MiB chunks cut its CPU per byte
// by about a quarter against 1 MiB ones (docs/content.md).
const PACED_CHUNK_BYTES = 256 * 1024;
const CHUNK_BYTES = 4 * 1024 * 1024 - 4096;
const GET_PIECES_METHOD = DistributionNodeServiceService.getPieces.path;
const EMPTY = Buffer.alloc(0);

/** Hands one pre-encoded chunk to the call; `done` runs once the transport took it. */
type ChunkWriter = (msg: EncodedPieceResponse & { encoded: Buffer }, done: (err?: Error | null) => void) => void;

/** GetPieces' serializer: chunks come pre-encoded (same fields as GetPieceResponse), errors are encoded here. */
function serializePiecesResponse(v: GetPiecesResponse & EncodedPieceResponse): Buffer {
  return v.encoded ?? Buffer.from(GetPiecesResponse.encode(v).finish());
}

/** Options of a distribution node (section `distributionNode`). */
export const distributionNodeConfigSchema = z.strictObject({
  capacity: bytes().default(10 * 1024 ** 3).describe("bytes of pieces this node may store; default 10GiB"),
  securityRank: z.number().int().min(0).max(1000).default(1).describe("security rank placement matches against content; default 1"),
  bandwidthLimit: bytes().default(0).describe("GetPiece bytes per second for the whole node; 0 = unlimited (default)"),
  maxPieceSize: bytes().default(16 * 1024 * 1024).describe("largest piece accepted; default 16MiB"),
  grantKeys: grantPublicKeysSchema,
  manager: hostPort().optional().describe("content manager to register with at start; unset: wait to be added"),
  managerToken: z.string().min(16).optional().describe("bearer token with the register permission, to register with `manager`"),
  registerRetry: z.number().int().min(1).default(60).describe("registration attempts before giving up; default 60"),
});

/** Resolved distribution node options. */
export type DistributionNodeConfig = z.output<typeof distributionNodeConfigSchema>;

/** Role "distribution-node". */
export const distributionNodeRole: RoleDefinition<DistributionNodeConfig> = {
  role: "distribution-node",
  summary: "stores encrypted content pieces and serves them to downloaders and peers",
  configSchema: distributionNodeConfigSchema as z.ZodType<DistributionNodeConfig>,
  async create(ctx) {
    const cfg = ctx.config.roleConfig;
    const nodeId = ctx.config.node.id;
    const pieces = await PieceStore.open(join(ctx.config.dataDir, "pieces"), ctx.store, cfg.capacity);
    const grants = new GrantVerifier(cfg.grantKeys);
    const pacer = new Pacer(cfg.bandwidthLimit);
    const chunkBytes = cfg.bandwidthLimit > 0 ? PACED_CHUNK_BYTES : CHUNK_BYTES;
    const chunkPool = new ChunkPool(chunkBytes);
    const peers = new NodeClientPool(ctx.channel);
    let served = 0;
    let streaming = 0;

    const checkId = (id: string, field = "piece_id"): void => {
      if (!PIECE_ID.test(id)) throw badField(field, "must be 64 lower-case hex characters (SHA-256)", "BAD_PIECE_ID");
    };
    const store = async (id: string, data: Buffer): Promise<boolean> => {
      if (data.length > cfg.maxPieceSize) throw badField("data", `piece of ${data.length} bytes is over the node's ${cfg.maxPieceSize}-byte limit`, "PIECE_TOO_LARGE");
      if (sha256Hex(data) !== id) throw badField("data", "SHA-256 of data does not match piece_id", "PIECE_HASH_MISMATCH");
      try {
        return await pieces.put(id, data);
      } catch (err) {
        if (err instanceof RangeError) throw new NodeFullError(`node ${nodeId} has no room for ${data.length} more bytes`);
        throw err;
      }
    };

    /** Checks a piece request's grant and access tag; the piece's record, or the error to answer. */
    const openPiece = async (req: GetPieceRequest | GetPiecesRequest): Promise<{ size: number }> => {
      const { claims, kid } = grants.verify(req.grant, ["read", "manage"]);
      checkId(req.pieceId);
      if (claims.scope === "read") grants.checkTag(claims, kid, req.pieceId, req.accessTag);
      const rec = await pieces.get(req.pieceId);
      if (!rec) throw new ContentNotFoundError("piece", req.pieceId, "PIECE_NOT_FOUND");
      return rec;
    };
    /**
     * Sends a piece's `size` stored bytes through `write` in chunks. No re-hash here: the
     * downloader authenticates every piece (AES-GCM under a key nodes never see) and peers
     * re-hash what they copy; HasPieces(verify) and the repair pass check files at rest.
     * Chunks go out as complete gRPC messages from pooled buffers, given back once the
     * stream is done with them; two messages may be in flight, so reading the next chunk
     * overlaps sending this one.
     */
    const sendPiece = async (id: string, size: number, signal: AbortSignal, write: ChunkWriter): Promise<void> => {
      streaming++;
      const inflight: Promise<void>[] = [];
      try {
        for await (const msg of pieces.readResponses(id, chunkBytes, size, chunkPool)) {
          await pacer.take(msg.data.length, signal);
          if (signal.aborted) throw signal.reason;
          const sent = new Promise<void>((resolve, reject) => {
            // grpc-js never calls back for a message written after the call was
            // cancelled: the abort settles it instead (the buffer is then dropped).
            const onAbort = (): void => reject(signal.reason);
            signal.addEventListener("abort", onAbort, { once: true });
            write(msg, (err) => {
              signal.removeEventListener("abort", onAbort);
              if (err) reject(err);
              else {
                chunkPool.give(msg.buffer);
                resolve();
              }
            });
          });
          sent.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
          inflight.push(sent);
          served += msg.data.length;
          if (inflight.length >= 2) await inflight.shift();
        }
        await Promise.all(inflight);
      } catch (err) {
        if (err instanceof PieceTruncatedError) throw new PieceCorruptError(`stored piece ${id} is shorter than recorded`);
        throw err;
      } finally {
        streaming--;
      }
    };

    /**
     * How a piece call's chunks reach the client: as complete gRPC messages straight to
     * its HTTP/2 stream when that is safe (servers/runtime/direct-write.ts), else through grpc-js.
     */
    const writerFor = (sink: StreamSink<GetPieceResponse>): { direct: DirectStream | undefined; write: ChunkWriter } => {
      const direct = openDirectStream(sink.call);
      return { direct, write: direct ? (msg, done) => direct.write(framed(msg), done) : (msg, done) => sink.write(msg, done) };
    };

    // GetPiece responses are encoded by hand: the payload is read from disk into the
    // message buffer, so a chunk is not copied on its way to grpc-js.
    const definition = {
      ...DistributionNodeServiceService,
      getPiece: { ...DistributionNodeServiceService.getPiece, responseSerialize: serializePieceResponse },
      getPieces: { ...DistributionNodeServiceService.getPieces, responseSerialize: serializePiecesResponse },
    };
    const service = ctx.implement(definition, {
      putPiece: async (req) => {
        grants.verify(req.grant, ["manage"]);
        checkId(req.pieceId);
        const created = await store(req.pieceId, req.data);
        const rec = await pieces.get(req.pieceId);
        return { created, storedAt: new Date(rec?.storedAt ?? Date.now()) };
      },
      getPiece: async (req, sink, call) => {
        const rec = await openPiece(req);
        await sendPiece(req.pieceId, rec.size, call.signal, writerFor(sink).write);
      },
      getPieces: async (requests, sink, call) => {
        const signal = call.signal;
        const { direct, write } = writerFor(sink);
        // A message built whole (an error, an empty piece), after everything written before it.
        const sendWhole = (m: GetPiecesResponse): Promise<void> => (direct ? direct.send(grpcFramed(serializePiecesResponse(m))) : sink.send(m));
        for await (const req of requests) {
          let rec: { size: number };
          try {
            rec = await openPiece(req);
          } catch (err) {
            if (signal.aborted) throw err;
            // This piece's status, in place of its bytes; the call goes on.
            await sendWhole({ data: EMPTY, totalSize: 0, error: rpcStatusFromError(err, ctx.log, GET_PIECES_METHOD) });
            continue;
          }
          // A piece of zero bytes is one message with neither size nor error.
          if (rec.size === 0) await sendWhole({ data: EMPTY, totalSize: 0 });
          else await sendPiece(req.pieceId, rec.size, signal, write);
        }
      },
      hasPieces: async (req) => {
        grants.verify(req.grant, ["manage"]);
        if (req.pieceIds.length > 10_000) throw badField("piece_ids", "at most 10000 ids per call", "TOO_MANY_IDS");
        req.pieceIds.forEach((id, i) => checkId(id, `piece_ids[${i}]`));
        const held: string[] = [];
        const corrupt: string[] = [];
        for (const id of req.pieceIds) {
          if (!(await pieces.has(id))) continue;
          if (req.verify && !(await pieces.verify(id))) corrupt.push(id);
          else held.push(id);
        }
        return { held, corrupt };
      },
      listPieces: async (req) => {
        grants.verify(req.grant, ["manage"]);
        const size = req.pageSize === 0 ? 1000 : Math.min(req.pageSize, 10_000);
        if (req.pageToken && !PIECE_ID.test(req.pageToken)) throw badField("page_token", "not a token from a previous response", "BAD_PAGE_TOKEN");
        const ids = await pieces.list(req.pageToken, size);
        return { pieceIds: ids, nextPageToken: ids.length === size ? (ids[ids.length - 1] as string) : "" };
      },
      deletePiece: async (req) => {
        grants.verify(req.grant, ["manage"]);
        checkId(req.pieceId);
        return { existed: await pieces.delete(req.pieceId) };
      },
      copyFromPeer: async (req, call) => {
        grants.verify(req.grant, ["manage"]);
        checkId(req.pieceId);
        if (!/^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9a-fA-F:.]+\]:\d{1,5}$/.test(req.sourceAddress)) {
          throw badField("source_address", 'must be "host:port"', "BAD_ADDRESS");
        }
        if (await pieces.has(req.pieceId)) return { copied: false, bytes: 0n };
        let data: Buffer;
        try {
          data = await peers.get(req.sourceAddress).get({ grant: req.sourceGrant, pieceId: req.pieceId, maxBytes: cfg.maxPieceSize }, { signal: call.signal });
        } catch (err) {
          throw new NodeUnavailableError(`copy of ${req.pieceId} from ${req.sourceAddress} failed: ${describeError(err)}`, err);
        }
        if (sha256Hex(data) !== req.pieceId) throw new PieceCorruptError(`peer ${req.sourceAddress} sent bytes that do not match ${req.pieceId}`);
        const copied = await store(req.pieceId, data);
        return { copied, bytes: BigInt(data.length) };
      },
      getNodeStatus: async () => ({
        nodeId,
        capacityBytes: BigInt(cfg.capacity),
        usedBytes: BigInt(pieces.usedBytes),
        pieceCount: BigInt(pieces.pieceCount),
        securityRank: cfg.securityRank,
        bandwidthLimitBytesPerSecond: BigInt(cfg.bandwidthLimit),
      }),
    });

    const register = async (advertised: string): Promise<void> => {
      if (!cfg.manager) return;
      if (!cfg.managerToken) {
        ctx.log.warn({ manager: cfg.manager }, "distributionNode.managerToken is not set: cannot register with the manager; add this node with AddNode");
        return;
      }
      const manager = new ContentManagerClient(cfg.manager, { credentials: { kind: "token", token: cfg.managerToken }, channel: ctx.channel });
      try {
        for (let attempt = 1; attempt <= cfg.registerRetry && !ctx.shutdown.aborted; attempt++) {
          try {
            await manager.addNode(advertised, 0);
            ctx.log.info({ manager: cfg.manager }, "registered with the content manager");
            return;
          } catch (err) {
            ctx.log.warn({ err: describeError(err), attempt }, "registration with the content manager failed; retrying");
            await sleep(Math.min(5000, 250 * attempt), ctx.shutdown).catch(() => undefined);
          }
        }
      } finally {
        manager.close();
      }
    };

    return {
      services: [service],
      load: () => ({
        figures: { pieces: pieces.pieceCount, used_bytes: pieces.usedBytes, capacity_bytes: cfg.capacity, bytes_served: served, streams: streaming },
        utilization: cfg.capacity > 0 ? pieces.usedBytes / cfg.capacity : 0,
      }),
      start: (advertised) => {
        void register(advertised);
      },
      stop: async () => {
        peers.close();
        pieces.closeHandles();
      },
    };
  },
};
