import assert from "node:assert/strict";
import { status as Status } from "@grpc/grpc-js";
import { ChunkingMode } from "../../gen/switchyard/content/v1/content.js";
import { DistributionNodeClient } from "../../clients/content/index.js";
import { parseRichError, unary } from "../../clients/grpc/index.js";
import { GrantSigner } from "../../servers/content/grant.js";
import { onCleanup } from "../helpers/nodes.js";
import { GRANT_KEYS, chunks, collect, startContentCluster, testBytes } from "./cluster.js";

const bad = (code: Status, reason: string) => (err: unknown) => {
  const st = parseRichError(err);
  assert.equal(st.code, code, st.message);
  assert.equal(st.errorInfo?.reason, reason);
  return true;
};

describe("ContentManagerService", () => {
  describe("bad input", () => {
    it("answers garbage with INVALID_ARGUMENT and stable reasons, and keeps serving", async () => {
      const c = await startContentCluster(2);
      const m = c.client.manager;
      await assert.rejects(m.listContents().then(() => unary(m.raw, m.raw.listContents, { pageSize: 5, pageToken: "../../x" }, { metadata: m.metadata() })), bad(Status.INVALID_ARGUMENT, "BAD_PAGE_TOKEN"));
      await assert.rejects(m.listHistory({ pageToken: "garbage" }), bad(Status.INVALID_ARGUMENT, "BAD_PAGE_TOKEN"));
      await assert.rejects(m.listHistory({ since: new Date(2000), until: new Date(1000) }), bad(Status.INVALID_ARGUMENT, "BAD_TIME_RANGE"));
      await assert.rejects(m.setReplicaPolicy({ mirrorAbovePerMinute: 5, unmirrorBelowPerMinute: 10 }), bad(Status.INVALID_ARGUMENT, "NO_HYSTERESIS"));
      await assert.rejects(m.addNode("http://evil.example/x"), bad(Status.INVALID_ARGUMENT, "BAD_ADDRESS"));
      await assert.rejects(m.locatePiece("zz", true), bad(Status.INVALID_ARGUMENT, "BAD_PIECE_ID"));
      await assert.rejects(c.client.upload("x", chunks(Buffer.from("abc")), { pieceSize: 10 }), bad(Status.INVALID_ARGUMENT, "BAD_PIECE_SIZE"));
      await assert.rejects(c.client.upload("", chunks(Buffer.from("abc"))), bad(Status.INVALID_ARGUMENT, "BAD_NAME"));
      await assert.rejects(c.client.upload("x", chunks(Buffer.from("abc")), { expectedSize: 5n }), bad(Status.INVALID_ARGUMENT, "SIZE_MISMATCH"));
      await assert.rejects(c.client.upload("x", chunks(Buffer.from("abc")), { replicationFactor: 3 }), bad(Status.RESOURCE_EXHAUSTED, "NO_PLACEMENT"));
      await assert.rejects(c.client.upload("x", chunks(Buffer.from("abc")), { minSecurityRank: 99 }), bad(Status.RESOURCE_EXHAUSTED, "NO_PLACEMENT"));
      // A failed upload leaves no content and no pieces behind.
      assert.deepEqual(await m.listContents(), []);
      const node = new DistributionNodeClient(c.nodes[0]?.address as string);
      onCleanup(() => node.close());
      const g = new GrantSigner(GRANT_KEYS).manage("test");
      assert.deepEqual(await node.listAll(() => g), []);
      await assert.rejects(node.has(g, Array.from({ length: 10_001 }, () => "a".repeat(64))), bad(Status.INVALID_ARGUMENT, "TOO_MANY_IDS"));
      // Still serving.
      const data = testBytes(5000);
      const ok = await c.client.upload("fine", chunks(data), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      assert.ok((await collect(await c.client.download(ok.contentId))).equals(data));
    });

    it("returns the committed content when an upload is retried with the same request_id", async () => {
      const c = await startContentCluster(2);
      const data = testBytes(100_000);
      const a = await c.client.upload("same", chunks(data), { requestId: "retry-1" });
      const b = await c.client.upload("same", chunks(data), { requestId: "retry-1" });
      assert.equal(b.contentId, a.contentId);
      assert.equal((await c.client.manager.listContents()).length, 1);
    });
  });
});
