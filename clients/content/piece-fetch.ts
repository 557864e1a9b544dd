/**
 * One fetch attempt of one piece from one node: stream its stored bytes, decrypt each
 * chunk as it arrives and authenticate the whole piece with its GCM tag at the end.
 * Nothing of a piece is returned before the tag verified. The key never reaches the
 * nodes, so the tag also proves the bytes are the piece the manifest names (a node cannot
 * produce another ciphertext that passes). Used by the downloader in its own thread and
 * by its fetch workers (piece-worker.ts).
 */
import { createDecipheriv, type DecipherGCM } from "node:crypto";
import { PieceAuthError, TAG_BYTES } from "./crypto.js";
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
 * Fetches, decrypts and authenticates one piece; the plaintext in DECRYPT_SLICE buffers.
 * With `direct` (plaintext channels) it reads through the direct reader first and repeats
 * the attempt through grpc-js when that could not deliver the piece (direct-piece.ts).
 */
export async function fetchPieceFrom(
  client: DistributionNodeClient,
  r: PieceFetchRequest,
  signal: AbortSignal,
  direct?: DirectPiecePool,
  onFallback?: () => void,
): Promise<Buffer[]> {
  if (r.storedSize < TAG_BYTES) throw new PieceAuthError(`piece ${r.index} is shorter than its tag`);
  const conn = direct?.get(client.address);
  if (conn) {
    const dec = new PieceDecryptor(r);
    try {
      await conn.fetch(r, r.storedSize, (buf, start, end) => dec.update(buf.subarray(start, end)), signal, r.deadline);
      return dec.finish();
    } catch (err) {
      if (!(err instanceof DirectReadFailed)) throw err;
      onFallback?.();
    }
  }
  const dec = new PieceDecryptor(r);
  for await (const chunk of client.stream({ grant: r.grant, pieceId: r.pieceId, accessTag: r.accessTag, maxBytes: r.storedSize }, { signal, deadline: r.deadline })) {
    dec.update(chunk);
  }
  return dec.finish();
}

/** Decrypts a piece's stored bytes as they arrive; `finish` authenticates with the tag. */
class PieceDecryptor {
  private readonly d: DecipherGCM;
  private readonly plain: Buffer[] = [];
  private readonly tag = Buffer.alloc(TAG_BYTES);
  private readonly bodyBytes: number;
  private got = 0;

  constructor(private readonly r: PieceFetchRequest) {
    this.bodyBytes = r.storedSize - TAG_BYTES;
    this.d = createDecipheriv("aes-256-gcm", r.key, r.nonce);
  }

  /** The next stored bytes (decrypted now: `chunk` may be reused after this returns). */
  update(chunk: Buffer): void {
    const body = Math.max(0, Math.min(chunk.length, this.bodyBytes - this.got));
    // Decrypted in slices: small output buffers come from the allocator's free lists,
    // MiB-sized ones are fresh memory (page faults) and cost about half as much again.
    for (let off = 0; off < body; off += DECRYPT_SLICE) {
      const out = this.d.update(chunk.subarray(off, Math.min(body, off + DECRYPT_SLICE)));
      if (out.length) this.plain.push(out);
    }
    if (body < chunk.length) chunk.copy(this.tag, this.got + body - this.bodyBytes, body);
    this.got += chunk.length;
  }

  /** The plaintext, once the size and the GCM tag check out. */
  finish(): Buffer[] {
    const { r, d, plain, tag, got } = this;
    if (got !== r.storedSize) throw new PieceAuthError(`piece ${r.index} from ${r.nodeId} has ${got} stored bytes, expected ${r.storedSize}`);
    d.setAuthTag(tag);
    try {
      const fin = d.final();
      if (fin.length) plain.push(fin);
    } catch (err) {
      throw new PieceAuthError(`piece ${r.index} from ${r.nodeId} failed authentication (tampered or corrupt)`, { cause: err });
    }
    const size = plain.reduce((n, b) => n + b.length, 0);
    if (size !== r.size) throw new PieceAuthError(`piece ${r.index} from ${r.nodeId} has ${size} bytes, expected ${r.size}`);
    return plain;
  }
}
