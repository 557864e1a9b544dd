/**
 * HTTP/2 wire pieces (RFC 9113) for the few places that speak gRPC over a plain socket
 * instead of node:http2 — where a per-frame JavaScript event or a fresh buffer per socket
 * read costs more than the work itself: the content downloader's direct GetPiece reader
 * (clients/content/direct-piece.ts) and the relay benchmark's subscriber hosts
 * (tools/bench/raw-h2.ts). Only what a client needs to open gRPC calls: the connection
 * preface with its SETTINGS, frames, and request header blocks in HPACK (RFC 7541)
 * without the dynamic table (static-table indexes and literals without indexing), so no
 * HPACK state is kept on either side.
 */

/** Frame types. */
export const H2 = {
  DATA: 0x0,
  HEADERS: 0x1,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

/** Frame flags. */
export const H2_FLAG = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
} as const;

/** RST_STREAM error code CANCEL. */
export const H2_CANCEL = 0x8;

/** Bytes of a frame header. */
export const H2_FRAME_HEADER_BYTES = 9;

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/** One frame: 9-byte header and payload. */
export function h2Frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.allocUnsafe(H2_FRAME_HEADER_BYTES + payload.length);
  b.writeUIntBE(payload.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(stream & 0x7fffffff, 5);
  payload.copy(b, H2_FRAME_HEADER_BYTES);
  return b;
}

/** WINDOW_UPDATE of `increment` bytes for `stream` (0: the connection). */
export function h2WindowUpdate(stream: number, increment: number): Buffer {
  const p = Buffer.allocUnsafe(4);
  p.writeUInt32BE(increment, 0);
  return h2Frame(H2.WINDOW_UPDATE, 0, stream, p);
}

/** RST_STREAM CANCEL for `stream`. */
export function h2Cancel(stream: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(H2_CANCEL, 0);
  return h2Frame(H2.RST_STREAM, 0, stream, p);
}

/**
 * What a client sends first: the preface, SETTINGS (push off, `streamWindow` as every
 * stream's initial window) and a WINDOW_UPDATE raising the connection window by
 * `connectionWindowIncrement` above HTTP/2's 65,535 bytes.
 */
export function h2ClientStart(streamWindow: number, connectionWindowIncrement: number): Buffer {
  const settings = Buffer.allocUnsafe(12);
  settings.writeUInt16BE(0x2, 0); // SETTINGS_ENABLE_PUSH
  settings.writeUInt32BE(0, 2);
  settings.writeUInt16BE(0x4, 6); // SETTINGS_INITIAL_WINDOW_SIZE
  settings.writeUInt32BE(streamWindow, 8);
  return Buffer.concat([PREFACE, h2Frame(H2.SETTINGS, 0, 0, settings), h2WindowUpdate(0, connectionWindowIncrement)]);
}

/** HPACK integer with an N-bit prefix; `first` holds the pattern bits (RFC 7541 §5.1). */
function hpackInt(first: number, prefixBits: number, value: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

/** HPACK string literal without Huffman coding (RFC 7541 §5.2). */
function hpackString(s: string): Buffer {
  const bytes = Buffer.from(s, "latin1");
  return Buffer.concat([Buffer.from(hpackInt(0, 7, bytes.length)), bytes]);
}

/** Literal header field without indexing, name from static-table entry `index` (RFC 7541 §6.2.2). */
function hpackIndexedName(index: number, value: string): Buffer {
  return Buffer.concat([Buffer.from(hpackInt(0x00, 4, index)), hpackString(value)]);
}

/**
 * HEADERS (END_HEADERS) of a gRPC call to `path` at `authority`: :method POST and :scheme
 * http from the static table, :path, :authority and content-type as literals with static
 * names, te: trailers as a literal with a new name.
 */
export function h2GrpcRequestHeaders(stream: number, authority: string, path: string): Buffer {
  const block = Buffer.concat([
    Buffer.from([0x83, 0x86]), // :method POST (static 3), :scheme http (static 6)
    hpackIndexedName(4, path), // :path
    hpackIndexedName(1, authority), // :authority
    hpackIndexedName(31, "application/grpc"), // content-type
    Buffer.from([0x00]),
    hpackString("te"),
    hpackString("trailers"),
  ]);
  return h2Frame(H2.HEADERS, H2_FLAG.END_HEADERS, stream, block);
}
