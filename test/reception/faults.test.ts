import assert from "node:assert/strict";
import { ContentServerClient, ReceptionClient, type Ticket } from "../../clients/reception/index.js";
import { receptionRole, type ReceptionInstance } from "../../servers/reception/index.js";
import { eventually, onCleanup, spawnNode, startTestNode, tempDir } from "../helpers/nodes.js";
import { masterKey, serverKeys } from "./fixtures.js";

const seed = [{ itemId: "hello.txt", kind: "text", bytes: 2000 }];

async function fetchAll(address: string, t: Ticket, clientId: string): Promise<number> {
  const cs = new ContentServerClient(address);
  try {
    let n = 0;
    for await (const p of cs.fetch(t.token, clientId)) if ("chunk" in p) n += p.chunk.length;
    return n;
  } finally {
    cs.close();
  }
}

describe("Reception faults", () => {
  it("stops sending orders to a content server killed with SIGKILL within a few seconds and uses the others", async function () {
    this.timeout(60_000);
    const master = masterKey();
    const reception = await startTestNode(receptionRole, { id: "reception-f", roleConfig: { masterKeys: [{ id: "k1", secret: master }], staleAfter: "2s" } });
    const rc = new ReceptionClient(reception.address);
    onCleanup(() => rc.close());
    const dir = tempDir();
    const spawned = [];
    for (const id of ["content-a", "content-b"]) {
      spawned.push(await spawnNode({ node: { id, role: "content-server" }, log: { level: "warn" }, contentServer: { receptions: [reception.address], capacity: 50, ticketKeys: serverKeys(master, id), reportInterval: "300ms", seed } }, dir));
    }
    const r = (reception.role as ReceptionInstance).reception;
    await eventually(() => ["content-a", "content-b"].every((id) => r.table.entries.get(id)?.load), 15_000);
    spawned[0]?.child.kill("SIGKILL");
    const killedAt = Date.now();
    await eventually(() => !r.table.active(r.table.entries.get("content-a")!), 5_000, 20);
    const detectMs = Date.now() - killedAt;
    assert.ok(detectMs < 5_000, `took ${detectMs} ms`);
    for (let i = 0; i < 10; i++) {
      const t = (await rc.placeOrder({ itemId: "hello.txt", clientId: `c${i}` })).ticket as Ticket;
      assert.equal(t.serverId, "content-b");
    }
  });

  it("keeps tickets valid across a reception restart (kill -9): the content server verifies them alone", async function () {
    this.timeout(60_000);
    const master = masterKey();
    const dir = tempDir();
    const rcfg = (listen: string) => ({ node: { id: "reception-r", role: "reception", listen }, log: { level: "warn" }, reception: { masterKeys: [{ id: "k1", secret: master }], staleAfter: "2s" } });
    const first = await spawnNode(rcfg("127.0.0.1:0"), dir);
    const cs = await spawnNode({ node: { id: "content-r", role: "content-server" }, log: { level: "warn" }, contentServer: { receptions: [first.address], capacity: 10, ticketKeys: serverKeys(master, "content-r"), reportInterval: "300ms", seed } }, dir);
    let rc = new ReceptionClient(first.address);
    const alice = (await eventually(() => rc.placeOrder({ itemId: "hello.txt", clientId: "alice" }), 15_000)).ticket as Ticket;
    const bob = (await rc.placeOrder({ itemId: "hello.txt", clientId: "bob" })).ticket as Ticket;
    rc.close();
    first.child.kill("SIGKILL");
    await first.exited;
    // With the reception down, a ticket still works.
    assert.equal(await fetchAll(cs.address, alice, "alice"), 2000);
    cs.child.stdout?.on("data", (b: Buffer) => process.env["DBG"] && process.stdout.write(b));
    cs.child.stderr?.on("data", (b: Buffer) => process.env["DBG"] && process.stdout.write(b));
    const again = await spawnNode(rcfg(first.address), dir);
    // A ticket issued by the killed reception process, used after the restart.
    assert.equal(await fetchAll(cs.address, bob, "bob"), 2000);
    // And the content server finds the new reception by itself.
    rc = new ReceptionClient(again.address);
    onCleanup(() => rc.close());
    const fresh = (await eventually(() => rc.placeOrder({ itemId: "hello.txt", clientId: "carol" }), 10_000)).ticket as Ticket;
    assert.equal(await fetchAll(cs.address, fresh, "carol"), 2000);
  });
});
