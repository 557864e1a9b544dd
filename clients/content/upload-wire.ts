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
import { UploadHeader, UploadRequest } from "../../gen/switchyard/content/v1/content_manager_service.js";
import { readFields, varintLength, writeVarint } from "../grpc/framing.js";

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
  return Buffer.from(UploadRequest.encode(v).finish());
}

/** Deserializer of UploadRequest: a data chunk is a view into the received message. */
export function deserializeUploadRequest(buf: Buffer): UploadRequest {
  let part: UploadRequest["part"];
  readFields(buf, "UploadRequest", (field, start, end) => {
    if (field === 1) part = { $case: "header", value: UploadHeader.decode(buf.subarray(start, end)) };
    else if (field === 2) part = { $case: "data", value: buf.subarray(start, end) };
  });
  return { part };
}
