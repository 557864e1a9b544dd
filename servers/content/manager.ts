/**
 * The content manager's domain logic: uploads (split, encrypt, place, confirm, commit),
 * manifests and grants, deletion, history, node membership (add, drain, remove),
 * locate, repair and demand-driven mirrors. State lives in the manager's LevelDB:
 *
 * - `contents`  id → ContentRecord (written last, when an upload commits)
 * - `cpieces`   `<cid>!<index>` → the content's piece list (plaintext hash, sizes)
 * - `refs`      `<pieceId>!<cid>` → a content uses a piece (pieces are shared)
 * - `pieces`    pieceId → placement (replicas), stored size, confirmation time
 * - `nodes`     nodeId → registered node (address, rank, state, drain counters)
 * - `intents`   `<nodeId>!<pieceId>` → the target a drain chose (survives restarts)
 * - `history`   newest-first log of uploads, manifests, downloads, deletes (TTL)
 * - `meta`      the key-derivation secret and the replica policy
 */
import { createHash, randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { ChunkingMode, HistoryKind, NodeState, type Content, type DistributionNode, type HistoryEntry, type Manifest, type ManifestPiece, type ReplicaPolicy } from "../../gen/switchyard/content/v1/content.js";
import type { UploadHeader, UploadRequest } from "../../gen/switchyard/content/v1/content_manager_service.js";
import { Chunker } from "../../clients/content/chunker.js";
import { derivePieceKey, encryptPiece, PIECE_ID, sha256Hex } from "../../clients/content/crypto.js";
import { NodeClientPool, type DistributionNodeClient } from "../../clients/content/node-client.js";
import { describeError, parseRichError, sleep } from "../../clients/grpc/index.js";
import { status as Status } from "@grpc/grpc-js";
import type { Collection, NodeStore } from "../runtime/store.js";
import {
  badField,
  ContentNotFoundError,
  ContentPreconditionError,
  NoPlacementError,
  NodeUnavailableError,
  WouldUnderReplicateError,
} from "./errors.js";
import type { GrantSigner } from "./grant.js";
import { KeyedMutex, Semaphore } from "./mutex.js";

/** A committed content. */
export interface ContentRecord {
  id: string;
  name: string;
  size: number;
  sha256: string;
  pieceCount: number;
  chunking: "fixed" | "content-defined";
  rf: number;
  minRank: number;
  owner: string;
  createdAt: number;
  reusedBytes: number;
  mirrors: number;
}

/** One piece of a content. */
interface CPiece {
  id: string;
  offset: number;
  size: number;
  stored: number;
  plain: string;
}

/** One replica in a placement. */
interface Replica {
  node: string;
  mirror?: boolean;
}

/** A stored piece and where it is. */
interface PieceRec {
  stored: number;
  replicas: Replica[];
  minRank: number;
  createdAt: number;
  confirmedAt: number;
}

/** A registered node. */
interface NodeRec {
  id: string;
  address: string;
  rank: number;
  capacity: number;
  state: "active" | "draining" | "drained";
  addedAt: number;
  drained: number;
  drainError?: string;
}

/** A history record. */
interface HistoryRec {
  kind: "upload" | "manifest" | "download" | "delete";
  principal: string;
  cid: string;
  name: string;
  bytes: number;
  at: number;
  elapsedMs?: number;
  peer: string;
}

/** Largest piece size an upload may name (and the manager may pick). */
export const MAX_PIECE_SIZE_SETTING = 8 * 1024 * 1024;

/** Pieces a content may have before an upload without a piece size gets larger ones. */
const AUTO_PIECES = 64;

/** The replica policy as stored. */
export interface Policy {
  rf: number;
  minReplicas: number;
  mirrorAbove: number;
  unmirrorBelow: number;
  maxMirrors: number;
}

/** Options of the manager (resolved from config). */
export interface ManagerOptions {
  chunking: "fixed" | "content-defined";
  pieceSize: number;
  /** Largest piece size picked for a large upload that names none (see autoPieceSize). */
  maxAutoPieceSize: number;
  policy: Policy;
  uploadConcurrency: number;
  grantTtlMs: number;
  maxGrantTtlMs: number;
  historyRetentionMs: number;
  drainConcurrency: number;
  nodePollIntervalMs: number;
  mirrorIntervalMs: number;
  mirrorWindowMs: number;
  mirrorDwellMs: number;
  orphanGraceMs: number;
}

/** Who is calling. */
export interface Caller {
  principal: string;
  peer: string;
}

const MAX_DATA_MESSAGE = 4 * 1024 * 1024;
const idx = (i: number): string => i.toString().padStart(10, "0");
const MAX_TS = 8.64e15;

/** A new content id: 26 lower-case base32 characters (128 random bits). */
export function newContentId(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  const b = randomBytes(17);
  let out = "";
  let bits = 0;
  let value = 0;
  for (const byte of b) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < 26) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out;
}

const CONTENT_ID = /^[a-z2-7]{26}$/;

/** Node facts known only in memory (polled). */
interface NodeLive {
  used: number;
  reachable: boolean;
  lastSeen: number;
}

/** The manager. */
export class Manager {
  private readonly contents: Collection<ContentRecord>;
  private readonly cpieces: Collection<CPiece>;
  private readonly refs: Collection<number>;
  private readonly pieces: Collection<PieceRec>;
  private readonly nodes: Collection<NodeRec>;
  private readonly intents: Collection<string>;
  private readonly history: Collection<HistoryRec>;
  private readonly meta: Collection<unknown>;
  private readonly uploads: Collection<string>;
  private readonly pool: NodeClientPool;
  private readonly pieceLock = new KeyedMutex();
  private readonly nodeLock = new KeyedMutex();
  private readonly live = new Map<string, NodeLive>();
  private readonly uploading = new Set<string>();
  private readonly storing = new Map<string, Promise<PieceRec>>();
  private readonly access = new Map<string, number[]>();
  private readonly lastMirrorChange = new Map<string, number>();
  private readonly drains = new Map<string, Promise<void>>();
  private secret!: Buffer;
  policy!: Policy;
  private seq = 0;
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;

  constructor(
    private readonly store: NodeStore,
    private readonly grants: GrantSigner,
    private readonly opts: ManagerOptions,
    private readonly log: Logger,
    channel: ConstructorParameters<typeof NodeClientPool>[0],
    private readonly shutdown: AbortSignal,
  ) {
    this.contents = store.collection("contents");
    this.cpieces = store.collection("cpieces");
    this.refs = store.collection("refs");
    this.pieces = store.collection("pieces");
    this.nodes = store.collection("nodes");
    this.intents = store.collection("intents", { encoding: "utf8" });
    this.history = store.collection("history", { ttl: true });
    this.meta = store.collection("meta");
    this.uploads = store.collection("uploads", { encoding: "utf8", ttl: true });
    this.pool = new NodeClientPool(channel);
  }

  /** Loads the secret and policy, polls nodes, resumes drains, starts timers. */
  async init(): Promise<void> {
    const s = (await this.meta.get("secret")) as string | undefined;
    if (s) this.secret = Buffer.from(s, "base64");
    else {
      this.secret = randomBytes(32);
      await this.meta.put("secret", this.secret.toString("base64"));
    }
    this.policy = ((await this.meta.get("policy")) as Policy | undefined) ?? this.opts.policy;
    await this.pollNodes();
    for await (const [, n] of this.nodes.entries()) if (n.state === "draining") this.startDrain(n.id);
    const every = (ms: number, fn: () => Promise<unknown>): void => {
      if (ms <= 0) return;
      // A pass that outlasts the interval is not started again until it is done: two
      // overlapping mirror passes would both add a replica.
      let running = false;
      const t = setInterval(() => {
        if (running) return;
        running = true;
        void fn()
          .catch((err: unknown) => this.log.warn({ err }, "periodic task failed"))
          .finally(() => (running = false));
      }, ms);
      t.unref();
      this.timers.push(t);
    };
    every(this.opts.nodePollIntervalMs, () => this.pollNodes());
    every(this.opts.mirrorIntervalMs, () => this.mirrorPass());
  }

  /** Stops timers and closes node channels. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    await Promise.allSettled([...this.drains.values()]);
    this.pool.close();
  }

  private manageGrant(): Buffer {
    return this.grants.manage("manager", 120_000);
  }

  private client(n: NodeRec): DistributionNodeClient {
    return this.pool.get(n.address);
  }

  // ---------------------------------------------------------------- nodes

  /** Asks every node for its status. */
  async pollNodes(): Promise<void> {
    const all: NodeRec[] = [];
    for await (const [, n] of this.nodes.entries()) all.push(n);
    await Promise.all(
      all.map(async (n) => {
        try {
          const st = await this.client(n).status({ deadline: Date.now() + 3000 });
          this.live.set(n.id, { used: Number(st.usedBytes), reachable: st.nodeId === n.id, lastSeen: Date.now() });
        } catch {
          const prev = this.live.get(n.id);
          this.live.set(n.id, { used: prev?.used ?? 0, reachable: false, lastSeen: prev?.lastSeen ?? 0 });
        }
      }),
    );
  }

  /** Registers (or refreshes) a node at `address`. */
  async addNode(address: string, rank: number): Promise<DistributionNode> {
    if (!/^([A-Za-z0-9.-]+|\[[0-9a-fA-F:.]+\]):\d{1,5}$/.test(address)) throw badField("address", 'must be "host:port"', "BAD_ADDRESS");
    let st;
    try {
      st = await this.pool.get(address).status({ deadline: Date.now() + 5000 });
    } catch (err) {
      throw new NodeUnavailableError(`node at ${address} did not answer: ${describeError(err)}`, err);
    }
    const rec = await this.nodeLock.run(st.nodeId, async () => {
      const prev = await this.nodes.get(st.nodeId);
      const rec: NodeRec = {
        id: st.nodeId,
        address,
        rank: rank || st.securityRank,
        capacity: Number(st.capacityBytes),
        state: prev?.state ?? "active",
        addedAt: prev?.addedAt ?? Date.now(),
        drained: prev?.drained ?? 0,
        ...(prev?.drainError ? { drainError: prev.drainError } : {}),
      };
      await this.nodes.put(rec.id, rec);
      return rec;
    });
    this.live.set(rec.id, { used: Number(st.usedBytes), reachable: true, lastSeen: Date.now() });
    this.log.info({ node: rec.id, address }, "distribution node registered");
    return this.describeNode(rec, await this.placementCounts());
  }

  private async placementCounts(): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    for await (const [, p] of this.pieces.entries()) for (const r of p.replicas) counts.set(r.node, (counts.get(r.node) ?? 0) + 1);
    return counts;
  }

  private describeNode(n: NodeRec, counts: Map<string, number>): DistributionNode {
    const l = this.live.get(n.id);
    const remaining = n.state === "draining" ? (counts.get(n.id) ?? 0) : 0;
    return {
      nodeId: n.id,
      address: n.address,
      state: n.state === "active" ? NodeState.ACTIVE : n.state === "draining" ? NodeState.DRAINING : NodeState.DRAINED,
      securityRank: n.rank,
      capacityBytes: BigInt(n.capacity),
      usedBytes: BigInt(l?.used ?? 0),
      pieceCount: BigInt(counts.get(n.id) ?? 0),
      reachable: l?.reachable ?? false,
      ...(l?.lastSeen ? { lastSeenAt: new Date(l.lastSeen) } : {}),
      drainedPieces: BigInt(n.drained),
      drainRemainingPieces: BigInt(remaining),
      drainError: n.drainError ?? "",
    };
  }

  /** Every node. */
  async listNodes(): Promise<DistributionNode[]> {
    const counts = await this.placementCounts();
    const out: DistributionNode[] = [];
    for await (const [, n] of this.nodes.entries()) out.push(this.describeNode(n, counts));
    return out;
  }

  private async nodeMap(): Promise<Map<string, NodeRec>> {
    const m = new Map<string, NodeRec>();
    for await (const [id, n] of this.nodes.entries()) m.set(id, n);
    return m;
  }

  /** Nodes that may take a new copy of `size` bytes, best first. */
  private candidates(nodes: Map<string, NodeRec>, minRank: number, size: number, exclude: Set<string>): NodeRec[] {
    const ok = [...nodes.values()].filter((n) => {
      const l = this.live.get(n.id);
      return n.state === "active" && n.rank >= minRank && !exclude.has(n.id) && (l?.reachable ?? false) && n.capacity - (l?.used ?? 0) >= size;
    });
    // Most free space first; then larger capacity; then id for a stable order.
    return ok.sort((a, b) => {
      const fa = a.capacity - (this.live.get(a.id)?.used ?? 0);
      const fb = b.capacity - (this.live.get(b.id)?.used ?? 0);
      return fb - fa || b.capacity - a.capacity || a.id.localeCompare(b.id);
    });
  }

  private charge(nodeId: string, bytes: number): void {
    const l = this.live.get(nodeId);
    if (l) l.used = Math.max(0, l.used + bytes);
  }

  // ---------------------------------------------------------------- upload

  /** Runs one upload stream to its commit. */
  async upload(requests: AsyncIterable<UploadRequest>, caller: Caller, signal: AbortSignal): Promise<{ content: Content; elapsedMs: number }> {
    const started = Date.now();
    const it = requests[Symbol.asyncIterator]();
    const first = await it.next();
    if (first.done || first.value.part?.$case !== "header") throw badField("part", "the first message must carry the header", "HEADER_FIRST");
    const h = first.value.part.value;
    const header = this.checkHeader(h);
    const done = await this.uploads.get(`${caller.principal}\0${h.requestId}`);
    if (done) {
      const rec = await this.contents.get(done);
      if (rec) {
        await it.return?.();
        return { content: this.describeContent(rec), elapsedMs: Date.now() - started };
      }
    }
    const nodes = await this.nodeMap();
    const eligible = this.candidates(nodes, header.minRank, 0, new Set());
    if (eligible.length < header.rf) {
      throw new NoPlacementError(`replication factor ${header.rf} needs ${header.rf} reachable active nodes of rank >= ${header.minRank}; ${eligible.length} available`);
    }
    const cid = newContentId();
    this.uploading.add(cid);
    const chunker = new Chunker({ mode: header.chunking, pieceSize: header.pieceSize });
    const whole = createHash("sha256");
    const sem = new Semaphore(this.opts.uploadConcurrency);
    const inflight = new Set<Promise<void>>();
    let failure: unknown;
    let size = 0;
    let index = 0;
    let reused = 0;
    let emitted = 0;
    const launch = async (plain: Buffer): Promise<void> => {
      await sem.acquire();
      if (failure) {
        sem.release();
        throw failure;
      }
      const i = index++;
      const offset = emitted;
      emitted += plain.length;
      const p = this.storePlainPiece(cid, i, offset, plain, header, nodes)
        .then((r) => {
          reused += r;
        })
        .catch((err: unknown) => {
          failure ??= err;
        })
        .finally(() => {
          sem.release();
          inflight.delete(p);
        });
      inflight.add(p);
    };
    try {
      for (;;) {
        if (signal.aborted) throw signal.reason;
        const next = await it.next();
        if (next.done) break;
        const part = next.value.part;
        if (part?.$case !== "data") throw badField("part", "only the first message may carry a header", "HEADER_TWICE");
        if (part.value.length > MAX_DATA_MESSAGE) throw badField("data", "at most 4 MiB per message", "DATA_TOO_LARGE");
        whole.update(part.value);
        size += part.value.length;
        if (header.expected && size > header.expected) throw badField("header.expected_size", `more than ${header.expected} bytes were sent`, "SIZE_MISMATCH");
        for (const piece of chunker.push(part.value)) await launch(piece);
        if (failure) throw failure;
      }
      const last = chunker.end();
      if (last) await launch(last);
      await Promise.all([...inflight]);
      if (failure) throw failure;
      if (header.expected && size !== header.expected) throw badField("header.expected_size", `expected ${header.expected} bytes, got ${size}`, "SIZE_MISMATCH");
      const rec: ContentRecord = {
        id: cid,
        name: h.name,
        size,
        sha256: whole.digest("hex"),
        pieceCount: index,
        chunking: header.chunking,
        rf: header.rf,
        minRank: header.minRank,
        owner: caller.principal,
        createdAt: Date.now(),
        reusedBytes: reused,
        mirrors: 0,
      };
      const elapsedMs = Date.now() - started;
      await this.store
        .batch()
        .put(this.contents, cid, rec)
        .put(this.uploads, `${caller.principal}\0${h.requestId}`, cid, { ttlMs: 86_400_000 })
        .put(this.history, this.historyKey(rec.createdAt), this.hist("upload", caller, rec, size, elapsedMs), { ttlMs: this.opts.historyRetentionMs })
        .write();
      this.log.info({ content: cid, size, pieces: index, reused, ms: elapsedMs }, "upload committed");
      return { content: this.describeContent(rec), elapsedMs };
    } catch (err) {
      await Promise.allSettled([...inflight]);
      await this.dropUncommitted(cid).catch(() => undefined);
      throw err;
    } finally {
      this.uploading.delete(cid);
    }
  }

  private checkHeader(h: UploadHeader): { chunking: "fixed" | "content-defined"; pieceSize: number; rf: number; minRank: number; expected: number } {
    if (!h.name || h.name.length > 255) throw badField("header.name", "1 to 255 characters", "BAD_NAME");
    if (!/^[\x21-\x7e]{1,64}$/.test(h.requestId)) throw badField("header.request_id", "1 to 64 printable ASCII characters (required)", "BAD_REQUEST_ID");
    if (h.chunking === ChunkingMode.UNRECOGNIZED) throw badField("header.chunking", "unknown chunking mode", "BAD_CHUNKING");
    const chunking = h.chunking === ChunkingMode.FIXED ? "fixed" : h.chunking === ChunkingMode.CONTENT_DEFINED ? "content-defined" : this.opts.chunking;
    const pieceSize = h.pieceSize || this.autoPieceSize(Number(h.expectedSize));
    if (pieceSize < 64 * 1024 || pieceSize > MAX_PIECE_SIZE_SETTING) throw badField("header.piece_size", "between 64 KiB and 8 MiB", "BAD_PIECE_SIZE");
    const rf = h.replicationFactor || this.policy.rf;
    if (rf > 16) throw badField("header.replication_factor", "at most 16", "BAD_REPLICATION_FACTOR");
    return { chunking, pieceSize, rf, minRank: h.minSecurityRank, expected: Number(h.expectedSize) };
  }

  /**
   * The piece size of an upload that names none: the default, doubled (up to
   * maxAutoPieceSize) while a content of `expected` bytes would have more than
   * AUTO_PIECES pieces. Every GetPiece call costs a node about as much CPU as serving
   * ~4 MiB (docs/content.md), so a large content in default-sized pieces downloads at
   * half the speed; 64 pieces still keep a download's 8 parallel fetches busy.
   */
  private autoPieceSize(expected: number): number {
    let size = this.opts.pieceSize;
    while (size * 2 <= this.opts.maxAutoPieceSize && expected > size * AUTO_PIECES) size *= 2;
    return size;
  }

  /** Encrypts, places and records one piece; returns the bytes re-used (0 when stored anew). */
  private async storePlainPiece(
    cid: string,
    index: number,
    offset: number,
    plain: Buffer,
    header: { rf: number; minRank: number },
    nodes: Map<string, NodeRec>,
  ): Promise<number> {
    const plainHash = createHash("sha256").update(plain).digest();
    const { key, nonce } = derivePieceKey(this.secret, plainHash);
    const stored = encryptPiece(plain, key, nonce);
    const id = sha256Hex(stored);
    const cp: CPiece = { id, offset, size: plain.length, stored: stored.length, plain: plainHash.toString("hex") };
    // The reference goes in first, so a repair running meanwhile sees the piece in use.
    await this.store.batch().put(this.cpieces, `${cid}!${idx(index)}`, cp).put(this.refs, `${id}!${cid}`, 1).write();
    let existing = await this.pieces.get(id);
    if (existing && existing.replicas.length > 0) return plain.length;
    const pending = this.storing.get(id);
    if (pending) {
      await pending;
      return plain.length;
    }
    const p = this.placePiece(id, stored, header, nodes);
    this.storing.set(id, p);
    try {
      existing = await p;
    } finally {
      this.storing.delete(id);
    }
    return 0;
  }

  /** Puts a new piece on `rf` distinct nodes, replacing nodes that fail. */
  private async placePiece(id: string, stored: Buffer, header: { rf: number; minRank: number }, nodes: Map<string, NodeRec>): Promise<PieceRec> {
    const tried = new Set<string>();
    const confirmed: string[] = [];
    let lastErr: unknown;
    while (confirmed.length < header.rf) {
      const need = header.rf - confirmed.length;
      const picks = this.candidates(nodes, header.minRank, stored.length, new Set([...tried, ...confirmed])).slice(0, need);
      if (picks.length === 0) {
        throw new NodeUnavailableError(
          `piece ${id.slice(0, 12)} reached ${confirmed.length} of ${header.rf} replicas; no other node could take it${lastErr ? `: ${describeError(lastErr)}` : ""}`,
          lastErr,
        );
      }
      for (const n of picks) {
        tried.add(n.id);
        this.charge(n.id, stored.length);
      }
      const grant = this.manageGrant();
      const results = await Promise.allSettled(picks.map((n) => this.client(n).put(grant, id, stored, { deadline: Date.now() + 60_000 })));
      results.forEach((r, i) => {
        const n = picks[i] as NodeRec;
        if (r.status === "fulfilled") confirmed.push(n.id);
        else {
          lastErr = r.reason;
          this.charge(n.id, -stored.length);
          const code = parseRichError(r.reason).code;
          if (code === Status.UNAVAILABLE || code === Status.DEADLINE_EXCEEDED) {
            const l = this.live.get(n.id);
            if (l) l.reachable = false;
          }
        }
      });
    }
    const rec: PieceRec = { stored: stored.length, replicas: confirmed.map((node) => ({ node })), minRank: header.minRank, createdAt: Date.now(), confirmedAt: Date.now() };
    await this.pieceLock.run(id, async () => {
      const prev = await this.pieces.get(id);
      if (prev) {
        const have = new Set(prev.replicas.map((r) => r.node));
        for (const r of rec.replicas) if (!have.has(r.node)) prev.replicas.push(r);
        await this.pieces.put(id, prev);
      } else await this.pieces.put(id, rec);
    });
    return rec;
  }

  /** Removes what an upload that did not commit left behind. */
  private async dropUncommitted(cid: string): Promise<void> {
    const ids: string[] = [];
    const b = this.store.batch();
    for await (const [k, cp] of this.cpieces.prefixed(`${cid}!`)) {
      b.del(this.cpieces, k).del(this.refs, `${cp.id}!${cid}`);
      ids.push(cp.id);
    }
    await b.write();
    for (const id of new Set(ids)) await this.releasePiece(id);
  }

  // ---------------------------------------------------------------- read side

  private describeContent(r: ContentRecord): Content {
    return {
      contentId: r.id,
      name: r.name,
      size: BigInt(r.size),
      sha256: Buffer.from(r.sha256, "hex"),
      pieceCount: r.pieceCount,
      chunking: r.chunking === "fixed" ? ChunkingMode.FIXED : ChunkingMode.CONTENT_DEFINED,
      replicationFactor: r.rf,
      minSecurityRank: r.minRank,
      owner: r.owner,
      createdAt: new Date(r.createdAt),
      reusedBytes: BigInt(r.reusedBytes),
      mirrorReplicas: r.mirrors,
    };
  }

  private async requireContent(cid: string): Promise<ContentRecord> {
    if (!CONTENT_ID.test(cid)) throw badField("content_id", "26 lower-case base32 characters", "BAD_CONTENT_ID");
    const rec = await this.contents.get(cid);
    if (!rec) throw new ContentNotFoundError("content", cid);
    return rec;
  }

  /** One content's record. */
  async getContent(cid: string): Promise<Content> {
    return this.describeContent(await this.requireContent(cid));
  }

  /** A page of contents. */
  async listContents(pageSize: number, pageToken: string): Promise<{ contents: Content[]; nextPageToken: string }> {
    if (pageToken && !CONTENT_ID.test(pageToken)) throw badField("page_token", "not a token from a previous response", "BAD_PAGE_TOKEN");
    const size = pageSize === 0 ? 100 : Math.min(pageSize, 1000);
    const contents: Content[] = [];
    let last = "";
    for await (const [k, r] of this.contents.entries(pageToken ? { gt: pageToken, limit: size } : { limit: size })) {
      contents.push(this.describeContent(r));
      last = k;
    }
    return { contents, nextPageToken: contents.length === size ? last : "" };
  }

  /** The manifest of a content, with a fresh read grant. */
  async manifest(cid: string, ttlMs: number | undefined, caller: Caller): Promise<Manifest> {
    const rec = await this.requireContent(cid);
    const ttl = Math.min(ttlMs && ttlMs > 0 ? ttlMs : this.opts.grantTtlMs, this.opts.maxGrantTtlMs);
    const { token, claims } = this.grants.sign({ sub: caller.principal, scope: "read", cid, exp: Date.now() + ttl });
    const nodes = await this.nodeMap();
    const pieces: ManifestPiece[] = [];
    const cps: CPiece[] = [];
    for await (const [, cp] of this.cpieces.prefixed(`${cid}!`)) cps.push(cp);
    const recs = await this.pieces.getMany(cps.map((c) => c.id));
    cps.forEach((cp, i) => {
      const { key, nonce } = derivePieceKey(this.secret, Buffer.from(cp.plain, "hex"));
      const pr = recs[i];
      const replicas = (pr?.replicas ?? [])
        .map((r) => ({ r, n: nodes.get(r.node) }))
        .filter((x): x is { r: Replica; n: NodeRec } => x.n !== undefined)
        .sort((a, b) => Number(this.live.get(b.n.id)?.reachable ?? false) - Number(this.live.get(a.n.id)?.reachable ?? false))
        .map(({ r, n }) => ({ nodeId: n.id, address: n.address, mirror: r.mirror ?? false }));
      pieces.push({
        index: i,
        offset: BigInt(cp.offset),
        size: cp.size,
        pieceId: cp.id,
        storedSize: cp.stored,
        key,
        nonce,
        replicas,
        accessTag: this.grants.accessTag(claims, cp.id),
      });
    });
    this.noteAccess(cid);
    const now = Date.now();
    await this.history.put(this.historyKey(now), this.hist("manifest", caller, rec, rec.size), { ttlMs: this.opts.historyRetentionMs });
    return { content: this.describeContent(rec), pieces, grant: { token, expiresAt: new Date(claims.exp) } };
  }

  // ---------------------------------------------------------------- history

  private historyKey(at: number): string {
    return `${(MAX_TS - at).toString(36).padStart(11, "0")}!${(this.seq++ % 1e9).toString(36).padStart(6, "0")}`;
  }

  private hist(kind: HistoryRec["kind"], caller: Caller, rec: ContentRecord, bytes: number, elapsedMs?: number): HistoryRec {
    return { kind, principal: caller.principal, cid: rec.id, name: rec.name, bytes, at: Date.now(), peer: caller.peer, ...(elapsedMs !== undefined ? { elapsedMs } : {}) };
  }

  /** Logs a finished download. */
  async reportDownload(cid: string, bytes: number, elapsedMs: number, requestId: string, caller: Caller): Promise<void> {
    const rec = await this.requireContent(cid);
    if (requestId) {
      const k = `dl\0${caller.principal}\0${requestId}`;
      if (await this.uploads.get(k)) return;
      await this.uploads.put(k, cid, { ttlMs: 86_400_000 });
    }
    await this.history.put(this.historyKey(Date.now()), this.hist("download", caller, rec, bytes, elapsedMs), { ttlMs: this.opts.historyRetentionMs });
  }

  /** A page of history, newest first. */
  async listHistory(f: {
    contentId: string;
    principal: string;
    kind: HistoryKind;
    since?: Date | undefined;
    until?: Date | undefined;
    pageSize: number;
    pageToken: string;
  }): Promise<{ entries: HistoryEntry[]; nextPageToken: string }> {
    if (f.pageToken && !/^[0-9a-z]{11}![0-9a-z]{6}$/.test(f.pageToken)) throw badField("page_token", "not a token from a previous response", "BAD_PAGE_TOKEN");
    if (f.since && f.until && f.since > f.until) throw badField("since", "must not be after until", "BAD_TIME_RANGE");
    const size = f.pageSize === 0 ? 100 : Math.min(f.pageSize, 1000);
    const kinds: Record<HistoryRec["kind"], HistoryKind> = { upload: HistoryKind.UPLOAD, manifest: HistoryKind.MANIFEST, download: HistoryKind.DOWNLOAD, delete: HistoryKind.DELETE };
    const range: { gt?: string; gte?: string; lt?: string } = {};
    if (f.pageToken) range.gt = f.pageToken;
    else if (f.until) range.gt = (MAX_TS - f.until.getTime()).toString(36).padStart(11, "0") + "!~";
    if (f.since) range.lt = (MAX_TS - f.since.getTime()).toString(36).padStart(11, "0") + "!~";
    const entries: HistoryEntry[] = [];
    let last = "";
    for await (const [k, h] of this.history.entries(range)) {
      if (f.contentId && h.cid !== f.contentId) continue;
      if (f.principal && h.principal !== f.principal) continue;
      if (f.kind && kinds[h.kind] !== f.kind) continue;
      entries.push({
        kind: kinds[h.kind],
        principal: h.principal,
        contentId: h.cid,
        name: h.name,
        bytes: BigInt(h.bytes),
        at: new Date(h.at),
        ...(h.elapsedMs !== undefined ? { elapsed: { seconds: BigInt(Math.floor(h.elapsedMs / 1000)), nanos: Math.round((h.elapsedMs % 1000) * 1e6) } } : {}),
        peer: h.peer,
      });
      last = k;
      if (entries.length === size) break;
    }
    return { entries, nextPageToken: entries.length === size ? last : "" };
  }

  // ---------------------------------------------------------------- delete

  /** Deletes a content and the pieces nobody else uses. */
  async deleteContent(cid: string, caller: Caller): Promise<{ deleted: number; shared: number; pending: number }> {
    const rec = await this.requireContent(cid);
    const ids: string[] = [];
    const b = this.store.batch().del(this.contents, cid);
    for await (const [k, cp] of this.cpieces.prefixed(`${cid}!`)) {
      b.del(this.cpieces, k).del(this.refs, `${cp.id}!${cid}`);
      ids.push(cp.id);
    }
    b.put(this.history, this.historyKey(Date.now()), this.hist("delete", caller, rec, rec.size), { ttlMs: this.opts.historyRetentionMs });
    await b.write();
    let deleted = 0;
    let shared = 0;
    let pending = 0;
    for (const id of new Set(ids)) {
      const r = await this.releasePiece(id);
      if (r === "shared") shared++;
      else {
        deleted++;
        pending += r.pending;
      }
    }
    this.access.delete(cid);
    this.log.info({ content: cid, deleted, shared, pending }, "content deleted");
    return { deleted, shared, pending };
  }

  private async inUse(id: string): Promise<boolean> {
    for await (const [k] of this.refs.prefixed(`${id}!`)) {
      const cid = k.slice(id.length + 1);
      if (this.uploading.has(cid) || (await this.contents.has(cid))) return true;
    }
    return false;
  }

  /** Deletes a piece everywhere unless some content still uses it. */
  private releasePiece(id: string): Promise<"shared" | { pending: number }> {
    return this.pieceLock.run(id, async () => {
      if (await this.inUse(id)) return "shared" as const;
      const rec = await this.pieces.get(id);
      if (!rec) return { pending: 0 };
      const nodes = await this.nodeMap();
      const grant = this.manageGrant();
      const left: Replica[] = [];
      await Promise.all(
        rec.replicas.map(async (r) => {
          const n = nodes.get(r.node);
          if (!n) return;
          try {
            await this.client(n).delete(grant, id, { deadline: Date.now() + 10_000 });
            this.charge(n.id, -rec.stored);
          } catch {
            left.push(r);
          }
        }),
      );
      const b = this.store.batch();
      for await (const [k] of this.refs.prefixed(`${id}!`)) b.del(this.refs, k);
      if (left.length) b.put(this.pieces, id, { ...rec, replicas: left });
      else b.del(this.pieces, id);
      await b.write();
      return { pending: left.length };
    });
  }

  // ---------------------------------------------------------------- copies

  /** Copies a piece onto `target` from the first holder that answers; verifies it there. */
  private async copyTo(id: string, target: NodeRec, holders: NodeRec[]): Promise<void> {
    let lastErr: unknown;
    for (const src of holders) {
      try {
        const g = this.manageGrant();
        await this.client(target).copyFromPeer(g, id, src.address, g, { deadline: Date.now() + 120_000 });
        const { held } = await this.client(target).has(g, [id], true, { deadline: Date.now() + 60_000 });
        if (!held.includes(id)) throw new Error(`piece ${id} did not verify on ${target.id} after the copy`);
        return;
      } catch (err) {
        lastErr = err;
      }
    }
    throw new NodeUnavailableError(`could not copy piece ${id.slice(0, 12)} to ${target.id}: ${describeError(lastErr)}`, lastErr);
  }

  // ---------------------------------------------------------------- drain / remove

  /** Marks a node DRAINING and starts moving its pieces away. */
  async drainNode(nodeId: string): Promise<DistributionNode> {
    const n = await this.nodeLock.run(nodeId, async () => {
      const n = await this.nodes.get(nodeId);
      if (!n) throw new ContentNotFoundError("node", nodeId);
      if (n.state === "active") {
        n.state = "draining";
        n.drained = 0;
        delete n.drainError;
        await this.nodes.put(nodeId, n);
      }
      return n;
    });
    if (n.state === "draining") this.startDrain(nodeId);
    return this.describeNode(n, await this.placementCounts());
  }

  private startDrain(nodeId: string): void {
    if (this.drains.has(nodeId)) return;
    const p = this.runDrain(nodeId)
      .catch((err: unknown) => this.log.error({ err, node: nodeId }, "drain stopped"))
      .finally(() => this.drains.delete(nodeId));
    this.drains.set(nodeId, p);
  }

  private async setNode(nodeId: string, f: (n: NodeRec) => void): Promise<void> {
    await this.nodeLock.run(nodeId, async () => {
      const n = await this.nodes.get(nodeId);
      if (!n) return;
      f(n);
      await this.nodes.put(nodeId, n);
    });
  }

  /** The drain loop: runs until nothing is placed on the node, retrying failures. */
  private async runDrain(nodeId: string): Promise<void> {
    this.log.info({ node: nodeId }, "drain started");
    for (let round = 1; !this.stopped && !this.shutdown.aborted; round++) {
      const node = await this.nodes.get(nodeId);
      if (!node || node.state !== "draining") return;
      const todo: string[] = [];
      for await (const [id, p] of this.pieces.entries()) if (p.replicas.some((r) => r.node === nodeId)) todo.push(id);
      if (todo.length === 0) {
        // Copies whose delete failed mid-way are removed now; a node that is down keeps
        // them (ciphertext nobody can be granted any more) and the drain still ends.
        let sweepError: string | undefined;
        try {
          await this.sweepNode(node);
        } catch (err) {
          sweepError = `drained, but leftover copies could not be deleted: ${describeError(err)}`;
        }
        await this.setNode(nodeId, (n) => {
          n.state = "drained";
          if (sweepError) n.drainError = sweepError;
          else delete n.drainError;
        });
        this.log.info({ node: nodeId }, "drain finished");
        return;
      }
      const sem = new Semaphore(this.opts.drainConcurrency);
      let lastErr: unknown;
      await Promise.all(
        todo.map(async (id) => {
          await sem.acquire();
          try {
            if (this.stopped || this.shutdown.aborted) return;
            await this.moveOff(id, nodeId);
          } catch (err) {
            lastErr = err;
          } finally {
            sem.release();
          }
        }),
      );
      if (lastErr) {
        await this.setNode(nodeId, (n) => (n.drainError = describeError(lastErr)));
        await sleep(Math.min(5000, 200 * round), this.shutdown).catch(() => undefined);
      }
    }
  }

  /** Moves one piece off a draining node: copy → verify → switch placement → delete. */
  private async moveOff(id: string, from: string): Promise<void> {
    const nodes = await this.nodeMap();
    const rec = await this.pieces.get(id);
    if (!rec || !rec.replicas.some((r) => r.node === from)) return;
    const holders = rec.replicas.map((r) => r.node);
    let targetId = await this.intents.get(`${from}!${id}`);
    let target = targetId ? nodes.get(targetId) : undefined;
    // A remembered target is reused after a restart, unless it left or went down meanwhile.
    if (!target || target.state !== "active" || holders.includes(target.id) || !(this.live.get(target.id)?.reachable ?? false)) {
      target = this.candidates(nodes, rec.minRank, rec.stored, new Set(holders))[0];
      if (!target) throw new NoPlacementError(`no node can take piece ${id.slice(0, 12)} from ${from}`);
      targetId = target.id;
      await this.intents.put(`${from}!${id}`, targetId);
    }
    const source = nodes.get(from);
    const others = holders.filter((h) => h !== from).map((h) => nodes.get(h)).filter((n): n is NodeRec => n !== undefined);
    await this.copyTo(id, target, [...(source ? [source] : []), ...others]);
    this.charge(target.id, rec.stored);
    const t = target;
    await this.pieceLock.run(id, async () => {
      const cur = await this.pieces.get(id);
      if (!cur) return;
      const mirror = cur.replicas.find((r) => r.node === from)?.mirror;
      cur.replicas = cur.replicas.filter((r) => r.node !== from && r.node !== t.id);
      cur.replicas.push({ node: t.id, ...(mirror ? { mirror } : {}) });
      const n = await this.nodes.get(from);
      const b = this.store.batch().put(this.pieces, id, cur).del(this.intents, `${from}!${id}`);
      if (n) b.put(this.nodes, from, { ...n, drained: n.drained + 1 });
      await b.write();
    });
    if (source) {
      try {
        await this.client(source).delete(this.manageGrant(), id, { deadline: Date.now() + 10_000 });
        this.charge(from, -rec.stored);
      } catch {
        // Left for the end-of-drain sweep (or a repair).
      }
    }
  }

  /** Deletes every copy on a node that the records do not place there. */
  private async sweepNode(node: NodeRec): Promise<number> {
    const c = this.client(node);
    const held = await c.listAll(() => this.manageGrant(), { deadline: Date.now() + 60_000 });
    let n = 0;
    for (const id of held) {
      const rec = await this.pieces.get(id);
      if (rec?.replicas.some((r) => r.node === node.id)) continue;
      await c.delete(this.manageGrant(), id, { deadline: Date.now() + 10_000 });
      n++;
    }
    return n;
  }

  /** Forgets a node, refused when a piece would fall below the minimum replica count. */
  async removeNode(nodeId: string): Promise<number> {
    return this.nodeLock.run(nodeId, async () => {
      const n = await this.nodes.get(nodeId);
      if (!n) throw new ContentNotFoundError("node", nodeId);
      const short: string[] = [];
      const affected: string[] = [];
      for await (const [id, p] of this.pieces.entries()) {
        if (!p.replicas.some((r) => r.node === nodeId)) continue;
        affected.push(id);
        const left = p.replicas.filter((r) => r.node !== nodeId && !r.mirror).length;
        if (left < this.policy.minReplicas) short.push(id);
      }
      if (short.length) {
        throw new WouldUnderReplicateError(
          `removing ${nodeId} would leave ${short.length} piece(s) under ${this.policy.minReplicas} replicas; drain it first (switchyard content drain ${nodeId})`,
          short.slice(0, 20),
        );
      }
      for (const id of affected) {
        await this.pieceLock.run(id, async () => {
          const p = await this.pieces.get(id);
          if (p) await this.pieces.put(id, { ...p, replicas: p.replicas.filter((r) => r.node !== nodeId) });
        });
      }
      await this.nodes.del(nodeId);
      this.live.delete(nodeId);
      this.log.info({ node: nodeId, dropped: affected.length }, "node removed");
      return affected.length;
    });
  }

  // ---------------------------------------------------------------- locate / repair

  /** Where a piece is, from the records and (optionally) from every node. */
  async locate(id: string, askNodes: boolean): Promise<{
    recorded: { nodeId: string; address: string; mirror: boolean }[];
    reported: string[];
    unreachable: string[];
    contents: string[];
    confirmedAt?: Date;
  }> {
    if (!PIECE_ID.test(id)) throw badField("piece_id", "64 lower-case hex characters", "BAD_PIECE_ID");
    const nodes = await this.nodeMap();
    const rec = await this.pieces.get(id);
    const contents: string[] = [];
    for await (const [k] of this.refs.prefixed(`${id}!`)) {
      const cid = k.slice(id.length + 1);
      if (await this.contents.has(cid)) contents.push(cid);
    }
    const reported: string[] = [];
    const unreachable: string[] = [];
    if (askNodes) {
      const g = this.manageGrant();
      await Promise.all(
        [...nodes.values()].map(async (n) => {
          try {
            if ((await this.client(n).has(g, [id], false, { deadline: Date.now() + 5000 })).held.includes(id)) reported.push(n.id);
          } catch {
            unreachable.push(n.id);
          }
        }),
      );
    }
    if (!rec && reported.length === 0) throw new ContentNotFoundError("piece", id);
    return {
      recorded: (rec?.replicas ?? []).map((r) => ({ nodeId: r.node, address: nodes.get(r.node)?.address ?? "", mirror: r.mirror ?? false })),
      reported: reported.sort(),
      unreachable: unreachable.sort(),
      contents,
      ...(rec ? { confirmedAt: new Date(rec.confirmedAt) } : {}),
    };
  }

  /** Compares every node's pieces with the records and fixes what disagrees. */
  async repair(dryRun: boolean): Promise<{ checked: number; missing: number; created: number; orphans: number; lost: number; unreachable: string[] }> {
    const nodes = await this.nodeMap();
    const held = new Map<string, Set<string>>();
    const unreachable: string[] = [];
    await Promise.all(
      [...nodes.values()].map(async (n) => {
        try {
          held.set(n.id, new Set(await this.client(n).listAll(() => this.manageGrant(), { deadline: Date.now() + 60_000 })));
        } catch {
          unreachable.push(n.id);
        }
      }),
    );
    if (held.size === 0 && nodes.size > 0) throw new NodeUnavailableError("no distribution node answered");
    const out = { checked: 0, missing: 0, created: 0, orphans: 0, lost: 0, unreachable: unreachable.sort() };
    const known = new Set<string>();
    const rfOf = new Map<string, number>();
    const ids: string[] = [];
    for await (const [id] of this.pieces.entries()) ids.push(id);
    for (const id of ids) {
      out.checked++;
      known.add(id);
      const used = await this.inUse(id);
      const rec = await this.pieces.get(id);
      if (!rec) continue;
      if (!used && Date.now() - rec.createdAt > this.opts.orphanGraceMs) {
        if (!dryRun) await this.releasePiece(id);
        out.orphans += rec.replicas.length;
        continue;
      }
      let rf = rfOf.get(id);
      if (rf === undefined) {
        rf = this.policy.rf;
        for await (const [k] of this.refs.prefixed(`${id}!`)) {
          const c = await this.contents.get(k.slice(id.length + 1));
          if (c) rf = Math.max(rf === this.policy.rf ? c.rf : rf, c.rf);
        }
        rfOf.set(id, rf);
      }
      await this.pieceLock.run(id, async () => {
        const cur = await this.pieces.get(id);
        if (!cur) return;
        const present = cur.replicas.filter((r) => !held.has(r.node) || held.get(r.node)?.has(id));
        out.missing += cur.replicas.length - present.length;
        // Copies the records do not know, on nodes that answered: adopt while short.
        for (const [nid, set] of held) {
          const n = nodes.get(nid);
          if (set.has(id) && !present.some((r) => r.node === nid) && n?.state === "active" && present.length < (rf as number)) present.push({ node: nid });
        }
        if (!dryRun && present.length !== cur.replicas.length) await this.pieces.put(id, { ...cur, replicas: present });
        const holders = present.filter((r) => held.get(r.node)?.has(id)).map((r) => nodes.get(r.node)).filter((n): n is NodeRec => n !== undefined);
        if (holders.length === 0 && present.length === 0) {
          out.lost++;
          return;
        }
        let count = present.length;
        while (!dryRun && count < (rf as number) && holders.length > 0) {
          const target = this.candidates(nodes, cur.minRank, cur.stored, new Set(present.map((r) => r.node)))[0];
          if (!target) break;
          try {
            await this.copyTo(id, target, holders);
          } catch (err) {
            this.log.warn({ piece: id, err: describeError(err) }, "repair copy failed");
            break;
          }
          present.push({ node: target.id });
          this.charge(target.id, cur.stored);
          await this.pieces.put(id, { ...cur, replicas: present });
          out.created++;
          count++;
        }
        if (dryRun && count < (rf as number)) out.created += (rf as number) - count;
      });
    }
    // Copies of pieces that no record knows at all.
    for (const [nid, set] of held) {
      for (const id of set) {
        if (known.has(id) || this.storing.has(id)) continue;
        const rec = await this.pieces.get(id);
        if (rec?.replicas.some((r) => r.node === nid)) continue;
        out.orphans++;
        const n = nodes.get(nid);
        if (!dryRun && n) await this.client(n).delete(this.manageGrant(), id).catch(() => undefined);
      }
    }
    this.log.info({ ...out, dryRun }, "repair pass done");
    return out;
  }

  // ---------------------------------------------------------------- mirrors

  private noteAccess(cid: string): void {
    const list = this.access.get(cid) ?? [];
    list.push(Date.now());
    this.access.set(cid, list);
  }

  /** Requests per minute of a content over the mirror window. */
  accessRate(cid: string): number {
    const since = Date.now() - this.opts.mirrorWindowMs;
    const list = (this.access.get(cid) ?? []).filter((t) => t >= since);
    if (list.length) this.access.set(cid, list);
    else this.access.delete(cid);
    return list.length / (this.opts.mirrorWindowMs / 60_000);
  }

  /** Adds a mirror replica to hot contents and removes one from cold ones. */
  async mirrorPass(): Promise<void> {
    const now = Date.now();
    const p = this.policy;
    for await (const [cid, rec] of this.contents.entries()) {
      const rate = this.accessRate(cid);
      const since = now - (this.lastMirrorChange.get(cid) ?? 0);
      if (since < this.opts.mirrorDwellMs) continue;
      if (rate > p.mirrorAbove && rec.mirrors < p.maxMirrors) {
        if (await this.changeMirrors(rec, +1)) this.lastMirrorChange.set(cid, now);
      } else if (rate < p.unmirrorBelow && rec.mirrors > 0) {
        if (await this.changeMirrors(rec, -1)) this.lastMirrorChange.set(cid, now);
      }
    }
  }

  private async changeMirrors(rec: ContentRecord, delta: 1 | -1): Promise<boolean> {
    const nodes = await this.nodeMap();
    const ids = new Set<string>();
    for await (const [, cp] of this.cpieces.prefixed(`${rec.id}!`)) ids.add(cp.id);
    for (const id of ids) {
      await this.pieceLock.run(id, async () => {
        const cur = await this.pieces.get(id);
        if (!cur) return;
        if (delta > 0) {
          const target = this.candidates(nodes, cur.minRank, cur.stored, new Set(cur.replicas.map((r) => r.node)))[0];
          if (!target) return;
          const holders = cur.replicas.map((r) => nodes.get(r.node)).filter((n): n is NodeRec => n !== undefined);
          await this.copyTo(id, target, holders);
          this.charge(target.id, cur.stored);
          cur.replicas.push({ node: target.id, mirror: true });
          await this.pieces.put(id, cur);
        } else {
          const i = cur.replicas.findIndex((r) => r.mirror);
          if (i < 0) return;
          const [m] = cur.replicas.splice(i, 1);
          await this.pieces.put(id, cur);
          const n = m ? nodes.get(m.node) : undefined;
          if (n) await this.client(n).delete(this.manageGrant(), id).catch(() => undefined);
        }
      }).catch((err: unknown) => this.log.warn({ piece: id, err: describeError(err) }, "mirror change failed"));
    }
    const fresh = await this.contents.get(rec.id);
    if (!fresh) return false;
    fresh.mirrors = Math.max(0, fresh.mirrors + delta);
    await this.contents.put(rec.id, fresh);
    this.log.info({ content: rec.id, mirrors: fresh.mirrors }, delta > 0 ? "mirror replicas added" : "mirror replicas removed");
    return true;
  }

  // ---------------------------------------------------------------- policy

  /** The policy as a message. */
  policyMessage(): ReplicaPolicy {
    const p = this.policy;
    return { defaultReplicationFactor: p.rf, minReplicas: p.minReplicas, mirrorAbovePerMinute: p.mirrorAbove, unmirrorBelowPerMinute: p.unmirrorBelow, maxMirrorReplicas: p.maxMirrors };
  }

  /** Replaces the policy (0 keeps a value). */
  async setPolicy(m: ReplicaPolicy): Promise<ReplicaPolicy> {
    const next: Policy = {
      rf: m.defaultReplicationFactor || this.policy.rf,
      minReplicas: m.minReplicas || this.policy.minReplicas,
      mirrorAbove: m.mirrorAbovePerMinute || this.policy.mirrorAbove,
      unmirrorBelow: m.unmirrorBelowPerMinute || this.policy.unmirrorBelow,
      maxMirrors: m.maxMirrorReplicas || this.policy.maxMirrors,
    };
    if (next.rf > 16) throw badField("policy.default_replication_factor", "at most 16", "BAD_REPLICATION_FACTOR");
    if (next.unmirrorBelow >= next.mirrorAbove) {
      throw badField("policy.unmirror_below_per_minute", "must be lower than mirror_above_per_minute (hysteresis)", "NO_HYSTERESIS");
    }
    if (next.minReplicas > next.rf) throw new ContentPreconditionError("min_replicas cannot exceed the default replication factor", "MIN_ABOVE_FACTOR");
    await this.meta.put("policy", next);
    this.policy = next;
    return this.policyMessage();
  }
}
