import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { GetPieceResponse } from "../../gen/switchyard/content/v1/distribution_node_service.js";
import { ContentManagerServiceService } from "../../gen/switchyard/content/v1/content_manager_service.js";
import { deserializeUploadRequest, serializeUploadRequest } from "../../clients/content/upload-wire.js";
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

describe("upload wire codec", () => {
  const header = { name: "a.bin", expectedSize: 5n << 40n, chunking: 2, pieceSize: 1 << 20, replicationFactor: 3, minSecurityRank: 1, requestId: "r-1" };

  it("encodes the bytes the generated codec encodes, for headers and data chunks around varint boundaries", () => {
    const gen = ContentManagerServiceService.upload.requestSerialize;
    assert.ok(serializeUploadRequest({ part: { $case: "header", value: header } }).equals(gen({ part: { $case: "header", value: header } })));
    for (const n of [0, 1, 127, 128, 16_383, 16_384, 1 << 20]) {
      const req = { part: { $case: "data" as const, value: randomBytes(n) } };
      assert.ok(serializeUploadRequest(req).equals(gen(req)), `${n} bytes`);
    }
    assert.equal(serializeUploadRequest({}).length, 0);
  });

  it("decodes what the generated codec decodes, a data chunk as a view of the message", () => {
    const gen = ContentManagerServiceService.upload;
    const data = randomBytes(70_000);
    const enc = gen.requestSerialize({ part: { $case: "data", value: data } });
    const dec = deserializeUploadRequest(enc);
    assert.equal(dec.part?.$case, "data");
    assert.ok(dec.part?.$case === "data" && dec.part.value.equals(data) && dec.part.value.buffer === enc.buffer, "a view, not a copy");
    assert.deepEqual(deserializeUploadRequest(gen.requestSerialize({ part: { $case: "header", value: header } })), gen.requestDeserialize(gen.requestSerialize({ part: { $case: "header", value: header } })));
    // Unknown fields are skipped; the last member of the oneof wins.
    const both = Buffer.concat([gen.requestSerialize({ part: { $case: "header", value: header } }), Buffer.from([0x18, 0x96, 0x01, 0x25, 1, 2, 3, 4]), enc]);
    assert.deepEqual(deserializeUploadRequest(both), gen.requestDeserialize(both));
    assert.deepEqual(deserializeUploadRequest(Buffer.alloc(0)), gen.requestDeserialize(Buffer.alloc(0)));
    assert.throws(() => deserializeUploadRequest(enc.subarray(0, enc.length - 1)), RangeError);
  });
});
