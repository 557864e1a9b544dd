/**
 * The parallel downloader: given a manifest, it probes the nodes, fetches pieces in
 * parallel from the best replicas, re-routes to another replica when a node fails,
 * hedges (asks a second replica) when a fetch is slow, authenticates and decrypts each
 * piece when it is handed out (a piece that fails is fetched again from another
 * replica), and hands out the plaintext in order as a Readable — the first pieces can
 * be consumed (played) while later ones still arrive — or writes each piece into a file
 * at its offset (downloadManifestToFile). At most `window` pieces are held, so memory
 * does not grow with the content's size. The per-byte work of each attempt (HTTP/2,
 * AES-GCM, and for files the write) runs in this thread or in fetch workers
 * (fetch-workers.ts) so a download can use two cores; every decision stays here.
 */
import { setMaxListeners } from "node:events";
import { open, type FileHandle } from "node:fs/promises";
import { Readable } from "node:stream";
import { status as Status } from "@grpc/grpc-js";
import type { Manifest, ManifestPiece } from "../../gen/switchyard/content/v1/content.js";
import { parseRichError, describeError, type ChannelSettings } from "../grpc/index.js";
import { PieceAuthError } from "./crypto.js";
import { PieceWorkers } from "./fetch-workers.js";
import { writeAllAt } from "./file-sink.js";
import { NodeClientPool } from "./node-client.js";
import { fetchStoredPiece, type PieceFetchRequest } from "./piece-fetch.js";

/** Default of DownloadOptions.windowBytes. */
const DEFAULT_WINDOW_BYTES = 128 * 1024 * 1024;

/** Options of a download. */
export interface DownloadOptions {
  /** Pieces fetched at the same time. Default 8. */
  concurrency?: number;
  /** Pieces held ahead of the reader (fetched or fetching). Default 2 × concurrency. */
  window?: number;
  /**
   * Stored bytes held ahead of the reader at most (one piece always goes ahead). Default
   * 128 MiB: 16 pieces of the 8 MiB a large upload gets, fewer of larger ones.
   */
  windowBytes?: number;
  /** Ask a second replica when a fetch takes this many times the expected time. Default 3; 0 disables hedging. */
  hedgeFactor?: number;
  /** Never hedge before this many ms. Default 300. */
  hedgeMinMs?: number;
  /** Hedge delay before any speed is known, in ms. Default 1500. */
  hedgeInitialMs?: number;
  /** Give up on one fetch attempt after this many ms. Default 60 000. */
  attemptTimeoutMs?: number;
  /** Rounds over all replicas before a piece fails. Default 3. */
  maxRounds?: number;
  /** Probe every node (GetNodeStatus round trip) before fetching. Default true. */
  probe?: boolean;
  /** Channel settings for the nodes. */
  channel?: ChannelSettings;
  /** A pool to reuse (not closed by the download); default: a private one. */
  pool?: NodeClientPool;
  /**
   * Worker threads that fetch, decrypt and authenticate pieces (each with its own
   * connections to the nodes), so the download uses more than one core; 0 = all in this
   * thread. Default: `workers`' thread count when given, else 0. Opt-in: workers halve the
   * busiest client thread but cost 0.4-0.5 ms CPU per MiB more in total, which is a gain
   * only when the client has cores to spare (nodes on other machines); on the 2-core
   * benchmark machine, nodes included, they were not faster (docs/content.md).
   */
  threads?: number;
  /** Fetch workers to reuse when threads > 0 (not closed by the download); default: private ones. */
  workers?: PieceWorkers;
  /**
   * How pieces are read: "direct" (default; plaintext channels) reads GetPiece streams
   * with the downloader's own HTTP/2 reader and falls back to grpc-js for anything but a
   * complete piece (direct-piece.ts); "grpc" always uses grpc-js.
   */
  reader?: "direct" | "grpc";
  /** Cancels the download. */
  signal?: AbortSignal;
  /** Told about each piece delivered and each failover or hedge. */
  onEvent?: (e: DownloadEvent) => void;
  /**
   * Fetches a fresh manifest of the same content when the grant expired mid-download
   * (a node answered UNAUTHENTICATED / GRANT_EXPIRED); the download then continues with
   * its grant and access tags. Unset: an expired grant fails the pieces still to fetch.
   */
  renewManifest?: () => Promise<Manifest>;
}

/** Something that happened during a download. */
export type DownloadEvent =
  | { type: "start"; bytes: number; pieces: number }
  | { type: "piece"; index: number; bytes: number; node: string; ms: number; delivered: number }
  | { type: "failover"; index: number; node: string; error: string }
  | { type: "hedge"; index: number; slowNode: string; node: string }
  | { type: "grant-renewed"; renewals: number };

/** A piece could not be fetched intact from any replica. */
export class PieceUnavailableError extends Error {
  override name = "PieceUnavailableError";
}

interface NodeStat {
  inflight: number;
  /** Estimated ms per byte (EWMA of completed fetches). */
  msPerByte: number | undefined;
  rttMs: number;
  downUntil: number;
  failures: number;
}

/** Download statistics, readable after (or during) the download. */
export interface DownloadStats {
  bytes: number;
  pieces: number;
  failovers: number;
  hedges: number;
  /** Times the grant was renewed (a fresh manifest fetched) during the download. */
  renewals: number;
  /** Attempts the direct reader handed to grpc-js (the node refused, reset or went away). */
  fallbacks: number;
  byNode: Record<string, number>;
}

/**
 * A fetched piece: `open` returns its authenticated plaintext (PieceAuthError when it was
 * altered); `release` drops it unopened. Pieces read in this thread are decrypted by
 * `open`, when they are handed out (piece-fetch.ts); fetch workers open theirs at once.
 */
interface FetchedPiece {
  open(): Buffer[];
  release(): void;
  /** A fetch worker already wrote it into the download's file. */
  written?: boolean;
}

/** A file download's file, and how much of it, from its start, holds written pieces. */
interface FileOutput {
  fh: FileHandle;
  path: string;
  /** Bytes from the start of the file that hold written pieces, all in order. */
  writtenPrefix: number;
}

/** At most this many grant renewals per download (a manager handing out grants that are already expired must not loop). */
const MAX_RENEWALS = 16;

/** True when a node refused a call because the grant expired. */
function isGrantExpired(err: unknown): boolean {
  const e = parseRichError(err);
  return e.code === Status.UNAUTHENTICATED && e.errorInfo?.reason === "GRANT_EXPIRED";
}

/** Plaintext a fetch worker already authenticated (or wrote into the file), as a FetchedPiece. */
function opened(plain: Buffer[], written: boolean): FetchedPiece {
  return { open: () => plain, release: () => undefined, written };
}

/** The worker threads a download uses with these options (see DownloadOptions.threads). */
export function downloadThreads(opts: Pick<DownloadOptions, "threads" | "workers"> = {}): number {
  if (opts.threads !== undefined) return Math.max(0, Math.floor(opts.threads));
  return opts.workers?.threads ?? 0;
}

/** Plaintext bytes of a manifest's pieces. */
function contentBytes(pieces: readonly ManifestPiece[]): number {
  return pieces.reduce((n, p) => n + p.size, 0);
}

/** File writes of this thread in flight at most (file downloads without fetch workers). */
const MAX_FILE_WRITES = 4;

/**
 * Fetches a manifest's pieces into a file, each written at its offset as soon as it is
 * authenticated — by the fetch worker that fetched it when `threads` > 0, so the
 * plaintext never reaches this thread (file-sink.ts). A regular file is created or
 * truncated, then sized to the content up front: on ext4, every write that extends a
 * file journals an inode update, which made writing a fresh file cost ~2 ms of kernel
 * CPU per MiB here against ~0.4 into a file of its final size (docs/content.md). Resolves
 * once every piece is written and no worker writes to the file any more; when the
 * download fails or is cancelled, the file is cut back to the pieces written in order
 * from its start, so it never holds a hole where a piece is missing.
 */
export async function downloadManifestToFile(manifest: Manifest, path: string, opts: DownloadOptions = {}): Promise<DownloadStats> {
  const fh = await open(path, "w");
  const out: FileOutput = { fh, path, writtenPrefix: 0 };
  try {
    const regular = (await fh.stat()).isFile();
    if (regular) await fh.truncate(contentBytes(manifest.pieces));
    const s = downloadManifest(manifest, opts, out);
    try {
      for await (const _ of s) {
        // a file download hands out nothing; the loop ends when every piece is written
      }
    } catch (err) {
      if (regular) await fh.truncate(out.writtenPrefix).catch(() => undefined);
      throw err;
    }
    return s.stats;
  } finally {
    await fh.close();
  }
}

/** Fetches a manifest's pieces and returns the plaintext as an ordered Readable. */
export function downloadManifest(manifest: Manifest, opts: DownloadOptions = {}, file?: FileOutput): Readable & { stats: DownloadStats } {
  const concurrency = Math.max(1, opts.concurrency ?? 8);
  const window = Math.max(concurrency, opts.window ?? concurrency * 2);
  const windowBytes = opts.windowBytes !== undefined && opts.windowBytes >= 0 ? opts.windowBytes : DEFAULT_WINDOW_BYTES;
  const hedgeFactor = opts.hedgeFactor ?? 3;
  const hedgeMin = opts.hedgeMinMs ?? 300;
  const hedgeInitial = opts.hedgeInitialMs ?? 1500;
  const attemptTimeout = opts.attemptTimeoutMs ?? 60_000;
  const maxRounds = opts.maxRounds ?? 3;
  const pool = opts.pool ?? new NodeClientPool(opts.channel ?? {});
  const ownPool = !opts.pool;
  const direct = (opts.reader ?? "direct") === "direct";
  const threads = downloadThreads(opts);
  const workers = threads > 0 ? (opts.workers ?? new PieceWorkers(threads, opts.channel ?? {})) : undefined;
  const ownWorkers = workers !== undefined && !opts.workers;
  const release = (): void => {
    if (ownPool) pool.close();
    if (ownWorkers) workers.close();
  };
  const pieces = manifest.pieces;
  const totalBytes = contentBytes(pieces);
  /** File downloads: each piece's offset in the file, and the workers' sink. */
  const offsets: number[] = [];
  if (file) pieces.reduce((off, p) => ((offsets[p.index] = off), off + p.size), 0);
  const sink = file && workers ? workers.newSink() : undefined;
  /** This thread's file writes in flight. */
  const writes = new Set<Promise<unknown>>();
  /** File downloads: pieces written, and the first piece not known to be written. */
  const written: boolean[] = [];
  let unwritten = 0;
  const markWritten = (index: number): void => {
    written[index] = true;
    while (written[unwritten]) unwritten++;
    if (file) file.writtenPrefix = unwritten < pieces.length ? (offsets[unwritten] as number) : totalBytes;
  };
  let finishing = false;
  /** Settles once neither this thread nor a worker writes to the file any more. */
  const fileQuiet = async (): Promise<void> => {
    await Promise.allSettled([...writes]);
    if (sink !== undefined) await workers?.closeSink(sink);
  };
  let grant: Uint8Array = manifest.grant?.token ?? Buffer.alloc(0);
  /** Access tags of the current grant, by piece index (from a renewed manifest). */
  let accessTags: Map<number, Uint8Array> | undefined;
  let renewing: Promise<void> | undefined;
  const stats: DownloadStats = { bytes: 0, pieces: 0, failovers: 0, hedges: 0, renewals: 0, fallbacks: 0, byNode: {} };
  const onFallback = (): void => {
    stats.fallbacks++;
  };
  const nodes = new Map<string, NodeStat>();
  const addressOf = new Map<string, string>();
  for (const p of pieces) {
    for (const r of p.replicas) {
      addressOf.set(r.nodeId, r.address);
      if (!nodes.has(r.nodeId)) nodes.set(r.nodeId, { inflight: 0, msPerByte: undefined, rttMs: 0, downUntil: 0, failures: 0 });
    }
  }
  let globalMsPerByte: number | undefined;
  const ready = new Map<number, { piece: FetchedPiece; node: string }>();
  /** Replicas whose copy of a piece failed authentication, by piece index. */
  const unauthentic = new Map<number, { nodes: Set<string>; err: unknown }>();
  let launched = 0;
  let emitted = 0;
  /** Stored bytes of the pieces launched and not handed out yet. */
  let aheadBytes = 0;
  let active = 0;
  let wantMore = true;
  let failed = false;
  const stop = new AbortController();
  setMaxListeners(0, stop.signal);
  const onOuterAbort = (): void => {
    out.destroy(opts.signal?.reason instanceof Error ? opts.signal.reason : new Error("download cancelled"));
  };
  opts.signal?.addEventListener("abort", onOuterAbort, { once: true });

  const out = new Readable({
    // Object mode: each decrypted chunk is handed out as is (byte mode would join the
    // buffered chunks into a new Buffer on every read).
    objectMode: true,
    highWaterMark: 1,
    read() {
      wantMore = true;
      flush();
    },
    destroy(err, cb) {
      stop.abort(err ?? new Error("download closed"));
      for (const f of ready.values()) f.piece.release();
      ready.clear();
      opts.signal?.removeEventListener("abort", onOuterAbort);
      // A file download is over for its caller only once nothing writes to the file.
      void (file ? fileQuiet() : Promise.resolve()).finally(() => {
        release();
        cb(err);
      });
    },
  }) as Readable & { stats: DownloadStats };
  out.stats = stats;

  const finish = (): void => {
    opts.signal?.removeEventListener("abort", onOuterAbort);
    release();
    out.push(null);
  };

  const flush = (): void => {
    if (failed || out.destroyed) return;
    while ((file ? writes.size < MAX_FILE_WRITES : wantMore) && ready.has(emitted)) {
      const { piece, node } = ready.get(emitted) as { piece: FetchedPiece; node: string };
      ready.delete(emitted);
      const p = pieces[emitted] as ManifestPiece;
      let plain: Buffer[];
      try {
        plain = piece.open();
      } catch (err) {
        // Altered on that node: fetch the piece again from another replica.
        fail(node, p, err);
        const u = unauthentic.get(p.index) ?? { nodes: new Set<string>(), err };
        u.nodes.add(node);
        u.err = err;
        unauthentic.set(p.index, u);
        launch(p);
        return;
      }
      emitted++;
      aheadBytes -= p.storedSize;
      stats.pieces++;
      stats.bytes += p.size;
      stats.byNode[node] = (stats.byNode[node] ?? 0) + p.storedSize;
      opts.onEvent?.({ type: "piece", index: p.index, bytes: p.size, node, ms: 0, delivered: stats.bytes });
      if (file && piece.written) markWritten(p.index);
      else if (file) writeAt(p.index, plain);
      else for (const b of plain) wantMore = out.push(b);
    }
    if (emitted === pieces.length) {
      if (!file) finish();
      else if (writes.size === 0 && !finishing) {
        finishing = true;
        fileQuiet().then(finish, (err: unknown) => out.destroy(err instanceof Error ? err : new Error(String(err))));
      }
      return;
    }
    pump();
  };

  /** Writes a piece's plaintext at its offset (pieces fetched by workers were written there). */
  const writeAt = (index: number, plain: Buffer[]): void => {
    if (!file) return;
    const w = writeAllAt(file.fh, plain, offsets[index] as number).then(
      () => {
        writes.delete(w);
        markWritten(index);
        flush();
      },
      (err: unknown) => {
        writes.delete(w);
        if (failed || out.destroyed) return;
        failed = true;
        out.destroy(err instanceof Error ? err : new Error(String(err)));
      },
    );
    writes.add(w);
  };

  const pump = (): void => {
    while (!failed && active < concurrency && launched < pieces.length && launched < emitted + window) {
      const next = pieces[launched] as ManifestPiece;
      if (launched > emitted && aheadBytes + next.storedSize > windowBytes) break;
      aheadBytes += next.storedSize;
      launched++;
      launch(next);
    }
  };

  const launch = (p: ManifestPiece): void => {
    active++;
    fetchPiece(p).then(
      (fetched) => {
        active--;
        if (failed || out.destroyed) {
          fetched.piece.release();
          return;
        }
        ready.set(p.index, fetched);
        flush();
      },
      (err: unknown) => {
        active--;
        if (failed || out.destroyed) return;
        failed = true;
        out.destroy(err instanceof Error ? err : new Error(String(err)));
      },
    );
  };

  const expectedMs = (nodeId: string, size: number): number | undefined => {
    const s = nodes.get(nodeId);
    const mpb = s?.msPerByte ?? globalMsPerByte;
    return mpb === undefined ? undefined : mpb * size * Math.max(1, (s?.inflight ?? 0) + 1) + (s?.rttMs ?? 0);
  };

  const pick = (p: ManifestPiece, exclude: Set<string>): string | undefined => {
    const now = Date.now();
    let best: string | undefined;
    let bestScore = Infinity;
    for (const r of p.replicas) {
      if (exclude.has(r.nodeId)) continue;
      const s = nodes.get(r.nodeId) as NodeStat;
      const down = s.downUntil > now ? 1e9 : 0;
      const mpb = s.msPerByte ?? globalMsPerByte ?? 0.001;
      const score = down + (s.inflight + 1) * mpb * p.storedSize + s.rttMs + s.failures * 50;
      if (score < bestScore) {
        bestScore = score;
        best = r.nodeId;
      }
    }
    return best;
  };

  /**
   * One attempt on one node (piece-fetch.ts), in a fetch worker or in this thread: the
   * piece, to be authenticated by its GCM tag when opened; the node's speed estimate is
   * updated.
   */
  const attempt = async (p: ManifestPiece, nodeId: string, signal: AbortSignal): Promise<FetchedPiece> => {
    const s = nodes.get(nodeId) as NodeStat;
    s.inflight++;
    const t0 = performance.now();
    try {
      const req: PieceFetchRequest = {
        index: p.index,
        pieceId: p.pieceId,
        size: p.size,
        storedSize: p.storedSize,
        key: p.key,
        nonce: p.nonce,
        grant,
        accessTag: accessTags?.get(p.index) ?? p.accessTag,
        nodeId,
        deadline: Date.now() + attemptTimeout,
      };
      const address = addressOf.get(nodeId) as string;
      const target = file && sink !== undefined ? { sink, path: file.path, position: offsets[p.index] as number } : undefined;
      const piece: FetchedPiece = workers
        ? opened(await workers.fetch(address, req, signal, direct, onFallback, target), target !== undefined)
        : await fetchStoredPiece(address, () => pool.get(address), req, signal, pool.buffers, direct ? pool.direct : undefined, onFallback);
      const ms = performance.now() - t0;
      const mpb = ms / Math.max(1, p.storedSize) / Math.max(1, s.inflight);
      s.msPerByte = s.msPerByte === undefined ? mpb : s.msPerByte * 0.7 + mpb * 0.3;
      globalMsPerByte = globalMsPerByte === undefined ? mpb : globalMsPerByte * 0.8 + mpb * 0.2;
      s.failures = 0;
      return piece;
    } finally {
      s.inflight--;
    }
  };

  const fetchPiece = async (p: ManifestPiece): Promise<{ piece: FetchedPiece; node: string }> => {
    if (p.replicas.length === 0) throw new PieceUnavailableError(`piece ${p.index} has no replica`);
    const altered = unauthentic.get(p.index);
    let lastErr: unknown = altered?.err;
    for (let round = 0; round < maxRounds; round++) {
      // A replica whose copy failed authentication is not asked again.
      const tried = new Set<string>(altered?.nodes);
      if (tried.size >= p.replicas.length) break;
      while (tried.size < p.replicas.length) {
        if (stop.signal.aborted) throw stop.signal.reason;
        const first = pick(p, tried);
        if (!first) break;
        tried.add(first);
        const usedGrant = grant;
        try {
          return await race(p, first, tried);
        } catch (err) {
          if (stop.signal.aborted) throw stop.signal.reason;
          if (isGrantExpired(err) && opts.renewManifest && stats.renewals < MAX_RENEWALS) {
            // Not the node's fault: renew once for every piece waiting, then ask again.
            await renewGrant(usedGrant);
            tried.delete(first);
            continue;
          }
          lastErr = err;
        }
      }
      await new Promise((r) => setTimeout(r, 200 * (round + 1)));
    }
    throw new PieceUnavailableError(`piece ${p.index} (${p.pieceId.slice(0, 12)}) could not be fetched intact from any replica: ${describeError(lastErr)}`);
  };

  /** Replaces the grant and access tags from a fresh manifest (one request for all pieces). */
  const renewGrant = (usedGrant: Uint8Array): Promise<void> => {
    if (grant !== usedGrant) return Promise.resolve(); // renewed meanwhile
    if (!renewing) {
      renewing = (async () => {
        const m = await (opts.renewManifest as () => Promise<Manifest>)();
        if (m.pieces.length !== pieces.length || m.pieces.some((q, i) => q.pieceId !== pieces[i]?.pieceId || q.index !== pieces[i]?.index)) {
          throw new PieceUnavailableError("the renewed manifest lists different pieces; the content changed");
        }
        grant = m.grant?.token ?? Buffer.alloc(0);
        accessTags = new Map(m.pieces.map((q) => [q.index, q.accessTag]));
        stats.renewals++;
        opts.onEvent?.({ type: "grant-renewed", renewals: stats.renewals });
      })().finally(() => {
        renewing = undefined;
      });
    }
    return renewing;
  };

  const fail = (nodeId: string, p: ManifestPiece, err: unknown): void => {
    const s = nodes.get(nodeId) as NodeStat;
    s.failures++;
    const code = parseRichError(err).code;
    if (err instanceof PieceAuthError || code === Status.UNAVAILABLE || code === Status.DEADLINE_EXCEEDED || code === Status.DATA_LOSS) {
      s.downUntil = Date.now() + (err instanceof PieceAuthError ? 0 : 2000);
    }
    stats.failovers++;
    opts.onEvent?.({ type: "failover", index: p.index, node: nodeId, error: err instanceof Error ? err.message : describeError(err) });
  };

  /** Fetches from `first`, adding a hedge on another replica when it is slow. */
  const race = (p: ManifestPiece, first: string, tried: Set<string>): Promise<{ piece: FetchedPiece; node: string }> =>
    new Promise((resolve, reject) => {
      const controllers: AbortController[] = [];
      let settled = false;
      let running = 0;
      let hedgeTimer: NodeJS.Timeout | undefined;
      let lastErr: unknown;
      const onStop = (): void => controllers.forEach((c) => c.abort());
      stop.signal.addEventListener("abort", onStop, { once: true });
      const done = (): void => {
        settled = true;
        clearTimeout(hedgeTimer);
        stop.signal.removeEventListener("abort", onStop);
        controllers.forEach((c) => c.abort());
      };
      const start = (nodeId: string): void => {
        const c = new AbortController();
        controllers.push(c);
        running++;
        attempt(p, nodeId, c.signal).then(
          (piece) => {
            running--;
            if (settled) {
              piece.release();
              return;
            }
            done();
            resolve({ piece, node: nodeId });
          },
          (err: unknown) => {
            running--;
            if (settled) return;
            if (!c.signal.aborted && !isGrantExpired(err)) fail(nodeId, p, err);
            lastErr = err;
            // A failed attempt while a hedge still runs: let the hedge finish.
            if (running === 0) {
              done();
              reject(lastErr);
            }
          },
        );
      };
      start(first);
      if (hedgeFactor > 0 && p.replicas.length > 1) {
        const exp = expectedMs(first, p.storedSize);
        const delay = exp === undefined ? hedgeInitial : Math.max(hedgeMin, exp * hedgeFactor);
        hedgeTimer = setTimeout(() => {
          if (settled) return;
          const second = pick(p, tried);
          if (!second) return;
          tried.add(second);
          stats.hedges++;
          opts.onEvent?.({ type: "hedge", index: p.index, slowNode: first, node: second });
          start(second);
        }, delay);
        hedgeTimer.unref();
      }
    });

  const begin = async (): Promise<void> => {
    opts.onEvent?.({ type: "start", bytes: totalBytes, pieces: pieces.length });
    if (opts.probe ?? true) {
      await Promise.all(
        [...nodes.keys()].map(async (id) => {
          const s = nodes.get(id) as NodeStat;
          const t0 = performance.now();
          try {
            await pool.get(addressOf.get(id) as string).status({ deadline: Date.now() + 2000 });
            s.rttMs = performance.now() - t0;
          } catch {
            s.downUntil = Date.now() + 2000;
            s.failures++;
          }
        }),
      );
    }
    if (pieces.length === 0) finish();
    else pump();
  };
  void begin().catch((err: unknown) => {
    out.destroy(err instanceof Error ? err : new Error(String(err)));
  });
  return out;
}
