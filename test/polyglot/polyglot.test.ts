import assert from "node:assert/strict";
import { bareRole } from "../../servers/bare/role.js";
import { startTestNode } from "../helpers/nodes.js";
import { runPythonCheck } from "../helpers/python.js";

describe("polyglot Python client", () => {
  it("lists every service through reflection, gets SERVING from health and calls NodeService", async () => {
    const node = await startTestNode(bareRole, { id: "py-target" });
    const out = (await runPythonCheck("common", [node.address])) as Record<string, unknown>;
    assert.deepEqual(out["services"], [
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      "switchyard.node.v1.NodeService",
    ]);
    assert.ok((out["descriptorFiles"] as string[]).includes("switchyard/node/v1/node_service.proto"));
    assert.equal(out["health"], "SERVING");
    assert.equal(out["nodeId"], "py-target");
    assert.equal(out["role"], "bare");
    assert.deepEqual(out["badWatch"], { code: "INVALID_ARGUMENT", message: "interval: must be between 100ms and 1h, got 1 ms", reason: "WATCH_INTERVAL_OUT_OF_RANGE", fields: ["interval"] });
  });
});
