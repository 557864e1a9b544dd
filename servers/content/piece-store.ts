/**
 * A distribution node's piece storage: one file per piece under `<dataDir>/pieces/ab/<id>`
 * (the id is a validated hex SHA-256, never a caller's path), indexed in the node's
 * LevelDB. A piece is written to a temporary file, renamed into place, then indexed; it
 * counts as stored (and is acknowledged) only once the index write resolved, so what was
 * acknowledged survives kill -9. Files without an index entry (a crash between rename and
 * index) are removed at open.
 */
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes, createHash } from "node:crypto";
import type { Collection, NodeStore } from "../runtime/store.js";
import { PIECE_ID } from "../../clients/content/crypto.js";
import { allocPieceChunk, finishPieceChunk, PIECE_HEADROOM, type EncodedPieceResponse } from "../../clients/content/piece-wire.js";

/** A piece file is shorter than its index record says. */
export class PieceTruncatedError extends Error {
  override name = "PieceTruncatedError";
}

/** Index record of one stored piece. */
export interface PieceRecord {
  size: number;
  storedAt: number;
}

/** Stored pieces of one node. */
export class PieceStore {
  private readonly index: Collection<PieceRecord>;
  private used = 0;
  private count = 0;
  private reserved = 0;
  private readonly writing = new Map<string, Promise<boolean>>();
  private readonly handles = new ReadHandles();

  private constructor(
    private readonly dir: string,
    store: NodeStore,
    readonly capacity: number,
  ) {
    this.index = store.collection<PieceRecord>("pieces");
  }

  /** Opens the store, totals the index and removes unindexed files. */
  static async open(dir: string, store: NodeStore, capacity: number): Promise<PieceStore> {
    const s = new PieceStore(dir, store, capacity);
    await mkdir(dir, { recursive: true });
    for await (const [, rec] of s.index.entries()) {
      s.used += rec.size;
      s.count++;
    }
    for (const sub of await readdir(dir)) {
      for (const name of await readdir(join(dir, sub)).catch(() => [] as string[])) {
        if (name.startsWith(".tmp-") || !(await s.index.has(name))) await rm(join(dir, sub, name), { force: true });
      }
    }
    return s;
  }

  /** Bytes stored. */
  get usedBytes(): number {
    return this.used;
  }

  /** Pieces stored. */
  get pieceCount(): number {
    return this.count;
  }

  private path(id: string): string {
    return join(this.dir, id.slice(0, 2), id);
  }

  /** True when the piece is stored. */
  has(id: string): Promise<boolean> {
    return this.index.has(id);
  }

  /** The index record, or undefined. */
  get(id: string): Promise<PieceRecord | undefined> {
    return this.index.get(id);
  }

  /**
   * Stores a piece whose hash the caller verified; false when it was already there.
   * Throws "full" (as a RangeError) when it does not fit.
   */
  async put(id: string, data: Uint8Array): Promise<boolean> {
    if (!PIECE_ID.test(id)) throw new TypeError("bad piece id");
    const inFlight = this.writing.get(id);
    if (inFlight) return inFlight.then(() => false);
    if (await this.index.has(id)) return false;
    if (this.used + this.reserved + data.length > this.capacity) throw new RangeError("node is full");
    this.reserved += data.length;
    const p = (async () => {
      try {
        const final = this.path(id);
        await mkdir(join(this.dir, id.slice(0, 2)), { recursive: true });
        const tmp = join(this.dir, id.slice(0, 2), `.tmp-${randomBytes(6).toString("hex")}`);
        await writeFile(tmp, data);
        await rename(tmp, final);
        await this.index.put(id, { size: data.length, storedAt: Date.now() });
        this.used += data.length;
        this.count++;
        return true;
      } finally {
        this.reserved -= data.length;
        this.writing.delete(id);
      }
    })();
    this.writing.set(id, p);
    return p;
  }

  /** A read stream of the piece's bytes (chunks of `chunkBytes`). */
  open(id: string, chunkBytes: number): NodeJS.ReadableStream & AsyncIterable<Buffer> {
    return createReadStream(this.path(id), { highWaterMark: chunkBytes }) as unknown as NodeJS.ReadableStream & AsyncIterable<Buffer>;
  }

  /**
   * The piece as ready-encoded GetPieceResponse messages of up to `chunkBytes` payload
   * each, read from disk straight into the message buffers (no copy). The first carries
   * `totalSize`; `buffer` is the whole buffer behind the message. Buffers come from `pool`
   * when given (the caller gives each back once the transport is done with it), else are
   * allocated. Throws PieceTruncatedError when the
   * file is shorter than recorded.
   */
  async *readResponses(id: string, chunkBytes: number, size: number, pool?: ChunkPool): AsyncGenerator<EncodedPieceResponse & { encoded: Buffer; buffer: Buffer }> {
    const handle = await this.handles.acquire(id, this.path(id));
    const fh = handle.fh;
    try {
      let pos = 0;
      while (pos < size) {
        const want = Math.min(chunkBytes, size - pos);
        const buf = pool && want <= pool.chunkBytes ? pool.take() : allocPieceChunk(want);
        let n = 0;
        while (n < want) {
          const { bytesRead } = await fh.read(buf, PIECE_HEADROOM + n, want - n, pos + n);
          if (bytesRead === 0) throw new PieceTruncatedError(`piece file ${id} is shorter than its recorded ${size} bytes`);
          n += bytesRead;
        }
        yield Object.assign(finishPieceChunk(buf, n, pos === 0 ? size : 0), { buffer: buf });
        pos += n;
      }
    } finally {
      handle.release();
    }
  }

  /** Closes the read handles kept open (at shutdown). */
  closeHandles(): void {
    this.handles.closeAll();
  }

  /** True when the stored bytes still hash to the id. */
  async verify(id: string): Promise<boolean> {
    try {
      const h = createHash("sha256");
      for await (const c of this.open(id, 1024 * 1024)) h.update(c);
      return h.digest("hex") === id;
    } catch {
      return false;
    }
  }

  /** The whole piece (for tests and repairs). */
  read(id: string): Promise<Buffer> {
    return readFile(this.path(id));
  }

  /** Deletes a piece; true when it existed. */
  async delete(id: string): Promise<boolean> {
    await this.writing.get(id)?.catch(() => undefined);
    const rec = await this.index.get(id);
    if (!rec) return false;
    await this.index.del(id);
    this.used -= rec.size;
    this.count--;
    this.handles.invalidate(id);
    await rm(this.path(id), { force: true });
    return true;
  }

  /** Piece ids after `after`, in order. */
  async list(after: string, limit: number): Promise<string[]> {
    const out: string[] = [];
    for await (const [k] of this.index.entries(after ? { gt: after, limit } : { limit })) out.push(k);
    return out;
  }

  /** Size on disk of a piece file (tests). */
  async fileSize(id: string): Promise<number> {
    return (await stat(this.path(id))).size;
  }

  /** Path of a piece file (tests that tamper with it). */
  filePath(id: string): string {
    return this.path(id);
  }
}

/**
 * Read handles of recently served pieces, kept open so a piece asked for again is not
 * opened and closed again: an open and a close are two thread-pool round trips, about a
 * sixth of a node's CPU per GetPiece call (docs/content.md). Handles are shared by
 * concurrent reads (positional reads), the least recently used idle ones are closed
 * beyond `max`, every idle one after `idleMs`, and a deleted piece's handle at once (or
 * when its last read ends), so a piece stored again is read from its new file.
 */
class ReadHandles {
  /** By piece id, least recently used first. */
  private readonly entries = new Map<string, ReadHandle>();
  private sweep: NodeJS.Timeout | undefined;

  constructor(
    private readonly max = 128,
    private readonly idleMs = 30_000,
  ) {}

  /** A handle on the piece's file; call `release` when done reading. */
  async acquire(id: string, path: string): Promise<{ fh: FileHandle; release: () => void }> {
    let e = this.entries.get(id);
    if (e) this.entries.delete(id); // re-inserted below: most recently used
    else e = { opening: open(path, "r"), users: 0, idleSince: 0, dead: false };
    this.entries.set(id, e);
    e.users++;
    const entry = e;
    let fh: FileHandle;
    try {
      fh = await entry.opening;
    } catch (err) {
      entry.users--;
      if (this.entries.get(id) === entry) this.entries.delete(id);
      throw err;
    }
    let released = false;
    return {
      fh,
      release: () => {
        if (released) return;
        released = true;
        entry.users--;
        entry.idleSince = Date.now();
        if (entry.dead) {
          if (entry.users === 0) close(entry);
        } else this.trim();
      },
    };
  }

  /** Forgets a piece's handle (the piece was deleted); it closes once no read uses it. */
  invalidate(id: string): void {
    const e = this.entries.get(id);
    if (!e) return;
    this.entries.delete(id);
    e.dead = true;
    if (e.users === 0) close(e);
  }

  /** Closes every handle no read uses; the others close when their reads end. */
  closeAll(): void {
    clearTimeout(this.sweep);
    this.sweep = undefined;
    for (const id of [...this.entries.keys()]) this.invalidate(id);
  }

  private trim(): void {
    for (const [id, e] of this.entries) {
      if (this.entries.size <= this.max) break;
      if (e.users === 0) this.invalidate(id);
    }
    if (!this.sweep && this.entries.size > 0) {
      this.sweep = setInterval(() => {
        const before = Date.now() - this.idleMs;
        for (const [id, e] of this.entries) if (e.users === 0 && e.idleSince < before) this.invalidate(id);
        if (this.entries.size === 0) {
          clearInterval(this.sweep);
          this.sweep = undefined;
        }
      }, this.idleMs);
      this.sweep.unref();
    }
  }
}

interface ReadHandle {
  opening: Promise<FileHandle>;
  /** Reads using the handle now. */
  users: number;
  idleSince: number;
  /** Invalidated: closed once `users` is 0. */
  dead: boolean;
}

function close(e: ReadHandle): void {
  void e.opening.then((fh) => fh.close()).catch(() => undefined);
}

/**
 * Reusable message buffers for piece chunks: a node serving at loopback speed otherwise
 * allocates a fresh MiB-sized buffer per chunk, and that external memory churn makes V8
 * run a full mark-compact every few dozen MiB served. It keeps as many free buffers as
 * were in use at once (up to `keepBytes`): 32 MiB (8 chunks) was too few for a node
 * serving 8 MiB pieces to 4 lanes (3 chunks each), and the misses showed as page faults
 * and mark-compacts in `perf`. Free buffers are dropped after `idleMs` without use.
 */
export class ChunkPool {
  private readonly free: Buffer[] = [];
  /** Buffers kept for reuse at most. */
  private readonly keep: number;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    /** Largest payload a pooled buffer holds. */
    readonly chunkBytes: number,
    /** Bytes of free buffers kept for reuse at most (at least 2 buffers). */
    keepBytes = 128 * 1024 * 1024,
    private readonly idleMs = 10_000,
  ) {
    this.keep = Math.max(2, Math.floor(keepBytes / chunkBytes));
  }

  /** A buffer for up to `chunkBytes` payload bytes at PIECE_HEADROOM. */
  take(): Buffer {
    return this.free.pop() ?? allocPieceChunk(this.chunkBytes);
  }

  /** Gives back a buffer from `take` that nothing refers to any more. */
  give(buf: Buffer): void {
    if (this.free.length >= this.keep || buf.length !== PIECE_HEADROOM + this.chunkBytes + 6) return;
    this.free.push(buf);
    if (this.idleTimer) this.idleTimer.refresh();
    else this.idleTimer = setTimeout(() => (this.free.length = 0), this.idleMs).unref();
  }

  /** Free buffers held now. */
  get size(): number {
    return this.free.length;
  }
}
