/**
 * Hand-written codec of `UploadRequest` (oneof part: header = 1, an UploadHeader; data = 2,
 * bytes) for the upload's hot path. The generated codec copies a data chunk twice to
 * encode it (the writer's finish, then Buffer.from) and once to decode it (Buffer.from of
 * the reader's view). Each copy is fresh memory as large as the upload, and that external
 * memory is what made the uploading client run V8 mark-compacts back to back (most of its
 * CPU). This one encodes a data chunk with one copy and decodes it to a view of the
 * received message; headers go through the generated codec. Wire-compatible with it: the
 * encoding is the same bytes (tested), and on decode unknown fields are skipped and the
 * last field of the oneof wins, as in protobuf.
 */
import { UploadHeader, type UploadRequest } from "../../gen/switchyard/content/v1/content_manager_service.js";
import { varintLength, writeVarint } from "../grpc/framing.js";

/** Serializer of UploadRequest: a data chunk in one allocation, anything else by the generated codec. */
export function serializeUploadRequest(v: UploadRequest): Buffer {
  const part = v.part;
  if (part?.$case === "data") {
    const data = part.value;
    const out = Buffer.allocUnsafe(1 + varintLength(data.length) + data.length);
    out[0] = 0x12; // field 2, length-delimited
    const at = writeVarint(out, 1, data.length);
    out.set(data, at);
    return out;
  }
  if (part?.$case === "header") {
    const header = UploadHeader.encode(part.value).finish();
    const out = Buffer.allocUnsafe(1 + varintLength(header.length) + header.length);
    out[0] = 0x0a; // field 1, length-delimited
    out.set(header, writeVarint(out, 1, header.length));
    return out;
  }
  return Buffer.alloc(0);
}

/** Deserializer of UploadRequest: a data chunk is a view into the received message. */
export function deserializeUploadRequest(buf: Buffer): UploadRequest {
  let part: UploadRequest["part"];
  let i = 0;
  const varint = (): number => {
    let n = 0;
    let mul = 1;
    for (;;) {
      if (i >= buf.length) throw new RangeError("truncated varint in UploadRequest");
      const b = buf[i++] as number;
      n += (b & 0x7f) * mul;
      if (b < 0x80) return n;
      mul *= 128;
      if (mul > 2 ** 63) throw new RangeError("varint too long in UploadRequest");
    }
  };
  while (i < buf.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 2) {
      const len = varint();
      if (i + len > buf.length) throw new RangeError("truncated field in UploadRequest");
      const value = buf.subarray(i, i + len);
      if (field === 1) part = { $case: "header", value: UploadHeader.decode(value) };
      else if (field === 2) part = { $case: "data", value };
      i += len;
    } else if (wire === 0) varint();
    else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new RangeError(`unsupported wire type ${wire} in UploadRequest`);
  }
  if (i > buf.length) throw new RangeError("truncated UploadRequest");
  return { part };
}
