import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChunkingMode } from "../../gen/switchyard/content/v1/content.js";
import { PieceUnavailableError, PieceWorkers } from "../../clients/content/index.js";
import { onCleanup } from "../helpers/nodes.js";
import { chunks, contentWithTamperedReplica, startContentCluster, tamper, testBytes } from "./cluster.js";

const dir = (): string => mkdtempSync(join(tmpdir(), "switchyard-file-download-"));

describe("content downloader", () => {
  describe("file downloads", () => {
    it("write byte-exact files with and without fetch workers, replacing what the file held", async () => {
      const c = await startContentCluster(3);
      const workers = new PieceWorkers(2);
      onCleanup(() => workers.close());
      const out = join(dir(), "out.bin");
      for (const size of [1, 64 * 1024 - 1, 64 * 1024 + 1, 40 * 64 * 1024 + 321]) {
        const data = testBytes(size);
        const content = await c.client.upload(`f${size}`, chunks(data), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
        for (const threads of [0, 2]) {
          // A longer file there before: the download truncates it.
          writeFileSync(out, Buffer.alloc(size + 4096, 7));
          const order: number[] = [];
          const st = await c.client.downloadToFile(content.contentId, out, { threads, workers, concurrency: 8, onEvent: (e) => e.type === "piece" && order.push(e.index) });
          assert.ok(readFileSync(out).equals(data), `size ${size}, threads ${threads}`);
          assert.equal(st.bytes, size);
          assert.equal(st.pieces, Math.ceil(size / (64 * 1024)));
          assert.deepEqual(order, [...order.keys()], "pieces are reported in order");
        }
      }
    });

    it("read the intact replica when one is tampered, and fail naming the authentication when all are", async () => {
      const { c, data, contentId, p0 } = await contentWithTamperedReplica();
      const out = join(dir(), "t.bin");
      for (const threads of [0, 2]) {
        const failovers: string[] = [];
        await c.client.downloadToFile(contentId, out, { threads, hedgeFactor: 0, onEvent: (e) => e.type === "failover" && failovers.push(e.error) });
        assert.ok(readFileSync(out).equals(data), `threads ${threads}`);
        assert.ok(failovers.every((e) => /failed authentication/.test(e)), failovers.join("\n"));
      }
      for (const r of p0.replicas) tamper(c, r.nodeId, p0.pieceId);
      for (const threads of [0, 2]) {
        await assert.rejects(
          c.client.downloadToFile(contentId, out, { threads, maxRounds: 1 }),
          (err: Error) => err instanceof PieceUnavailableError && /could not be fetched intact/.test(err.message) && /failed authentication/.test(err.message),
        );
        // Piece 0 was never written, so the file is cut back to nothing (no zeros standing in for it).
        assert.equal(statSync(out).size, 0, `threads ${threads}`);
      }
    });

    it("write nothing more once a cancelled download has returned", async function () {
      this.timeout(20_000);
      // 2 MiB from two nodes at 512 KiB/s each: about 2 s when nothing stops the fetches.
      const c = await startContentCluster(2, { node: () => ({ bandwidthLimit: "512KiB" }) });
      const data = testBytes(32 * 64 * 1024);
      const content = await c.client.upload("fc", chunks(data), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      const out = join(dir(), "c.bin");
      for (const threads of [2, 0]) {
        const stop = new AbortController();
        let pieces = 0;
        await assert.rejects(
          c.client.downloadToFile(content.contentId, out, {
            threads,
            concurrency: 4,
            signal: stop.signal,
            onEvent: (e) => {
              if (e.type === "piece" && ++pieces === 3) stop.abort(new Error("enough"));
            },
          }),
          /enough/,
        );
        // The file holds the pieces written in order from its start, and nothing else.
        const after = readFileSync(out);
        assert.ok(after.length < data.length, `threads ${threads}: ${after.length} bytes kept`);
        assert.ok(after.equals(data.subarray(0, after.length)), `threads ${threads}: the kept prefix differs`);
        // Had a worker or a write gone on, the file would have grown or changed by now.
        await new Promise((r) => setTimeout(r, 2500));
        assert.equal(statSync(out).size, after.length, `threads ${threads}`);
        assert.ok(readFileSync(out).equals(after), `threads ${threads}`);
      }
    });
  });
});
