import assert from "node:assert/strict";
import { ChunkingMode } from "../../gen/switchyard/content/v1/content.js";
import { runPythonCheck } from "../helpers/python.js";
import { ADMIN_TOKEN, chunks, startContentCluster, testBytes } from "./cluster.js";

describe("ContentManagerService", () => {
  describe("from Python", () => {
    it("lists contents, gets a manifest, streams every piece from a node (GetPiece and GetPieces) and reads the refusal details with the generated Python stubs", async () => {
      const c = await startContentCluster(2);
      const content = await c.client.upload("py.bin", chunks(testBytes(200_000)), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      const out = (await runPythonCheck("content", [c.manager.address, ADMIN_TOKEN, content.contentId])) as Record<string, unknown>;
      assert.deepEqual(out["names"], ["py.bin"]);
      assert.equal(out["pieces"], 4);
      assert.equal(out["keyBytes"], 32);
      assert.deepEqual(out["replicas"], [2, 2, 2, 2]);
      assert.deepEqual(out["piecesOk"], [true, true, true, true]);
      // Per node: its pieces, and in their midst one refused (another piece's tag).
      const perNode = out["getPieces"] as { asked: number; ok: number; refused: unknown[]; answers: number }[];
      assert.equal(perNode.reduce((n, a) => n + a.asked, 0), 4);
      for (const a of perNode) {
        assert.deepEqual(a, { asked: a.asked, ok: a.asked, refused: [{ code: 7, reason: "ACCESS_TAG_INVALID" }], answers: a.asked + 1 });
      }
      assert.ok((out["grantBytes"] as number) > 40);
      assert.deepEqual(out["refused"], { code: "UNAUTHENTICATED", message: "authorization metadata is required (Bearer <token>)", reason: "TOKEN_MISSING" });
      assert.equal(out["health"], "SERVING");
    });
  });
});
