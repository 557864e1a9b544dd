import assert from "node:assert/strict";
import { order } from "../../clients/reception/index.js";
import { startCluster } from "./fixtures.js";

describe("Reception", () => {
  describe("order flow", () => {
    it("places an order and fetches the item with the ticket", async () => {
      const c = await startCluster();
      const chunks: Buffer[] = [];
      const events: string[] = [];
      const res = await order({ reception: c.reception.address, itemId: "hello.txt", clientId: "alice", sink: (b) => void chunks.push(Buffer.from(b)), onEvent: (e) => events.push(e.type) });
      assert.equal(res.bytes, 3000);
      assert.equal(Buffer.concat(chunks).length, 3000);
      assert.deepEqual([...new Set(events)], ["admitted", "progress", "done"]);
    });
  });
});
