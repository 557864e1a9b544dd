import assert from "node:assert/strict";
import { readClusterFile } from "../../tools/cluster/cluster-file.js";
import { defaultClusterFile } from "../../tools/cli/commands/up.js";
import { deriveServerKey } from "../../servers/reception/index.js";

describe("default cluster", () => {
  it("has one reception and three content servers in 7410-7419 whose ticket keys derive from the reception's master key", () => {
    const file = readClusterFile(defaultClusterFile());
    const rec = file.nodes.filter((n) => n.role === "reception");
    const cs = file.nodes.filter((n) => n.role === "content-server");
    assert.equal(rec.length, 1);
    assert.equal(cs.length, 3);
    for (const n of [...rec, ...cs]) assert.match(n.listen ?? "", /^127\.0\.0\.1:741\d$/);
    const master = (rec[0]?.config["reception"] as { masterKeys: { id: string; secret: string }[] }).masterKeys[0]!;
    for (const n of cs) {
      const k = (n.config["contentServer"] as { ticketKeys: { id: string; secret: string }[] }).ticketKeys[0]!;
      assert.equal(k.id, master.id);
      assert.equal(k.secret, deriveServerKey(Buffer.from(master.secret, "hex"), master.id, n.id).toString("hex"), n.id);
    }
  });
});
