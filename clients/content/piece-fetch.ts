/**
 * One fetch attempt of one piece from one node, and the piece's decryption. An attempt
 * only receives the piece's stored bytes (ciphertext || GCM tag) into a reused buffer
 * (`StoredPiece`); they are decrypted and authenticated by `open()` when the downloader
 * hands the piece out, so the plaintext lives only from then until the reader takes it.
 * Plaintext held for long — decrypted at arrival and waiting for the pieces before it —
 * is what made V8 run a full garbage collection every ~64 MB downloaded: Node's decipher
 * writes into fresh memory, and fresh memory that outlives a young-generation collection
 * is only freed by a full one (docs/content.md). Nothing of a piece is handed out before
 * its tag verified. The key never reaches the nodes, so the tag also proves the bytes are
 * the piece the manifest names (a node cannot produce another ciphertext that passes).
 * Used by the downloader in its own thread and by its fetch workers (piece-worker.ts),
 * which open each piece at once.
 */
import { decryptPieceSlices, PieceAuthError, TAG_BYTES } from "./crypto.js";
import { DirectReadFailed, type DirectPiecePool } from "./direct-piece.js";
import type { DistributionNodeClient } from "./node-client.js";

/** Bytes decrypted per call (and per plaintext buffer handed out). */
export const DECRYPT_SLICE = 64 * 1024;

/** What one attempt needs to know about its piece (plain data: it crosses to workers). */
export interface PieceFetchRequest {
  index: number;
  pieceId: string;
  /** Plaintext bytes. */
  size: number;
  /** Stored bytes (ciphertext + tag). */
  storedSize: number;
  key: Uint8Array;
  nonce: Uint8Array;
  grant: Uint8Array;
  accessTag: Uint8Array;
  /** For error messages. */
  nodeId: string;
  /** Epoch ms after which the attempt is given up. */
  deadline: number;
}

/**
 * Receives one piece's stored bytes from the node at `address` into a buffer from
 * `buffers`. With `direct` (plaintext channels) it reads through the direct reader first
 * and repeats the attempt through grpc-js — `client()`, asked for only then — when that
 * could not deliver the piece (direct-piece.ts). Throws PieceAuthError when the node
 * sends more or fewer bytes than the manifest says.
 */
export async function fetchStoredPiece(
  address: string,
  client: () => DistributionNodeClient | Promise<DistributionNodeClient>,
  r: PieceFetchRequest,
  signal: AbortSignal,
  buffers: PieceBufferPool,
  direct?: DirectPiecePool,
  onFallback?: () => void,
): Promise<StoredPiece> {
  if (r.storedSize < TAG_BYTES) throw new PieceAuthError(`piece ${r.index} is shorter than its tag`);
  const buf = buffers.take(r.storedSize);
  try {
    const conn = direct?.get(address);
    if (conn) {
      let got = 0;
      try {
        // The reader resolves only after exactly storedSize bytes (its maxBytes).
        await conn.fetch(r, r.storedSize, (b, start, end) => (got += b.copy(buf, got, start, end)), signal, r.deadline);
        return new StoredPiece(r, buf, buffers);
      } catch (err) {
        if (!(err instanceof DirectReadFailed)) throw err;
        onFallback?.();
      }
    }
    let got = 0;
    const grpc = await client();
    for await (const chunk of grpc.stream({ grant: r.grant, pieceId: r.pieceId, accessTag: r.accessTag, maxBytes: r.storedSize }, { signal, deadline: r.deadline })) {
      if (got + chunk.length > r.storedSize) throw new PieceAuthError(`piece ${r.index} from ${r.nodeId} has more than the ${r.storedSize} stored bytes expected`);
      got += chunk.copy(buf, got);
    }
    if (got !== r.storedSize) throw new PieceAuthError(`piece ${r.index} from ${r.nodeId} has ${got} stored bytes, expected ${r.storedSize}`);
    return new StoredPiece(r, buf, buffers);
  } catch (err) {
    buffers.give(buf);
    throw err;
  }
}

/** A piece's stored bytes as received, not yet authenticated; `open` or `release` it once. */
export class StoredPiece {
  private done = false;

  constructor(
    readonly r: PieceFetchRequest,
    /** Holds the stored bytes at [0, r.storedSize). */
    private readonly buf: Buffer,
    private readonly buffers: PieceBufferPool,
  ) {}

  /**
   * Decrypts and authenticates the piece: its plaintext in DECRYPT_SLICE buffers, or
   * PieceAuthError when it was altered. Gives the buffer back either way.
   */
  open(): Buffer[] {
    if (this.done) throw new Error("piece already opened or released");
    try {
      return decryptSlices(this.r, this.buf.subarray(0, this.r.storedSize));
    } finally {
      this.release();
    }
  }

  /** Gives the buffer back without decrypting (an attempt that lost a race, a download closed). */
  release(): void {
    if (this.done) return;
    this.done = true;
    this.buffers.give(this.buf);
  }
}

/** Decrypts and authenticates stored bytes (ciphertext || tag) into DECRYPT_SLICE buffers. */
function decryptSlices(r: PieceFetchRequest, stored: Buffer): Buffer[] {
  let plain: Buffer[];
  try {
    plain = decryptPieceSlices(stored, r.key, r.nonce, DECRYPT_SLICE);
  } catch (err) {
    throw new PieceAuthError(`piece ${r.index} from ${r.nodeId} failed authentication (tampered or corrupt)`, { cause: err });
  }
  const size = plain.reduce((n, b) => n + b.length, 0);
  if (size !== r.size) throw new PieceAuthError(`piece ${r.index} from ${r.nodeId} has ${size} bytes, expected ${r.size}`);
  return plain;
}

/** Granularity of pooled piece buffers, so pieces of similar sizes share them. */
const POOL_ROUNDING = 1024 * 1024;

/**
 * Reused buffers for pieces' stored bytes. Buffers that live as long as a download's
 * window of pieces would otherwise be fresh memory per piece, which V8 frees only with
 * full collections. Keeps at most `maxFreeBytes` of free buffers, and none once it has
 * not been used for `idleMs`.
 */
export class PieceBufferPool {
  /** Free buffers, smallest first. */
  private readonly free: Buffer[] = [];
  private freeBytes = 0;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly maxFreeBytes = 256 * 1024 * 1024,
    private readonly idleMs = 10_000,
  ) {}

  /** A buffer of at least `n` bytes (the smallest free one that fits, else a new one). */
  take(n: number): Buffer {
    const i = this.free.findIndex((b) => b.length >= n);
    if (i < 0) return Buffer.allocUnsafeSlow(Math.max(POOL_ROUNDING, Math.ceil(n / POOL_ROUNDING) * POOL_ROUNDING));
    const [b] = this.free.splice(i, 1) as [Buffer];
    this.freeBytes -= b.length;
    return b;
  }

  /** Gives back a buffer from `take` that nothing refers to any more. */
  give(b: Buffer): void {
    let i = this.free.findIndex((f) => f.length >= b.length);
    if (i < 0) i = this.free.length;
    this.free.splice(i, 0, b);
    this.freeBytes += b.length;
    // Over the limit: the smallest go first (the large ones fit every piece).
    while (this.freeBytes > this.maxFreeBytes) this.freeBytes -= (this.free.shift() as Buffer).length;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.clear(), this.idleMs);
    this.idleTimer.unref();
  }

  /** Drops every free buffer. */
  clear(): void {
    clearTimeout(this.idleTimer);
    this.free.length = 0;
    this.freeBytes = 0;
  }
}
