/**
 * Hand-written codec of `GetPieceResponse` (data = 1: bytes, total_size = 2: uint32) for
 * the hot path of piece streams. The generated codec copies the payload three times on
 * encode (writer, finish, Buffer.from) and once on decode (Buffer.from); this one encodes
 * into a buffer whose payload was read from disk in place (one header written in front of
 * it, no copy) and decodes to a view of the received message (no copy). Wire-compatible
 * with the generated codec: any other field is skipped on decode.
 */
import { GRPC_PREFIX_BYTES, readFields, varintLength, writeGrpcPrefix, writeVarint } from "../grpc/framing.js";
import type { GetPieceResponse } from "../../gen/switchyard/content/v1/distribution_node_service.js";

/**
 * Bytes reserved in front of a chunk: its protobuf header (tag + varint length, at most
 * 6 bytes) and, in front of that, the 5-byte gRPC message prefix (see `framed`).
 */
export const PIECE_HEADROOM = 16;

/** A response whose encoding is already in `encoded` (see allocPieceChunk). */
export interface EncodedPieceResponse extends GetPieceResponse {
  encoded?: Buffer;
}

/**
 * The gRPC length-prefixed message (flag 0 = uncompressed, 4-byte big-endian length,
 * then the protobuf bytes) of a response from `finishPieceChunk`, written into the
 * headroom in front of its encoding: the whole frame is one view of the chunk buffer,
 * so it can go to the HTTP/2 stream without being copied.
 */
export function framed(res: EncodedPieceResponse & { encoded: Buffer }): Buffer {
  const enc = res.encoded;
  if (enc.byteOffset < GRPC_PREFIX_BYTES) throw new RangeError("no room for the gRPC prefix in front of this message");
  const frame = Buffer.from(enc.buffer, enc.byteOffset - GRPC_PREFIX_BYTES, enc.length + GRPC_PREFIX_BYTES);
  writeGrpcPrefix(frame, enc.length);
  return frame;
}



/**
 * A buffer to read up to `size` payload bytes into, at offset PIECE_HEADROOM; then
 * `finishPieceChunk(buf, n, totalSize)` turns it into a response without copying.
 */
export function allocPieceChunk(size: number): Buffer {
  return Buffer.allocUnsafe(PIECE_HEADROOM + size + 6);
}

/** The response for `n` payload bytes read into `buf` at PIECE_HEADROOM. */
export function finishPieceChunk(buf: Buffer, n: number, totalSize: number): EncodedPieceResponse & { encoded: Buffer } {
  const head = 1 + varintLength(n);
  const start = PIECE_HEADROOM - head;
  buf[start] = 0x0a; // field 1, length-delimited
  writeVarint(buf, start + 1, n);
  let end = PIECE_HEADROOM + n;
  if (totalSize > 0) {
    buf[end++] = 0x10; // field 2, varint
    end = writeVarint(buf, end, totalSize);
  }
  const data = buf.subarray(PIECE_HEADROOM, PIECE_HEADROOM + n);
  return { data, totalSize, encoded: buf.subarray(start, end) };
}

/** Serializer of GetPieceResponse: the pre-built encoding when present, else encoded here (one copy). */
export function serializePieceResponse(v: EncodedPieceResponse): Buffer {
  if (v.encoded) return v.encoded;
  const buf = allocPieceChunk(v.data.length);
  buf.set(v.data, PIECE_HEADROOM);
  return finishPieceChunk(buf, v.data.length, v.totalSize).encoded;
}

/** Deserializer of GetPieceResponse: `data` is a view into the received message. */
export function deserializePieceResponse(buf: Buffer): GetPieceResponse {
  let data: Buffer = Buffer.alloc(0);
  let totalSize = 0;
  readFields(
    buf,
    "GetPieceResponse",
    (field, start, end) => {
      if (field === 1) data = buf.subarray(start, end);
    },
    (field, v) => {
      if (field === 2) totalSize = v >>> 0;
    },
  );
  return { data, totalSize };
}
