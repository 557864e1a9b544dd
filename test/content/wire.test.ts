import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { GetPieceResponse } from "../../gen/switchyard/content/v1/distribution_node_service.js";
import { allocPieceChunk, deserializePieceResponse, finishPieceChunk, framed, PIECE_HEADROOM, serializePieceResponse } from "../../clients/content/piece-wire.js";

describe("piece wire codec", () => {
  describe("serializePieceResponse", () => {
    it("encodes what the generated codec decodes, for chunk sizes around varint boundaries", () => {
      for (const n of [0, 1, 127, 128, 16_383, 16_384, 1 << 20, (1 << 21) + 3]) {
        const data = randomBytes(n);
        for (const totalSize of [0, n, 4_000_000_000]) {
          const buf = allocPieceChunk(n);
          data.copy(buf, PIECE_HEADROOM);
          const pre = finishPieceChunk(buf, n, totalSize);
          for (const enc of [serializePieceResponse(pre), serializePieceResponse({ data, totalSize })]) {
            const dec = GetPieceResponse.decode(enc);
            assert.ok(Buffer.from(dec.data).equals(data));
            assert.equal(dec.totalSize, totalSize);
          }
        }
      }
    });
  });
  describe("framed", () => {
    it("is the gRPC length-prefixed message of the encoding, in the same buffer", () => {
      for (const n of [0, 127, 128, 1 << 20]) {
        const data = randomBytes(n);
        const buf = allocPieceChunk(n);
        data.copy(buf, PIECE_HEADROOM);
        const res = finishPieceChunk(buf, n, n + 7);
        const frame = framed(res);
        assert.equal(frame.buffer, buf.buffer);
        assert.equal(frame[0], 0);
        assert.equal(frame.readUInt32BE(1), frame.length - 5);
        const dec = GetPieceResponse.decode(frame.subarray(5));
        assert.ok(Buffer.from(dec.data).equals(data));
        assert.equal(dec.totalSize, n + 7);
      }
    });
  });
  describe("deserializePieceResponse", () => {
    it("decodes what the generated codec encodes, as a view without copying", () => {
      const data = randomBytes(70_000);
      const enc = Buffer.from(GetPieceResponse.encode({ data, totalSize: 123_456 }).finish());
      const dec = deserializePieceResponse(enc);
      assert.ok(dec.data.equals(data));
      assert.equal(dec.totalSize, 123_456);
      assert.equal(dec.data.buffer, enc.buffer);
    });
    it("refuses a truncated message", () => {
      const enc = Buffer.from(GetPieceResponse.encode({ data: randomBytes(100), totalSize: 0 }).finish());
      assert.throws(() => deserializePieceResponse(enc.subarray(0, 50)), RangeError);
    });
  });
});
