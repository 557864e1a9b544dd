/**
 * Byte-level view of the SubscribeResponse messages that carry frames, so nodes can
 * forward and batch frames without decoding or re-encoding their payloads:
 *  - a single frame: SubscribeResponse{frame = 2} = 0x12 <len> <Frame bytes>
 *  - a batch:        SubscribeResponse{batch = 4} = 0x22 <len> (0x0a <len> <Frame bytes>)*
 * A Frame's own bytes are the same in both, so a batch is built by copying frame bytes
 * next to each other (once, shared by every subscriber it goes to) and split by slicing.
 */
import { GRPC_PREFIX_BYTES, grpcFramed, varintLength, writeGrpcPrefix, writeVarint } from "../grpc/framing.js";

/** Tag byte of SubscribeResponse.frame (field 2, length-delimited). */
export const FRAME_TAG = 0x12;
/** Tag byte of SubscribeResponse.batch (field 4, length-delimited). */
export const BATCH_TAG = 0x22;
/** Tag byte of FrameBatch.frames (field 1, length-delimited). */
const FRAMES_TAG = 0x0a;

/** One frame as bytes: its encoded Frame message plus what fan-out needs to know. */
export interface WireFrame {
  /** The encoded Frame message (a view, not a copy). */
  body: Buffer;
  sequence: number;
  /** Length of the frame's payload (what usage records count). */
  payloadBytes: number;
  /** SubscribeResponse{frame} bytes, when already at hand (built on demand otherwise). */
  single?: Buffer;
}

let pos = 0;

function varint(buf: Uint8Array): number {
  let result = 0;
  let mul = 1;
  for (;;) {
    if (pos >= buf.length) throw new Error("truncated varint");
    const b = buf[pos++] as number;
    result += (b & 0x7f) * mul;
    if (b < 0x80) return result;
    mul *= 128;
    if (mul > 2 ** 63) throw new Error("varint too long");
  }
}

function skip(buf: Uint8Array, wireType: number): void {
  if (wireType === 0) varint(buf);
  else if (wireType === 2) {
    const n = varint(buf); // not `pos += varint(buf)`: that reads pos before the call moves it
    pos += n;
  }
  else if (wireType === 1) pos += 8;
  else if (wireType === 5) pos += 4;
  else throw new Error(`unsupported wire type ${wireType}`);
}

/** Reads sequence and payload length out of an encoded Frame message. */
export function readFrame(body: Buffer, single?: Buffer): WireFrame {
  pos = 0;
  let sequence = 0;
  let payloadBytes = 0;
  while (pos < body.length) {
    const tag = varint(body);
    if (tag === 0x08) sequence = varint(body);
    else if (tag === 0x12) {
      payloadBytes = varint(body);
      pos += payloadBytes;
    } else skip(body, tag & 7);
  }
  if (pos !== body.length) throw new Error("truncated Frame");
  return single ? { body, sequence, payloadBytes, single } : { body, sequence, payloadBytes };
}



/** The SubscribeResponse{frame} bytes of one frame (kept on the frame once built). */
export function singleMessage(f: WireFrame): Buffer {
  if (f.single) return f.single;
  const out = Buffer.allocUnsafe(1 + varintLength(f.body.length) + f.body.length);
  const at = writeVarint(out, 1, f.body.length);
  out[0] = FRAME_TAG;
  f.body.copy(out, at);
  f.single = out;
  return out;
}

/**
 * The SubscribeResponse{batch} bytes of `frames[from..to)` (one frame: its single
 * message). With `grpcPrefix` the buffer starts with gRPC's 5-byte message prefix, ready
 * to be written to an HTTP/2 stream as is.
 */
export function batchMessage(frames: readonly WireFrame[], from = 0, to = frames.length, grpcPrefix = false): Buffer {
  if (to - from === 1) {
    const single = singleMessage(frames[from] as WireFrame);
    return grpcPrefix ? grpcFramed(single) : single;
  }
  let inner = 0;
  for (let i = from; i < to; i++) {
    const n = (frames[i] as WireFrame).body.length;
    inner += 1 + varintLength(n) + n;
  }
  const head = grpcPrefix ? GRPC_PREFIX_BYTES : 0;
  const length = 1 + varintLength(inner) + inner;
  const out = Buffer.allocUnsafe(head + length);
  if (grpcPrefix) writeGrpcPrefix(out, length);
  out[head] = BATCH_TAG;
  let at = writeVarint(out, head + 1, inner);
  for (let i = from; i < to; i++) {
    const body = (frames[i] as WireFrame).body;
    out[at++] = FRAMES_TAG;
    at = writeVarint(out, at, body.length);
    at += body.copy(out, at);
  }
  return out;
}

/**
 * The frames of a SubscribeResponse that carries frames (single or batch), as views into
 * `buf`; undefined for any other event (started, gap).
 */
export function framesOf(buf: Buffer): WireFrame[] | undefined {
  const tag = buf[0];
  if (tag !== FRAME_TAG && tag !== BATCH_TAG) return undefined;
  pos = 1;
  const len = varint(buf);
  const start = pos;
  if (start + len !== buf.length) throw new Error("malformed SubscribeResponse");
  if (tag === FRAME_TAG) return [readFrame(buf.subarray(start), buf)];
  const out: WireFrame[] = [];
  let at = start;
  while (at < buf.length) {
    pos = at;
    const t = varint(buf);
    if (t !== FRAMES_TAG) {
      skip(buf, t & 7);
      at = pos;
      continue;
    }
    const n = varint(buf);
    const bodyStart = pos;
    if (bodyStart + n > buf.length) throw new Error("truncated FrameBatch");
    out.push(readFrame(buf.subarray(bodyStart, bodyStart + n)));
    at = bodyStart + n;
  }
  return out;
}
