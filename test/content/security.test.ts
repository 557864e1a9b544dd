import assert from "node:assert/strict";
import { status as Status } from "@grpc/grpc-js";
import { ChunkingMode } from "../../gen/switchyard/content/v1/content.js";
import { decryptPiece, DistributionNodeClient, downloadManifest, PieceAuthError, PieceUnavailableError } from "../../clients/content/index.js";
import { parseRichError } from "../../clients/grpc/index.js";
import { generateGrantKey, GrantSigner } from "../../servers/content/grant.js";
import { distributionNodeRole } from "../../servers/content/role-distribution-node.js";
import { ADMIN_TOKEN, GRANT_KEYS, NODE_GRANT_KEYS, READER_TOKEN, collect, chunks, nodeConfig, startContentCluster, tamper, testBytes } from "./cluster.js";
import { onCleanup } from "../helpers/nodes.js";

const expectStatus = (code: Status, reason: string) => (err: unknown) => {
  const st = parseRichError(err);
  assert.equal(st.code, code, st.message);
  assert.equal(st.errorInfo?.reason, reason);
  return true;
};

describe("DistributionNodeService", () => {
  describe("GetPiece grants", () => {
    it("serves a piece to a valid read grant and refuses wrong-key, expired, wrong-piece and wrong-scope grants", async () => {
      const c = await startContentCluster(2);
      const content = await c.client.upload("g", chunks(testBytes(200_000)), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      const m = await c.client.manager.getManifest(content.contentId);
      const [p0, p1] = m.pieces;
      assert.ok(p0 && p1);
      const node = new DistributionNodeClient(p0.replicas[0]?.address as string);
      onCleanup(() => node.close());
      const grant = m.grant?.token as Buffer;
      const ok = await node.get({ grant, pieceId: p0.pieceId, accessTag: p0.accessTag, maxBytes: 1 << 20 });
      assert.equal(ok.length, p0.storedSize);

      const forger = new GrantSigner([{ id: "k1", privateKey: generateGrantKey("k1").privateKey }]);
      const forged = forger.sign({ sub: "mallory", scope: "read", exp: Date.now() + 60_000 });
      await assert.rejects(node.get({ grant: forged.token, pieceId: p0.pieceId, accessTag: forger.accessTag(forged.claims, p0.pieceId), maxBytes: 1 << 20 }), expectStatus(Status.UNAUTHENTICATED, "GRANT_INVALID"));

      const real = new GrantSigner(GRANT_KEYS);
      const expired = real.sign({ sub: "reader", scope: "read", exp: Date.now() - 1 });
      await assert.rejects(node.get({ grant: expired.token, pieceId: p0.pieceId, accessTag: real.accessTag(expired.claims, p0.pieceId), maxBytes: 1 << 20 }), expectStatus(Status.UNAUTHENTICATED, "GRANT_EXPIRED"));

      // The manifest's tag of piece 1 does not open piece 0.
      await assert.rejects(node.get({ grant, pieceId: p0.pieceId, accessTag: p1.accessTag, maxBytes: 1 << 20 }), expectStatus(Status.PERMISSION_DENIED, "ACCESS_TAG_INVALID"));

      // A read grant cannot write or delete.
      await assert.rejects(node.put(grant, p0.pieceId, ok), expectStatus(Status.PERMISSION_DENIED, "GRANT_SCOPE"));
      await assert.rejects(node.delete(grant, p0.pieceId), expectStatus(Status.PERMISSION_DENIED, "GRANT_SCOPE"));
      await assert.rejects(node.get({ grant: Buffer.from("garbage"), pieceId: p0.pieceId, maxBytes: 1 }), expectStatus(Status.UNAUTHENTICATED, "GRANT_INVALID"));
      await assert.rejects(node.get({ grant: Buffer.alloc(0), pieceId: "../../etc/passwd", maxBytes: 1 }), expectStatus(Status.UNAUTHENTICATED, "GRANT_MISSING"));
    });

    it("accepts no grant minted with a node's own key material", async () => {
      const c = await startContentCluster(1, { manager: { replicationFactor: 1, minReplicas: 1 } });
      const content = await c.client.upload("n", chunks(testBytes(10_000)), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      const p = (await c.client.manager.getManifest(content.contentId)).pieces[0];
      assert.ok(p);
      const node = new DistributionNodeClient(c.nodes[0]?.address as string);
      onCleanup(() => node.close());
      // All a node is configured with is the manager's public key; used as a signing seed it
      // yields grants and tags the node refuses, and a private key is not a node option.
      const held = nodeConfig()["grantKeys"] as typeof NODE_GRANT_KEYS;
      assert.deepEqual(Object.keys(held[0] ?? {}).sort(), ["id", "publicKey"]);
      const mallory = new GrantSigner(held.map((k) => ({ id: k.id, privateKey: k.publicKey })));
      const forged = mallory.sign({ sub: "node", scope: "read", exp: Date.now() + 60_000 });
      await assert.rejects(
        node.get({ grant: forged.token, pieceId: p.pieceId, accessTag: mallory.accessTag(forged.claims, p.pieceId), maxBytes: 1 << 20 }),
        expectStatus(Status.UNAUTHENTICATED, "GRANT_INVALID"),
      );
      await assert.rejects(node.delete(mallory.manage("node"), p.pieceId), expectStatus(Status.UNAUTHENTICATED, "GRANT_INVALID"));
      // A real grant with a tag signed by another key does not open the piece either.
      const m = await c.client.manager.getManifest(content.contentId);
      const other = new GrantSigner([{ id: "k1", privateKey: generateGrantKey("k1").privateKey }]);
      const claims = new GrantSigner(GRANT_KEYS).verify(m.grant?.token, ["read"]).claims;
      await assert.rejects(
        node.get({ grant: m.grant?.token as Buffer, pieceId: p.pieceId, accessTag: other.accessTag(claims, p.pieceId), maxBytes: 1 << 20 }),
        expectStatus(Status.PERMISSION_DENIED, "ACCESS_TAG_INVALID"),
      );
      assert.throws(() => distributionNodeRole.configSchema.parse({ grantKeys: GRANT_KEYS }));
    });

    it("refuses a piece whose bytes do not match its id", async () => {
      const c = await startContentCluster(1, { manager: { replicationFactor: 1, minReplicas: 1 } });
      const node = new DistributionNodeClient(c.nodes[0]?.address as string);
      onCleanup(() => node.close());
      const g = new GrantSigner(GRANT_KEYS).manage("test");
      await assert.rejects(node.put(g, "a".repeat(64), Buffer.from("hello")), expectStatus(Status.INVALID_ARGUMENT, "PIECE_HASH_MISMATCH"));
      await assert.rejects(node.put(g, "../x", Buffer.from("hello")), expectStatus(Status.INVALID_ARGUMENT, "BAD_PIECE_ID"));
    });
  });

  describe("tampered pieces", () => {

    it("detects a tampered replica and reads the intact one", async () => {
      const c = await startContentCluster(2);
      const data = testBytes(300_000);
      const content = await c.client.upload("t", chunks(data), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      const m = await c.client.manager.getManifest(content.contentId);
      const p = m.pieces[2];
      assert.ok(p);
      tamper(c, p.replicas[0]?.nodeId as string, p.pieceId);
      const events: string[] = [];
      const s = await c.client.download(content.contentId, { hedgeFactor: 0, onEvent: (e) => e.type === "failover" && events.push(e.error) });
      assert.ok((await collect(s)).equals(data));
      // Whichever replica was asked first, the tampered one never delivered.
      assert.ok(events.length === 0 || events.some((e) => /DATA_LOSS|match|authentication/.test(e)), events.join("\n"));
      const g = new GrantSigner(GRANT_KEYS).manage("test");
      const holder = new DistributionNodeClient(p.replicas[0]?.address as string);
      onCleanup(() => holder.close());
      assert.deepEqual((await holder.has(g, [p.pieceId], true)).corrupt, [p.pieceId]);
    });

    it("fails the download with a clear error when every replica is tampered", async () => {
      const c = await startContentCluster(2);
      const content = await c.client.upload("t2", chunks(testBytes(100_000)), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      const m = await c.client.manager.getManifest(content.contentId);
      const p = m.pieces[0];
      assert.ok(p);
      for (const r of p.replicas) tamper(c, r.nodeId, p.pieceId);
      const s = await c.client.download(content.contentId, { maxRounds: 1 });
      await assert.rejects(collect(s), (err: Error) => err instanceof PieceUnavailableError && /could not be fetched intact/.test(err.message));
    });

    it("refuses to decrypt with a wrong key", async () => {
      const c = await startContentCluster(1, { manager: { replicationFactor: 1, minReplicas: 1 } });
      const content = await c.client.upload("k", chunks(testBytes(1000)));
      const m = await c.client.manager.getManifest(content.contentId);
      const p = m.pieces[0];
      assert.ok(p);
      const node = new DistributionNodeClient(p.replicas[0]?.address as string);
      onCleanup(() => node.close());
      const stored = await node.get({ grant: m.grant?.token as Buffer, pieceId: p.pieceId, accessTag: p.accessTag, maxBytes: 1 << 20 });
      assert.equal(decryptPiece(stored, p.key, p.nonce).length, 1000);
      const wrong = Buffer.from(p.key);
      wrong[0] = (wrong[0] ?? 0) ^ 1;
      assert.throws(() => decryptPiece(stored, wrong, p.nonce), PieceAuthError);
    });
  });
});

describe("content downloader", () => {
  describe("grant expiry", () => {
    /** Reads the first chunk, waits until the grant has expired, then reads the rest. */
    const readPastExpiry = async (stream: AsyncIterable<Buffer>, waitMs: number): Promise<Buffer> => {
      const out: Buffer[] = [];
      for await (const b of stream) {
        if (out.length === 0) await new Promise((r) => setTimeout(r, waitMs));
        out.push(b);
      }
      return Buffer.concat(out);
    };

    it("renews an expired grant with a fresh manifest and finishes byte-exactly", async () => {
      const c = await startContentCluster(2);
      const data = testBytes(8 * 64 * 1024 + 17);
      const content = await c.client.upload("renew", chunks(data), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      // One piece at a time, at most one ahead: most pieces are asked for after the wait.
      const s = await c.client.download(content.contentId, { grantTtlMs: 1000, concurrency: 1, window: 1 });
      const got = await readPastExpiry(s, 1500);
      assert.ok(got.equals(data));
      assert.ok(s.stats.renewals >= 1, `renewals: ${s.stats.renewals}`);
      assert.equal(s.stats.failovers, 0);
      // The direct reader handed the refused calls to grpc-js, which read GRANT_EXPIRED.
      assert.ok(s.stats.fallbacks >= 1, `fallbacks: ${s.stats.fallbacks}`);
    });

    it("fails the pieces still to fetch with GRANT_EXPIRED when it cannot renew", async () => {
      const c = await startContentCluster(2);
      const content = await c.client.upload("norenew", chunks(testBytes(8 * 64 * 1024)), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      const m = await c.client.manager.getManifest(content.contentId, 1000);
      const s = downloadManifest(m, { concurrency: 1, window: 1, maxRounds: 1 });
      await assert.rejects(readPastExpiry(s, 1500), (err: Error) => err instanceof PieceUnavailableError && /GRANT_EXPIRED|expired/.test(err.message));
    });
  });
});

describe("ContentManagerService", () => {
  describe("authorisation", () => {
    it("gives manifests only to callers with a download token, and membership only to admins", async () => {
      const c = await startContentCluster(2);
      const content = await c.client.upload("a", chunks(testBytes(1000)));
      const anon = c.clientFor("no-such-token-000000");
      await assert.rejects(anon.manager.getManifest(content.contentId), expectStatus(Status.UNAUTHENTICATED, "TOKEN_UNKNOWN"));
      const reader = c.clientFor(READER_TOKEN);
      assert.equal((await reader.manager.getManifest(content.contentId)).pieces.length, 1);
      await assert.rejects(reader.manager.drainNode("dn-1"), expectStatus(Status.PERMISSION_DENIED, "PERMISSION_MISSING"));
      await assert.rejects(reader.upload("x", chunks(Buffer.from("x"))), expectStatus(Status.PERMISSION_DENIED, "PERMISSION_MISSING"));
      await assert.rejects(c.client.manager.getManifest("not-an-id"), expectStatus(Status.INVALID_ARGUMENT, "BAD_CONTENT_ID"));
      await assert.rejects(c.client.manager.getManifest("a".repeat(26)), expectStatus(Status.NOT_FOUND, "CONTENT_NOT_FOUND"));
      void ADMIN_TOKEN;
    });
  });
});
