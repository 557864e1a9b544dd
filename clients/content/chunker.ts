/**
 * Splitting a byte stream into pieces without holding more than one piece: fixed-size,
 * or content-defined with a FastCDC-style gear hash (normalized chunking), so that an
 * insertion or deletion only changes the pieces around it and the others keep their
 * bytes (and therefore their stored, convergently encrypted copies).
 */

/** How to split. */
export interface ChunkerOptions {
  /** "fixed" or "content-defined". */
  mode: "fixed" | "content-defined";
  /** Fixed: every piece's size. Content-defined: the average size (a power of two is
   *  used: the nearest one at or below). Bytes. */
  pieceSize: number;
}

/**
 * The largest piece, in plaintext bytes: stored (with its 16-byte GCM tag) it is sent in
 * one PutPiece message, which must stay under the 16 MiB message limit of the manager and
 * the nodes (and a node's default `maxPieceSize`). Content-defined pieces are cut here at
 * the latest: before, a run of bytes without a cut point (zeros in a disk image or a
 * sparse file) made pieces of 4 × the average, 16 MiB at a 4 MiB average, whose stored
 * copy no node could take, and the upload failed.
 */
export const MAX_PIECE_BYTES = 16 * 1024 * 1024 - 64 * 1024;

/** Limits of content-defined pieces for an average size (max: 4 × average, at most MAX_PIECE_BYTES). */
export function cdcLimits(avg: number): { min: number; normal: number; max: number; bits: number } {
  const bits = Math.max(6, Math.floor(Math.log2(avg)));
  const a = 2 ** bits;
  return { min: a / 4, normal: a, max: Math.min(a * 4, MAX_PIECE_BYTES), bits };
}

// 256 pseudo-random 32-bit values (xorshift32 from a fixed seed): the same table
// everywhere, so boundaries are reproducible across processes and versions (pinned by
// test/content/chunker.test.ts). Held as int32: the rolling hash below stays in int32
// arithmetic, which V8 compiles to plain machine adds; with uint32 values (`>>> 0`) the
// sums left the int32 range, went through doubles, and the loop took ~3 ms per MiB
// instead of ~1.2 — most of a manager's CPU in an upload.
const GEAR = (() => {
  const t = new Int32Array(256);
  let x = 0x9e3779b9;
  for (let i = 0; i < 256; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    t[i] = x | 0;
  }
  return t;
})();

/** The top `bits` bits set, as an int32. */
function topMask(bits: number): number {
  return bits <= 0 ? 0 : (0xffffffff << (32 - Math.min(32, bits))) | 0;
}

/** Incremental splitter: `push` bytes, get the pieces completed so far; `end` for the last. */
export class Chunker {
  private readonly min: number;
  private readonly normal: number;
  private readonly max: number;
  private readonly maskS: number;
  private readonly maskL: number;
  private readonly cdc: boolean;
  private buf: Buffer;
  private len = 0;
  private h = 0;

  constructor(opts: ChunkerOptions) {
    if (!(opts.pieceSize >= 64)) throw new RangeError("pieceSize must be at least 64 bytes");
    this.cdc = opts.mode === "content-defined";
    if (this.cdc) {
      const l = cdcLimits(opts.pieceSize);
      this.min = l.min;
      this.normal = l.normal;
      this.max = l.max;
      // Harder to cut before the normal size, easier after: sizes cluster near it.
      this.maskS = topMask(l.bits + 2);
      this.maskL = topMask(l.bits - 2);
    } else {
      this.min = this.normal = this.max = opts.pieceSize;
      this.maskS = this.maskL = 0;
    }
    this.buf = Buffer.allocUnsafeSlow(this.max);
  }

  /** Largest piece this chunker emits. */
  get maxPieceSize(): number {
    return this.max;
  }

  /** Adds bytes; returns the pieces they completed (each a Buffer of its own). */
  push(data: Uint8Array): Buffer[] {
    const out: Buffer[] = [];
    let off = 0;
    while (off < data.length) {
      const room = Math.min(this.max - this.len, data.length - off);
      let take = room;
      let cut = false;
      if (this.cdc) {
        // Bytes before `min` are not hashed; a cut at piece length < normal needs the
        // stricter mask, at or after it the looser one (normalized chunking).
        let h = this.h;
        const start = Math.max(0, this.min - 1 - this.len);
        const strictEnd = Math.min(room, Math.max(start, this.normal - 1 - this.len));
        const maskS = this.maskS;
        const maskL = this.maskL;
        let j = start;
        for (; j < strictEnd; j++) {
          h = ((h << 1) + (GEAR[data[off + j] as number] as number)) | 0;
          if ((h & maskS) === 0) break;
        }
        if (j === strictEnd) {
          for (; j < room; j++) {
            h = ((h << 1) + (GEAR[data[off + j] as number] as number)) | 0;
            if ((h & maskL) === 0) break;
          }
        }
        if (j < room) {
          take = j + 1;
          cut = true;
        }
        this.h = h;
      }
      this.buf.set(data.subarray(off, off + take), this.len);
      this.len += take;
      off += take;
      if (cut || this.len === this.max) out.push(this.emit());
    }
    return out;
  }

  /** The last, possibly short, piece (undefined when nothing is left). */
  end(): Buffer | undefined {
    return this.len > 0 ? this.emit() : undefined;
  }

  private emit(): Buffer {
    const piece = this.buf.subarray(0, this.len);
    this.buf = Buffer.allocUnsafeSlow(this.max);
    this.len = 0;
    this.h = 0;
    return piece;
  }
}
