/**
 * PutPage's request codec without the page's extra copies.
 *
 * Every converted page (~0.4–0.5 MB of JPEG at 150 DPI, several MB at 300) travels worker →
 * store in a PutPageRequest. The generated (ts-proto) codec copies its bytes three times on
 * the worker — the BinaryWriter's `finish()`, then `Buffer.from()` of that — before grpc-js
 * copies the message once more behind its 5-byte prefix; and once more on the store, where
 * `decode` takes `Buffer.from(reader.bytes())` of the message grpc-js already assembled.
 * Each copy is a fresh ArrayBuffer, and fresh external memory is what made V8 run its full
 * mark-compacts on these small heaps ("external memory pressure", about every 25 pages on a
 * worker). The codec here writes the message with one copy of the page (into a buffer of
 * the exact size) and reads it with none (the page is a view into grpc-js's message buffer,
 * which nothing else holds or reuses). The bytes on the wire are the same as the generated
 * encoder's (fields in number order, defaults omitted), so any gRPC peer reads them.
 */
import { makeGenericClientConstructor } from "@grpc/grpc-js";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { PrintStoreServiceService, type PrintStoreServiceClient, type PutPageRequest } from "../../gen/switchyard/print/v1/print_store_service.js";
import { varintLength, writeVarint } from "../../clients/grpc/framing.js";

const tagLength = 1; // every field number here is below 16

/** Encodes a PutPageRequest with one copy of its JPEG. */
export function encodePutPage(m: PutPageRequest): Buffer {
  const id = Buffer.from(m.resultId, "utf8");
  const spool = Buffer.from(m.spoolFile, "utf8");
  const u = (n: number): number => (n !== 0 ? tagLength + varintLength(n) : 0);
  const len =
    (id.length ? tagLength + varintLength(id.length) + id.length : 0) +
    u(m.pageNumber) +
    (m.jpeg.length ? tagLength + varintLength(m.jpeg.length) + m.jpeg.length : 0) +
    u(m.widthPx) +
    u(m.heightPx) +
    u(m.dpi) +
    (spool.length ? tagLength + varintLength(spool.length) + spool.length : 0);
  const out = Buffer.allocUnsafe(len);
  let at = 0;
  if (id.length) {
    out[at++] = 10;
    at = writeVarint(out, at, id.length);
    at += id.copy(out, at);
  }
  const uint = (tag: number, n: number): void => {
    if (n === 0) return;
    out[at++] = tag;
    at = writeVarint(out, at, n);
  };
  uint(16, m.pageNumber);
  if (m.jpeg.length) {
    out[at++] = 26;
    at = writeVarint(out, at, m.jpeg.length);
    out.set(m.jpeg, at);
    at += m.jpeg.length;
  }
  uint(32, m.widthPx);
  uint(40, m.heightPx);
  uint(48, m.dpi);
  if (spool.length) {
    out[at++] = 58;
    at = writeVarint(out, at, spool.length);
    at += spool.copy(out, at);
  }
  return out;
}

/** Decodes a PutPageRequest; its `jpeg` is a view into `buf`, not a copy. */
export function decodePutPage(buf: Buffer): PutPageRequest {
  const r = new BinaryReader(buf);
  const m: PutPageRequest = { resultId: "", pageNumber: 0, jpeg: Buffer.alloc(0), widthPx: 0, heightPx: 0, dpi: 0, spoolFile: "" };
  while (r.pos < r.len) {
    const [field, wireType] = r.tag();
    if (field === 1 && wireType === 2) m.resultId = r.string();
    else if (field === 2 && wireType === 0) m.pageNumber = r.uint32();
    else if (field === 3 && wireType === 2) {
      const b = r.bytes();
      m.jpeg = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
    } else if (field === 4 && wireType === 0) m.widthPx = r.uint32();
    else if (field === 5 && wireType === 0) m.heightPx = r.uint32();
    else if (field === 6 && wireType === 0) m.dpi = r.uint32();
    else if (field === 7 && wireType === 2) m.spoolFile = r.string();
    else r.skip(wireType);
  }
  return m;
}

/** PrintStoreService with PutPage's request codec above (same wire format). */
export const PrintStoreServiceWithPageCodec = {
  ...PrintStoreServiceService,
  putPage: {
    ...PrintStoreServiceService.putPage,
    requestSerialize: encodePutPage,
    requestDeserialize: decodePutPage,
  },
} as const satisfies typeof PrintStoreServiceService;

/** The generated PrintStoreService client, with PutPage's request codec above. */
export const PrintStoreClientWithPageCodec = makeGenericClientConstructor(
  PrintStoreServiceWithPageCodec,
  "switchyard.print.v1.PrintStoreService",
) as unknown as typeof PrintStoreServiceClient;
