/**
 * gRPC's length-prefixed message framing (PROTOCOL-HTTP2: 1-byte compressed flag, 4-byte
 * big-endian length, then the message), for hot paths that build a message once and write
 * it to HTTP/2 streams themselves (servers/runtime/direct-write.ts) or read raw HTTP/2,
 * and the protobuf varint writers their hand-written encoders share (relay frames, pieces).
 */

/** Bytes of gRPC's message prefix. */
export const GRPC_PREFIX_BYTES = 5;

/** Writes the prefix of an uncompressed message of `length` bytes at `out[at..at+5)`. */
export function writeGrpcPrefix(out: Buffer, length: number, at = 0): void {
  out[at] = 0;
  out.writeUInt32BE(length, at + 1);
}

/** `message` with gRPC's prefix in front, in a new buffer (one copy). */
export function grpcFramed(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(GRPC_PREFIX_BYTES + message.length);
  writeGrpcPrefix(out, message.length);
  out.set(message, GRPC_PREFIX_BYTES);
  return out;
}

/** Bytes of `n` (a non-negative integer below 2^53) as a protobuf varint. */
export function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

/** Writes `n` as a protobuf varint at `out[at..]`; returns the offset after it. */
export function writeVarint(out: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  out[at++] = n;
  return at;
}
