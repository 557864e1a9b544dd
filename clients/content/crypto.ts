/**
 * Piece encryption: AES-256-GCM, stored as ciphertext followed by the 16-byte tag, and
 * named by the SHA-256 of those stored bytes. The manager derives each piece's key and
 * nonce from its plaintext hash under a secret only the manager knows (convergent
 * encryption): identical pieces encrypt identically and are stored once, while nobody
 * without the secret can confirm a guessed plaintext. A key encrypts exactly one
 * plaintext, so the derived nonce is never reused with another message.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac } from "node:crypto";

/** Bytes of the GCM tag appended to each stored piece. */
export const TAG_BYTES = 16;

/** Lower-case hex SHA-256. */
export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** A piece id is the lower-case hex SHA-256 of the stored bytes. */
export const PIECE_ID = /^[0-9a-f]{64}$/;

/** Key and nonce of a piece from its plaintext hash under the manager's secret. */
export function derivePieceKey(secret: Uint8Array, plainSha256: Uint8Array): { key: Buffer; nonce: Buffer } {
  const key = createHmac("sha256", secret).update("switchyard.content.key\0").update(plainSha256).digest();
  const nonce = createHmac("sha256", secret).update("switchyard.content.nonce\0").update(plainSha256).digest().subarray(0, 12);
  return { key, nonce };
}

/** Encrypts a piece: ciphertext || tag. */
export function encryptPiece(plain: Uint8Array, key: Uint8Array, nonce: Uint8Array): Buffer {
  const c = createCipheriv("aes-256-gcm", key, nonce);
  const body = c.update(plain);
  const fin = c.final();
  return Buffer.concat([body, fin, c.getAuthTag()]);
}

/** Thrown when a stored piece fails authentication (tampered or wrong key). */
export class PieceAuthError extends Error {
  override name = "PieceAuthError";
}

/**
 * Decrypts and authenticates a stored piece (ciphertext || tag) into plaintext buffers of
 * at most `slice` bytes; throws PieceAuthError when it was altered. Small slices come from
 * the allocator's free lists, MiB-sized outputs are fresh memory (page faults).
 */
export function decryptPieceSlices(stored: Uint8Array, key: Uint8Array, nonce: Uint8Array, slice: number): Buffer[] {
  if (stored.length < TAG_BYTES) throw new PieceAuthError("piece shorter than its tag");
  const body = stored.length - TAG_BYTES;
  const d = createDecipheriv("aes-256-gcm", key, nonce);
  d.setAuthTag(stored.subarray(body));
  const plain: Buffer[] = [];
  for (let off = 0; off < body; off += slice) {
    const out = d.update(stored.subarray(off, Math.min(body, off + slice)));
    if (out.length) plain.push(out);
  }
  try {
    const fin = d.final();
    if (fin.length) plain.push(fin);
  } catch (err) {
    throw new PieceAuthError("piece failed authentication (altered, or wrong key)", { cause: err });
  }
  return plain;
}

/** Decrypts and authenticates a stored piece; throws PieceAuthError when it was altered. */
export function decryptPiece(stored: Uint8Array, key: Uint8Array, nonce: Uint8Array): Buffer {
  return Buffer.concat(decryptPieceSlices(stored, key, nonce, Math.max(1, stored.length)));
}
