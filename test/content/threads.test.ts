import assert from "node:assert/strict";
import { ChunkingMode } from "../../gen/switchyard/content/v1/content.js";
import { downloadManifest, downloadThreads, PieceUnavailableError, PieceWorkers } from "../../clients/content/index.js";
import { onCleanup } from "../helpers/nodes.js";
import { chunks, collect, contentWithTamperedReplica, startContentCluster, tamper, testBytes } from "./cluster.js";

describe("content downloader", () => {
  describe("fetch workers", () => {
    it("are opt-in: a download runs in this thread unless threads or workers say otherwise", () => {
      assert.equal(downloadThreads(), 0);
      assert.equal(downloadThreads({ threads: 3 }), 3);
      const workers = new PieceWorkers(2);
      onCleanup(() => workers.close());
      assert.equal(downloadThreads({ workers }), 2);
      assert.equal(downloadThreads({ workers, threads: 0 }), 0);
    });

    it("round-trips byte-exactly and in order through worker threads, reusing them across downloads", async () => {
      const c = await startContentCluster(3);
      const data = testBytes(40 * 64 * 1024 + 321);
      const content = await c.client.upload("w", chunks(data), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      const workers = new PieceWorkers(2);
      onCleanup(() => workers.close());
      for (let round = 0; round < 2; round++) {
        const order: number[] = [];
        const s = await c.client.download(content.contentId, { threads: 2, workers, concurrency: 8, onEvent: (e) => e.type === "piece" && order.push(e.index) });
        assert.ok((await collect(s)).equals(data));
        assert.equal(s.stats.pieces, 41);
        assert.equal(new Set(order).size, 41);
      }
    });

    it("reads the intact replica when one is tampered, and names the failed authentication when all are", async () => {
      // Piece 1: one replica tampered → a failover (when it was asked first), intact bytes.
      const { c, data, contentId, p0 } = await contentWithTamperedReplica();
      const failovers: string[] = [];
      const s = await c.client.download(contentId, { threads: 2, hedgeFactor: 0, onEvent: (e) => e.type === "failover" && failovers.push(e.error) });
      assert.ok((await collect(s)).equals(data));
      assert.ok(failovers.every((e) => /failed authentication/.test(e)), failovers.join("\n"));
      // p0: every replica tampered → the download fails with the authentication error.
      for (const r of p0.replicas) tamper(c, r.nodeId, p0.pieceId);
      const bad = await c.client.download(contentId, { threads: 2, maxRounds: 1 });
      await assert.rejects(collect(bad), (err: Error) => err instanceof PieceUnavailableError && /failed authentication/.test(err.message));
    });

    it("renews an expired grant (the node's GRANT_EXPIRED crosses the thread) without counting a failover", async () => {
      const c = await startContentCluster(2);
      const data = testBytes(8 * 64 * 1024 + 5);
      const content = await c.client.upload("wr", chunks(data), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      const s = await c.client.download(content.contentId, { threads: 2, grantTtlMs: 1000, concurrency: 1, window: 1 });
      const out: Buffer[] = [];
      for await (const b of s) {
        if (out.length === 0) await new Promise((r) => setTimeout(r, 1500));
        out.push(b as Buffer);
      }
      assert.ok(Buffer.concat(out).equals(data));
      assert.ok(s.stats.renewals >= 1, `renewals: ${s.stats.renewals}`);
      assert.equal(s.stats.failovers, 0);
      // The direct reader handed the refused calls to grpc-js, which read GRANT_EXPIRED.
      assert.ok(s.stats.fallbacks >= 1, `fallbacks: ${s.stats.fallbacks}`);
    });

    it("stops fetching in its private workers when the reader gives up early", async function () {
      this.timeout(20_000);
      // 2 MiB from two nodes at 512 KiB/s each: about 2 s when nothing stops the fetches.
      const c = await startContentCluster(2, { node: () => ({ bandwidthLimit: "512KiB" }) });
      const data = testBytes(32 * 64 * 1024);
      const content = await c.client.upload("wc", chunks(data), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      const m = await c.client.manager.getManifest(content.contentId);
      const s = downloadManifest(m, { threads: 2, concurrency: 4 });
      let first: Buffer | undefined;
      for await (const b of s) {
        first = b as Buffer;
        break; // destroys the stream
      }
      assert.ok(first?.equals(data.subarray(0, first.length)));
      assert.ok(s.destroyed);
      // Had the workers gone on, every piece would have arrived (and been counted) by now.
      await new Promise((r) => setTimeout(r, 3000));
      assert.ok(s.stats.pieces < 32, `pieces: ${s.stats.pieces}`);
    });
  });
});
