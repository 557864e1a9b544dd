import assert from "node:assert/strict";
import { createServer, type AddressInfo } from "node:net";
import { status as Status } from "@grpc/grpc-js";
import { ChunkingMode } from "../../gen/switchyard/content/v1/content.js";
import { DistributionNodeClient } from "../../clients/content/index.js";
import { DirectPieceConnection, DirectPiecePool, DirectReadFailed, GET_PIECE_PATH, getPieceRequestFramed } from "../../clients/content/direct-piece.js";
import { DistributionNodeServiceService } from "../../gen/switchyard/content/v1/distribution_node_service.js";
import { grpcFramed } from "../../clients/grpc/framing.js";
import { onCleanup } from "../helpers/nodes.js";
import { chunks, collect, startContentCluster, testBytes } from "./cluster.js";

describe("DirectPieceConnection", () => {
  describe("fetch", () => {
    it("delivers a piece's stored bytes exactly as grpc-js does, for pieces of several sizes on one connection", async () => {
      const c = await startContentCluster(1, { manager: { replicationFactor: 1, minReplicas: 1 } });
      const data = testBytes(3 * 1024 * 1024 + 77);
      // 1 MiB pieces: several 1 MiB GetPiece messages per piece, split over many reads.
      const content = await c.client.upload("d", chunks(data), { chunking: ChunkingMode.FIXED, pieceSize: 1024 * 1024 });
      const m = await c.client.manager.getManifest(content.contentId);
      const address = m.pieces[0]?.replicas[0]?.address as string;
      const direct = new DirectPieceConnection(address);
      onCleanup(() => direct.close());
      const node = new DistributionNodeClient(address);
      onCleanup(() => node.close());
      await Promise.all(
        m.pieces.map(async (p) => {
          const req = { grant: m.grant?.token as Uint8Array, pieceId: p.pieceId, accessTag: p.accessTag };
          const parts: Buffer[] = [];
          await direct.fetch(req, p.storedSize, (buf, start, end) => parts.push(Buffer.from(buf.subarray(start, end))), new AbortController().signal, Date.now() + 10_000);
          const want = await node.get({ ...req, maxBytes: p.storedSize });
          assert.ok(Buffer.concat(parts).equals(want), `piece ${p.index}`);
        }),
      );
    });

    it("leaves a refused call to grpc-js (DirectReadFailed), rejects a cancelled one with CANCELLED, and keeps the connection usable", async () => {
      const c = await startContentCluster(1, { manager: { replicationFactor: 1, minReplicas: 1 } });
      const content = await c.client.upload("r", chunks(testBytes(100_000)), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      const m = await c.client.manager.getManifest(content.contentId);
      const [p0, p1] = m.pieces;
      assert.ok(p0 && p1);
      const direct = new DirectPieceConnection(p0.replicas[0]?.address as string);
      onCleanup(() => direct.close());
      const signal = new AbortController().signal;
      const deadline = Date.now() + 10_000;
      // p1's access tag with p0: the node refuses (trailers only, no bytes).
      await assert.rejects(
        direct.fetch({ grant: m.grant?.token as Uint8Array, pieceId: p0.pieceId, accessTag: p1.accessTag }, p0.storedSize, () => undefined, signal, deadline),
        DirectReadFailed,
      );
      const ac = new AbortController();
      const cancelled = direct.fetch({ grant: m.grant?.token as Uint8Array, pieceId: p0.pieceId, accessTag: p0.accessTag }, p0.storedSize, () => undefined, ac.signal, deadline);
      ac.abort();
      await assert.rejects(cancelled, (err: { code?: number }) => err.code === Status.CANCELLED);
      let n = 0;
      await direct.fetch({ grant: m.grant?.token as Uint8Array, pieceId: p1.pieceId, accessTag: p1.accessTag }, p1.storedSize, (_b, s, e) => (n += e - s), signal, deadline);
      assert.equal(n, p1.storedSize);
    });

    it("fails its streams with DirectReadFailed when the connection closes or is refused, and gives up a silent one at the deadline", async () => {
      const req = { grant: Buffer.alloc(0), pieceId: "0".repeat(64), accessTag: Buffer.alloc(0) };
      // A peer that takes the connection and drops it once the request arrived.
      const server = createServer((sock) => sock.once("data", () => setTimeout(() => sock.destroy(), 20)));
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      const port = (server.address() as AddressInfo).port;
      const dropped = new DirectPieceConnection(`127.0.0.1:${port}`);
      onCleanup(() => dropped.close());
      await assert.rejects(dropped.fetch(req, 100, () => undefined, new AbortController().signal, Date.now() + 10_000), DirectReadFailed);
      assert.ok(dropped.closed);
      // A peer that takes the request and never answers: the deadline cancels the stream
      // and closes the connection (no keepalive pings here to tell a dead one).
      const silent = createServer((sock) => sock.resume());
      await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
      onCleanup(() => new Promise<void>((r) => silent.close(() => r())));
      const slow = new DirectPieceConnection(`127.0.0.1:${(silent.address() as AddressInfo).port}`);
      onCleanup(() => slow.close());
      await assert.rejects(slow.fetch(req, 100, () => undefined, new AbortController().signal, Date.now() + 200), (err: { code?: number }) => err.code === Status.DEADLINE_EXCEEDED);
      assert.ok(slow.closed);
      await new Promise((r) => server.close(r));
      // Nobody listens there any more.
      const refused = new DirectPieceConnection(`127.0.0.1:${port}`);
      onCleanup(() => refused.close());
      await assert.rejects(refused.fetch(req, 100, () => undefined, new AbortController().signal, Date.now() + 10_000), DirectReadFailed);
    });
  });
});

describe("getPieceRequestFramed", () => {
  it("encodes what the generated codec encodes, on the generated path", () => {
    const def = DistributionNodeServiceService.getPiece;
    assert.equal(GET_PIECE_PATH, def.path);
    const id = "ab".repeat(32);
    for (const req of [
      { grant: Buffer.alloc(300, 7), pieceId: id, accessTag: Buffer.alloc(64, 9) },
      { grant: Buffer.alloc(0), pieceId: id, accessTag: Buffer.alloc(0) },
      { grant: Buffer.alloc(127, 1), pieceId: "", accessTag: Buffer.alloc(128, 2) },
      { grant: Buffer.alloc(20_000, 3), pieceId: id, accessTag: Buffer.alloc(1, 4) },
    ]) {
      assert.deepEqual(getPieceRequestFramed(req), grpcFramed(def.requestSerialize(req)), `grant ${req.grant.length}, tag ${req.accessTag.length}`);
    }
  });
});

describe("DirectPiecePool", () => {
  describe("get", () => {
    it("dials host:port targets only and leaves other grpc-js targets to grpc-js", () => {
      const pool = new DirectPiecePool();
      onCleanup(() => pool.close());
      assert.ok(pool.get("127.0.0.1:1"));
      assert.ok(pool.get("[::1]:1"));
      assert.equal(pool.get("dns:///example.org:443"), undefined);
      assert.equal(pool.get("ipv4:127.0.0.1:1,127.0.0.1:2"), undefined);
      assert.equal(pool.get("127.0.0.1:0"), undefined);
    });
  });
});

describe("content downloader", () => {
  describe("readers", () => {
    it("delivers the same bytes through the direct reader and through grpc-js", async () => {
      const c = await startContentCluster(3);
      const data = testBytes(5 * 256 * 1024 + 999);
      const content = await c.client.upload("rd", chunks(data), { chunking: ChunkingMode.CONTENT_DEFINED, pieceSize: 256 * 1024 });
      for (const reader of ["direct", "grpc"] as const) {
        const s = await c.client.download(content.contentId, { reader, concurrency: 4 });
        assert.ok((await collect(s)).equals(data), reader);
        assert.equal(s.stats.failovers, 0, reader);
        assert.equal(s.stats.fallbacks, 0, reader);
      }
    });
  });
});
