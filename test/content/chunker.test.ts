import assert from "node:assert/strict";
import { createCipheriv, createHash } from "node:crypto";
import { Chunker, MAX_PIECE_BYTES } from "../../clients/content/chunker.js";

/** 3 MiB + 12345 bytes that are the same on every machine (AES-CTR of zeros). */
const fixedBytes = (): Buffer => createCipheriv("aes-256-ctr", Buffer.alloc(32, 1), Buffer.alloc(16)).update(Buffer.alloc(3 * 1024 * 1024 + 12345));

/** Piece sizes of `data` pushed in slices of `step` bytes. */
function sizes(data: Buffer, pieceSize: number, step: number, mode: "fixed" | "content-defined" = "content-defined"): number[] {
  const c = new Chunker({ mode, pieceSize });
  const out: number[] = [];
  for (let off = 0; off < data.length; off += step) for (const p of c.push(data.subarray(off, off + step))) out.push(p.length);
  const last = c.end();
  if (last) out.push(last.length);
  return out;
}

describe("Chunker", () => {
  it("cuts content-defined pieces where every earlier version cut them, however the bytes are pushed", () => {
    // Boundaries decide which stored pieces an upload re-uses: they must not move between
    // versions. These were computed with the first implementation (uint32 gear hash).
    const data = fixedBytes();
    const pinned: [number, number, string, number[]][] = [
      [4096, 672, "bafb74a6b58564b0", [5294, 1966, 4650, 7244, 2545, 4636]],
      [65536, 44, "ed9d8931130fb600", [93289, 71445, 71718, 75961, 69329, 68224]],
      [1 << 20, 3, "e70844b1a50f030e", [1727750, 1190647, 239676]],
    ];
    for (const [pieceSize, count, digest, first] of pinned) {
      for (const step of [100_000, 4096, 1 << 20]) {
        const got = sizes(data, pieceSize, step);
        assert.equal(got.length, count, `${pieceSize}/${step}`);
        assert.deepEqual(got.slice(0, first.length), first, `${pieceSize}/${step}`);
        assert.equal(createHash("sha256").update(got.join(",")).digest("hex").slice(0, 16), digest, `${pieceSize}/${step}`);
        assert.equal(got.reduce((a, b) => a + b, 0), data.length);
      }
    }
  });

  it("keeps content-defined pieces between a quarter and 4 × the average, and never above MAX_PIECE_BYTES", () => {
    const data = fixedBytes();
    const got = sizes(data, 65536, 70_000);
    assert.ok(got.slice(0, -1).every((n) => n >= 16384 && n <= 262144), JSON.stringify(got));
    const zeros = Buffer.alloc(2 * MAX_PIECE_BYTES + 5);
    assert.deepEqual(sizes(zeros, 8 << 20, 1 << 20), [MAX_PIECE_BYTES, MAX_PIECE_BYTES, 5]);
  });

  it("cuts fixed pieces at the piece size", () => {
    assert.deepEqual(sizes(Buffer.alloc(10_000, 7), 4096, 3000, "fixed"), [4096, 4096, 1808]);
  });
});
