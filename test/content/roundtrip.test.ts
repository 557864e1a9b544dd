import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { ChunkingMode } from "../../gen/switchyard/content/v1/content.js";
import { DistributionNodeClient, MAX_PIECE_BYTES } from "../../clients/content/index.js";
import { onCleanup } from "../helpers/nodes.js";
import { startContentCluster, testBytes, collect, chunks } from "./cluster.js";

describe("ContentManagerService", () => {
  describe("Upload and download", () => {
    const PIECE = 64 * 1024;
    for (const [label, size] of [
      ["empty", 0],
      ["1 byte", 1],
      ["piece size - 1", PIECE - 1],
      ["piece size", PIECE],
      ["piece size + 1", PIECE + 1],
      ["several pieces", 5 * PIECE + 123],
    ] as const) {
      it(`round-trips ${label} (${size} B) byte-exactly with fixed pieces`, async () => {
        const c = await startContentCluster(4);
        const data = testBytes(size);
        const content = await c.client.upload(`f-${size}`, chunks(data, 7777), { chunking: ChunkingMode.FIXED, pieceSize: PIECE });
        assert.equal(Number(content.size), size);
        assert.equal(content.pieceCount, Math.ceil(size / PIECE));
        assert.deepEqual(Buffer.from(content.sha256), createHash("sha256").update(data).digest());
        const got = await collect(await c.client.download(content.contentId));
        assert.ok(got.equals(data), `download differs (got ${got.length} bytes)`);
      });
    }

    it("serves pieces above 4 MiB in messages a client with gRPC's default 4 MiB receive limit takes", async () => {
      const c = await startContentCluster(2);
      const data = testBytes(8 * 1024 * 1024 + 5);
      const content = await c.client.upload("big", chunks(data, 1024 * 1024), { chunking: ChunkingMode.FIXED, pieceSize: 8 * 1024 * 1024 });
      const m = await c.client.manager.getManifest(content.contentId);
      const p = m.pieces[0];
      assert.ok(p && p.storedSize > 8 * 1024 * 1024);
      const node = new DistributionNodeClient(p.replicas[0]?.address as string, { maxReceiveMessageBytes: 4 * 1024 * 1024 });
      onCleanup(() => node.close());
      const sizes: number[] = [];
      for await (const chunk of node.stream({ grant: m.grant?.token ?? Buffer.alloc(0), pieceId: p.pieceId, accessTag: p.accessTag, maxBytes: p.storedSize })) sizes.push(chunk.length);
      assert.equal(sizes.reduce((a, b) => a + b, 0), p.storedSize);
      assert.ok(Math.max(...sizes) < 4 * 1024 * 1024, `largest chunk ${Math.max(...sizes)} bytes`);
      assert.ok((await collect(await c.client.download(content.contentId, { reader: "grpc" }))).equals(data));
    });

    it("cuts content-defined pieces at MAX_PIECE_BYTES, so a long run of zeros with 4 MiB pieces uploads", async () => {
      const c = await startContentCluster(2);
      // Zeros have no cut point: every piece is as long as pieces may be. At 4 × the
      // 4 MiB average (16 MiB) its stored copy was over the 16 MiB message limit.
      const data = Buffer.alloc(2 * MAX_PIECE_BYTES + 12345);
      const content = await c.client.upload("zeros", chunks(data, 1024 * 1024), { chunking: ChunkingMode.CONTENT_DEFINED, pieceSize: 4 * 1024 * 1024 });
      const m = await c.client.manager.getManifest(content.contentId);
      assert.deepEqual(m.pieces.map((p) => p.size), [MAX_PIECE_BYTES, MAX_PIECE_BYTES, 12345]);
      // Convergent encryption: the two equal pieces are one stored piece.
      assert.equal(m.pieces[0]?.pieceId, m.pieces[1]?.pieceId);
      assert.ok((await collect(await c.client.download(content.contentId))).equals(data));
    });

    it("fetches at most windowBytes of stored bytes ahead of a reader that does not read", async () => {
      const c = await startContentCluster(2);
      const PIECE = 256 * 1024;
      const data = testBytes(20 * PIECE);
      const content = await c.client.upload("ahead", chunks(data), { chunking: ChunkingMode.FIXED, pieceSize: PIECE });
      const served = (): number => c.nodes.reduce((n, node) => n + Number(node.role.load?.().figures?.["bytes_served"] ?? 0), 0);
      const stream = await c.client.download(content.contentId, { concurrency: 8, window: 16, windowBytes: 3 * PIECE + 100, threads: 0 });
      // Nothing read: the first piece waits in the stream's buffer, 3 more (256 KiB + tag
      // each, the window) are fetched, and the download stops there. Without the byte
      // window it would fetch 16 ahead.
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(served(), 4 * (PIECE + 16));
      const got = await collect(stream);
      assert.ok(got.equals(data));
    });

    it("picks larger pieces for a large upload that names no piece size, up to maxAutoPieceSize", async () => {
      const c = await startContentCluster(2, { manager: { pieceSize: "64KiB", maxAutoPieceSize: "256KiB" } });
      const data = testBytes(10 * 1024 * 1024);
      const fixed = { chunking: ChunkingMode.FIXED };
      // 10 MiB in 64 KiB pieces would be 160 (> 64): doubled to 128 KiB (80, > 64), then to the 256 KiB cap.
      const auto = await c.client.upload("auto", chunks(data), { ...fixed, expectedSize: BigInt(data.length) });
      assert.equal(auto.pieceCount, 40);
      // Size unknown, or a piece size named: as asked.
      assert.equal((await c.client.upload("unknown", chunks(data), fixed)).pieceCount, 160);
      assert.equal((await c.client.upload("named", chunks(data), { ...fixed, expectedSize: BigInt(data.length), pieceSize: 64 * 1024 })).pieceCount, 160);
      assert.ok((await collect(await c.client.download(auto.contentId))).equals(data));
    });

    it("places every piece on replication-factor distinct nodes and timestamps it", async () => {
      const c = await startContentCluster(4);
      const content = await c.client.upload("rf", chunks(testBytes(600_000)), { chunking: ChunkingMode.FIXED, pieceSize: PIECE, replicationFactor: 3 });
      const m = await c.client.manager.getManifest(content.contentId);
      for (const p of m.pieces) {
        assert.equal(new Set(p.replicas.map((r) => r.nodeId)).size, 3);
        const loc = await c.client.manager.locatePiece(p.pieceId, true);
        assert.deepEqual([...loc.reportedNodeIds].sort(), p.replicas.map((r) => r.nodeId).sort());
        assert.ok(loc.confirmedAt instanceof Date);
      }
      // Placement spreads by free space: every node got some pieces.
      const nodes = await c.client.manager.listNodes();
      assert.ok(nodes.every((n) => n.pieceCount > 0n), JSON.stringify(nodes.map((n) => [n.nodeId, Number(n.pieceCount)])));
    });

    it("re-uses unchanged pieces of an edited file with content-defined chunking", async () => {
      const c = await startContentCluster(3);
      const original = testBytes(3 * 1024 * 1024, 7);
      const first = await c.client.upload("v1", chunks(original), { chunking: ChunkingMode.CONTENT_DEFINED, pieceSize: 128 * 1024 });
      // Insert 1000 bytes near the start: later boundaries follow the content.
      const edited = Buffer.concat([original.subarray(0, 100_000), testBytes(1000, 3), original.subarray(100_000)]);
      const second = await c.client.upload("v2", chunks(edited), { chunking: ChunkingMode.CONTENT_DEFINED, pieceSize: 128 * 1024 });
      assert.ok(Number(second.reusedBytes) > 0.8 * edited.length, `re-used only ${second.reusedBytes} of ${edited.length}`);
      assert.ok((await collect(await c.client.download(second.contentId))).equals(edited));
      assert.ok((await collect(await c.client.download(first.contentId))).equals(original));
    });

    it("refuses an upload whose first message is not a header", async () => {
      const c = await startContentCluster(2);
      const { Metadata } = await import("@grpc/grpc-js");
      void Metadata;
      await assert.rejects(
        new Promise((resolve, reject) => {
          const call = c.client.manager.raw.upload(c.client.manager.metadata(), (err, res) => (err ? reject(err) : resolve(res)));
          call.write({ part: { $case: "data", value: Buffer.from("x") } });
          call.end();
        }),
        (err: { code: number; details: string }) => err.code === 3 && /header/.test(err.details),
      );
    });
  });
});
