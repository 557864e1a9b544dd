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

/**
 * Walks the fields of an encoded protobuf message, for the hand-written decoders of hot
 * paths: `onBytes(field, start, end)` for each length-delimited field (its bytes are
 * `buf[start..end)`), `onVarint(field, value)` for each varint field; 32- and 64-bit
 * fields are skipped. Throws RangeError (naming `message`) on a truncated or malformed
 * encoding.
 */
export function readFields(
  buf: Uint8Array,
  message: string,
  onBytes: (field: number, start: number, end: number) => void,
  onVarint?: (field: number, value: number) => void,
): void {
  let i = 0;
  const varint = (): number => {
    let n = 0;
    let mul = 1;
    for (;;) {
      if (i >= buf.length) throw new RangeError(`truncated varint in ${message}`);
      const b = buf[i++] as number;
      n += (b & 0x7f) * mul;
      if (b < 0x80) return n;
      mul *= 128;
      if (mul > 2 ** 63) throw new RangeError(`varint too long in ${message}`);
    }
  };
  while (i < buf.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 2) {
      const len = varint();
      if (i + len > buf.length) throw new RangeError(`truncated field in ${message}`);
      onBytes(field, i, i + len);
      i += len;
    } else if (wire === 0) {
      const v = varint();
      onVarint?.(field, v);
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new RangeError(`unsupported wire type ${wire} in ${message}`);
  }
  if (i > buf.length) throw new RangeError(`truncated ${message}`);
}
