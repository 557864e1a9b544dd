import assert from "node:assert/strict";
import { createServer, type AddressInfo } from "node:net";
import {
  credentials,
  Server,
  ServerCredentials,
  status as Status,
  type ServerDuplexStream,
  type ServerWritableStream,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { ChunkingMode } from "../../gen/switchyard/content/v1/content.js";
import { DistributionNodeClient } from "../../clients/content/index.js";
import { DirectPieceConnection, DirectPiecePool, DirectReadFailed, GET_PIECE_PATH, GET_PIECES_PATH, getPieceRequestFramed } from "../../clients/content/direct-piece.js";
import {
  DistributionNodeServiceClient,
  DistributionNodeServiceService,
  type GetPieceRequest,
  type GetPieceResponse,
  type GetPiecesRequest,
  type GetPiecesResponse,
} from "../../gen/switchyard/content/v1/distribution_node_service.js";
import { errorFromRpcStatus, parseRichError } from "../../clients/grpc/rich-error.js";
import { GrantSigner } from "../../servers/content/grant.js";
import { encryptPiece, sha256Hex } from "../../clients/content/crypto.js";
import { distributionNodeRole } from "../../servers/content/role-distribution-node.js";
import { PieceWorkers } from "../../clients/content/fetch-workers.js";
import { grpcFramed } from "../../clients/grpc/framing.js";
import { onCleanup, startTestNode } from "../helpers/nodes.js";
import { chunks, collect, GRANT_KEYS, nodeConfig, startContentCluster, testBytes } from "./cluster.js";

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
      assert.ok(direct.usesLanes, "a piece's error does not end its lane");
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

/**
 * A node stand-in serving fixed pieces, counting its calls: with `getPieces` false it is a
 * node from before GetPieces (grpc-js answers UNIMPLEMENTED). Pieces go out in messages of
 * at most 1000 bytes, the first with the piece's size.
 */
async function fakeNode(pieces: Map<string, Buffer>, getPieces: boolean): Promise<{ address: string; calls: { getPiece: number; getPieces: number } }> {
  const calls = { getPiece: 0, getPieces: 0 };
  const messages = (data: Buffer): GetPiecesResponse[] => {
    const out: GetPiecesResponse[] = [{ data: data.subarray(0, 1000), totalSize: data.length }];
    for (let at = 1000; at < data.length; at += 1000) out.push({ data: data.subarray(at, at + 1000), totalSize: 0 });
    return out;
  };
  const server = new Server();
  const impl: UntypedServiceImplementation = {
    getPiece: (call: ServerWritableStream<GetPieceRequest, GetPieceResponse>) => {
      calls.getPiece++;
      for (const m of messages(pieces.get(call.request.pieceId) ?? Buffer.alloc(0))) call.write(m);
      call.end();
    },
  };
  if (getPieces) {
    impl["getPieces"] = (call: ServerDuplexStream<GetPiecesRequest, GetPiecesResponse>) => {
      calls.getPieces++;
      call.on("data", (req: GetPiecesRequest) => {
        // "e…": the first message of a 3000-byte piece, then nothing (a stalled node).
        if (req.pieceId.startsWith("e")) call.write({ data: Buffer.alloc(1000, 1), totalSize: 3000 });
        else for (const m of messages(pieces.get(req.pieceId) ?? Buffer.alloc(0))) call.write(m);
      });
      call.on("end", () => call.end());
    };
  }
  server.addService(DistributionNodeServiceService, impl);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  onCleanup(() => new Promise<void>((r) => server.tryShutdown(() => r())));
  return { address: `127.0.0.1:${port}`, calls };
}

/** Resolves once `cond` holds (checked every 20 ms), or fails after 5 s. */
async function until(cond: () => boolean | Promise<boolean>): Promise<void> {
  for (const end = Date.now() + 5000; !(await cond()); ) {
    if (Date.now() > end) throw new Error("condition not reached in 5 s");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("DirectPieceConnection lanes", () => {
  const pieces = new Map<string, Buffer>([
    ["a".repeat(64), testBytes(5_500, 1)],
    ["b".repeat(64), testBytes(999, 2)],
    ["c".repeat(64), Buffer.alloc(0)],
    ["d".repeat(64), testBytes(1000, 3)],
  ]);
  const read = async (conn: DirectPieceConnection, id: string): Promise<Buffer> => {
    const parts: Buffer[] = [];
    const want = pieces.get(id) as Buffer;
    const req = { grant: Buffer.alloc(0), pieceId: id, accessTag: Buffer.alloc(0) };
    await conn.fetch(req, want.length, (b, s, e) => parts.push(Buffer.from(b.subarray(s, e))), new AbortController().signal, Date.now() + 10_000);
    return Buffer.concat(parts);
  };

  it("reads piece after piece on one GetPieces call, and opens one more per piece read at the same time", async () => {
    const node = await fakeNode(pieces, true);
    const conn = new DirectPieceConnection(node.address);
    onCleanup(() => conn.close());
    for (let round = 0; round < 3; round++) {
      for (const [id, data] of pieces) assert.ok((await read(conn, id)).equals(data), `piece ${id[0]}, round ${round}`);
    }
    assert.deepEqual(node.calls, { getPiece: 0, getPieces: 1 });
    // Four at once: four lanes (the idle one reused), never a piece queued behind another.
    const ids = [...pieces.keys()];
    const got = await Promise.all(ids.map((id) => read(conn, id)));
    got.forEach((b, i) => assert.ok(b.equals(pieces.get(ids[i] as string) as Buffer)));
    assert.deepEqual(node.calls, { getPiece: 0, getPieces: 4 });
    assert.ok(conn.usesLanes);
  });

  it("resets a lane given up in the middle of a piece and reads the next piece on a new one", async () => {
    const node = await fakeNode(pieces, true);
    const conn = new DirectPieceConnection(node.address);
    onCleanup(() => conn.close());
    assert.ok((await read(conn, "a".repeat(64))).equals(pieces.get("a".repeat(64)) as Buffer));
    const ac = new AbortController();
    let got = 0;
    const stalled = conn.fetch({ grant: Buffer.alloc(0), pieceId: "e".repeat(64), accessTag: Buffer.alloc(0) }, 3000, (_b, s, e) => {
      got += e - s;
      ac.abort(); // given up once its first bytes arrived (a hedge won elsewhere)
    }, ac.signal, Date.now() + 10_000);
    await assert.rejects(stalled, (err: { code?: number }) => err.code === Status.CANCELLED);
    assert.equal(got, 1000);
    assert.ok((await read(conn, "b".repeat(64))).equals(pieces.get("b".repeat(64)) as Buffer));
    assert.deepEqual(node.calls, { getPiece: 0, getPieces: 2 }, "the reset lane is not used again");
    assert.ok(conn.usesLanes);
  });

  it("ends its idle lanes when closed, and fetch workers theirs when stopped, so the node finishes those calls with OK", async () => {
    const node = await startTestNode(distributionNodeRole, { id: "dn-m", roleConfig: nodeConfig(), config: { metrics: { listen: "127.0.0.1:0" } } });
    const manage = Buffer.from(new GrantSigner(GRANT_KEYS).manage("test"));
    const key = Buffer.alloc(32, 7);
    const nonce = Buffer.alloc(12, 3);
    const plain = testBytes(70_000, 9);
    const stored = encryptPiece(plain, key, nonce);
    const pieceId = sha256Hex(stored);
    const client = new DistributionNodeClient(node.address);
    onCleanup(() => client.close());
    await client.put(manage, pieceId, stored);
    /** GetPieces calls the node finished, by status. */
    const lanes = async (): Promise<Record<string, number>> => {
      const text = await (await fetch(`http://127.0.0.1:${node.metricsPort}/metrics`)).text();
      const out: Record<string, number> = {};
      for (const m of text.matchAll(/grpc_server_handled_total\{[^}]*grpc_method="GetPieces"[^}]*grpc_code="([A-Z_]+)"[^}]*\} (\d+)/g)) out[m[1] as string] = Number(m[2]);
      return out;
    };
    // The direct reader: three pieces at once (three lanes), then close().
    const conn = new DirectPieceConnection(node.address);
    const req = { grant: manage, pieceId, accessTag: Buffer.alloc(0) };
    await Promise.all([0, 1, 2].map(() => conn.fetch(req, stored.length, () => undefined, new AbortController().signal, Date.now() + 10_000)));
    conn.close();
    await until(async () => (await lanes())["OK"] === 3);
    // A fetch worker: one piece, then the workers are closed.
    const workers = new PieceWorkers(1);
    onCleanup(() => workers.close());
    const fr = { index: 0, pieceId, size: plain.length, storedSize: stored.length, key, nonce, grant: manage, accessTag: Buffer.alloc(0), nodeId: "dn-m", deadline: Date.now() + 10_000 };
    assert.ok(Buffer.concat(await workers.fetch(node.address, fr, new AbortController().signal)).equals(plain));
    workers.close();
    await until(async () => (await lanes())["OK"] === 4);
    assert.deepEqual(await lanes(), { OK: 4 }, "none cancelled");
  });

  it("reads from a node without GetPieces by GetPiece, the first piece included", async () => {
    const node = await fakeNode(pieces, false);
    const conn = new DirectPieceConnection(node.address);
    onCleanup(() => conn.close());
    for (const [id, data] of pieces) assert.ok((await read(conn, id)).equals(data), `piece ${id[0]}`);
    assert.equal(conn.usesLanes, false);
    assert.deepEqual(node.calls, { getPiece: pieces.size, getPieces: 0 });
  });

  it("gives a piece whose size differs from the expected one to grpc-js", async () => {
    const node = await fakeNode(pieces, true);
    const conn = new DirectPieceConnection(node.address);
    onCleanup(() => conn.close());
    const req = { grant: Buffer.alloc(0), pieceId: "b".repeat(64), accessTag: Buffer.alloc(0) };
    await assert.rejects(conn.fetch(req, 1000, () => undefined, new AbortController().signal, Date.now() + 10_000), DirectReadFailed);
  });
});

describe("DistributionNodeService.GetPieces", () => {
  it("answers requests in order with each piece's bytes or its own error, and ends OK after the client half-closed", async () => {
    const c = await startContentCluster(1, { manager: { replicationFactor: 1, minReplicas: 1 } });
    const data = testBytes(2 * 1024 * 1024 + 5);
    const content = await c.client.upload("gp", chunks(data), { chunking: ChunkingMode.FIXED, pieceSize: 1024 * 1024 });
    const m = await c.client.manager.getManifest(content.contentId);
    const [p0, p1, p2] = m.pieces;
    assert.ok(p0 && p1 && p2);
    const address = p0.replicas[0]?.address as string;
    const grant = Buffer.from(m.grant?.token as Uint8Array);
    const manage = Buffer.from(new GrantSigner(GRANT_KEYS).manage("test"));
    const node = new DistributionNodeClient(address);
    onCleanup(() => node.close());
    const stub = new DistributionNodeServiceClient(address, credentials.createInsecure());
    onCleanup(() => stub.close());
    const call = stub.getPieces();
    const requests = [
      { grant, pieceId: p0.pieceId, accessTag: Buffer.from(p0.accessTag) },
      { grant, pieceId: p1.pieceId, accessTag: Buffer.from(p0.accessTag) }, // p0's tag: not this piece's
      { grant: manage, pieceId: "f".repeat(64), accessTag: Buffer.alloc(0) }, // no such piece
      { grant: Buffer.from("not a grant"), pieceId: p2.pieceId, accessTag: Buffer.from(p2.accessTag) },
      { grant, pieceId: p2.pieceId, accessTag: Buffer.from(p2.accessTag) },
      { grant, pieceId: p1.pieceId, accessTag: Buffer.from(p1.accessTag) },
    ];
    for (const r of requests) call.write(r);
    call.end();
    const messages: GetPiecesResponse[] = [];
    await new Promise<void>((resolve, reject) => {
      call.on("data", (msg: GetPiecesResponse) => messages.push(msg));
      call.on("error", reject);
      call.on("status", (st: { code: number }) => (st.code === Status.OK ? resolve() : reject(new Error(`status ${st.code}`))));
    });
    // Split the messages into answers: each starts with a size or an error.
    const answers: { bytes?: Buffer; error?: ReturnType<typeof parseRichError> }[] = [];
    let left = 0;
    let parts: Buffer[] = [];
    for (const msg of messages) {
      if (left === 0) {
        assert.equal(parts.length, 0);
        if (msg.error) {
          answers.push({ error: parseRichError(errorFromRpcStatus(msg.error)) });
          continue;
        }
        left = msg.totalSize;
        assert.ok(left > 0);
      } else assert.equal(msg.totalSize, 0);
      parts.push(Buffer.from(msg.data));
      left -= msg.data.length;
      assert.ok(left >= 0);
      if (left === 0) {
        answers.push({ bytes: Buffer.concat(parts) });
        parts = [];
      }
    }
    assert.equal(answers.length, requests.length);
    const expect = async (i: number, p: typeof p0): Promise<void> => {
      const want = await node.get({ grant, pieceId: p.pieceId, accessTag: p.accessTag, maxBytes: p.storedSize });
      assert.ok(answers[i]?.bytes?.equals(want), `answer ${i}`);
    };
    await expect(0, p0);
    assert.equal(answers[1]?.error?.code, Status.PERMISSION_DENIED);
    assert.equal(answers[1]?.error?.errorInfo?.reason, "ACCESS_TAG_INVALID");
    assert.equal(answers[2]?.error?.code, Status.NOT_FOUND);
    assert.equal(answers[2]?.error?.errorInfo?.reason, "PIECE_NOT_FOUND");
    assert.equal(answers[3]?.error?.code, Status.UNAUTHENTICATED);
    assert.equal(answers[3]?.error?.errorInfo?.reason, "GRANT_INVALID");
    await expect(4, p2);
    await expect(5, p1);
  });
});

describe("getPieceRequestFramed", () => {
  it("encodes what the generated codec encodes, on the generated paths", () => {
    const def = DistributionNodeServiceService.getPiece;
    assert.equal(GET_PIECE_PATH, def.path);
    assert.equal(GET_PIECES_PATH, DistributionNodeServiceService.getPieces.path);
    const id = "ab".repeat(32);
    for (const req of [
      { grant: Buffer.alloc(300, 7), pieceId: id, accessTag: Buffer.alloc(64, 9) },
      { grant: Buffer.alloc(0), pieceId: id, accessTag: Buffer.alloc(0) },
      { grant: Buffer.alloc(127, 1), pieceId: "", accessTag: Buffer.alloc(128, 2) },
      { grant: Buffer.alloc(20_000, 3), pieceId: id, accessTag: Buffer.alloc(1, 4) },
    ]) {
      assert.deepEqual(getPieceRequestFramed(req), grpcFramed(def.requestSerialize(req)), `grant ${req.grant.length}, tag ${req.accessTag.length}`);
      assert.deepEqual(getPieceRequestFramed(req), grpcFramed(DistributionNodeServiceService.getPieces.requestSerialize(req)), "as GetPiecesRequest");
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
