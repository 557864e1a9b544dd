import assert from "node:assert/strict";
import { runPythonCheck } from "../helpers/python.js";
import { startCluster } from "./fixtures.js";

describe("Reception from Python", () => {
  it("places an order, fetches with the ticket and reads the error details, with stubs from protoc", async function () {
    this.timeout(60_000);
    const c = await startCluster({ servers: 2 });
    const out = (await runPythonCheck("reception", [c.reception.address])) as Record<string, unknown>;
    assert.equal(out["bytes"], 3000);
    assert.equal(out["headerSize"], 3000);
    assert.deepEqual(out["servers"], ["content-1", "content-2"]);
    assert.deepEqual(out["errors"], {
      unknownItem: ["NOT_FOUND", "ITEM_NOT_FOUND"],
      replay: ["FAILED_PRECONDITION", "TICKET_ALREADY_USED"],
      garbage: ["INVALID_ARGUMENT", "TICKET_MALFORMED"],
    });
  });
});
