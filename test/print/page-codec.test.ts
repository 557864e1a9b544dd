import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { PutPageRequest } from "../../gen/switchyard/print/v1/print_store_service.js";
import { decodePutPage, encodePutPage } from "../../servers/print/page-codec.js";

const page = (over: Partial<PutPageRequest> = {}): PutPageRequest => ({
  resultId: "r-1_x",
  pageNumber: 7,
  jpeg: randomBytes(300_000),
  widthPx: 1275,
  heightPx: 1650,
  dpi: 150,
  spoolFile: "",
  ...over,
});

describe("page codec", () => {
  describe("encodePutPage", () => {
    it("writes the same bytes as the generated encoder, defaults omitted", () => {
      for (const m of [page(), page({ pageNumber: 0, widthPx: 0, dpi: 0 }), page({ jpeg: Buffer.alloc(0), resultId: "" }), page({ pageNumber: 2 ** 32 - 1, resultId: "é".repeat(70) }), page({ jpeg: Buffer.alloc(0), spoolFile: "r-1_x-7-abc.jpg" })]) {
        assert.deepEqual(encodePutPage(m), Buffer.from(PutPageRequest.encode(m).finish()));
      }
    });
  });
  describe("decodePutPage", () => {
    it("reads what the generated encoder wrote, the JPEG as a view into the message", () => {
      assert.deepEqual(decodePutPage(Buffer.from(PutPageRequest.encode(page({ jpeg: Buffer.alloc(0), spoolFile: "a.jpg" })).finish())), page({ jpeg: Buffer.alloc(0), spoolFile: "a.jpg" }));
      const m = page();
      const wire = Buffer.from(PutPageRequest.encode(m).finish());
      const d = decodePutPage(wire);
      assert.deepEqual(d, m);
      assert.equal(d.jpeg.buffer, wire.buffer);
    });
    it("skips fields it does not know", () => {
      const m = page();
      const unknown = Buffer.from([0x4a, 3, 1, 2, 3, 0x50, 5]); // field 9 bytes, field 10 varint
      assert.deepEqual(decodePutPage(Buffer.concat([encodePutPage(m), unknown])), m);
    });
  });
});
