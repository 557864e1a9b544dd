import assert from "node:assert/strict";
import { ChunkingMode } from "../../gen/switchyard/content/v1/content.js";
import { runPythonCheck } from "../helpers/python.js";
import { ADMIN_TOKEN, chunks, startContentCluster, testBytes } from "./cluster.js";

describe("ContentManagerService", () => {
  describe("from Python", () => {
    it("lists contents, gets a manifest, streams every piece from a node and reads the refusal details with the generated Python stubs", async () => {
      const c = await startContentCluster(2);
      const content = await c.client.upload("py.bin", chunks(testBytes(200_000)), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      const out = (await runPythonCheck("content", [c.manager.address, ADMIN_TOKEN, content.contentId])) as Record<string, unknown>;
      assert.deepEqual(out["names"], ["py.bin"]);
      assert.equal(out["pieces"], 4);
      assert.equal(out["keyBytes"], 32);
      assert.deepEqual(out["replicas"], [2, 2, 2, 2]);
      assert.deepEqual(out["piecesOk"], [true, true, true, true]);
      assert.ok((out["grantBytes"] as number) > 40);
      assert.deepEqual(out["refused"], { code: "UNAUTHENTICATED", message: "authorization metadata is required (Bearer <token>)", reason: "TOKEN_MISSING" });
      assert.equal(out["health"], "SERVING");
    });
  });
});
