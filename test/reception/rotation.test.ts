import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { status as Status } from "@grpc/grpc-js";
import { parseRichError } from "../../clients/grpc/rich-error.js";
import { ContentServerClient, ReceptionClient, type Ticket } from "../../clients/reception/index.js";
import { contentServerRole, deriveServerKey, receptionRole, TicketMinter, type ReceptionInstance } from "../../servers/reception/index.js";
import { eventually, onCleanup, startTestNode } from "../helpers/nodes.js";
import { masterKey } from "./fixtures.js";

async function drain(cs: ContentServerClient, token: Uint8Array, clientId: string): Promise<number> {
  let n = 0;
  for await (const p of cs.fetch(token, clientId)) if ("chunk" in p) n += p.chunk.length;
  return n;
}

describe("Ticket key rotation", () => {
  it("with two master keys live: new tickets use the active key, old-key tickets still verify, and a server without the new key gets no orders", async () => {
    const old = masterKey();
    const next = masterKey();
    const derived = (master: string, keyId: string, serverId: string) => ({ id: keyId, secret: deriveServerKey(Buffer.from(master, "hex"), keyId, serverId).toString("hex") });
    const reception = await startTestNode(receptionRole, {
      id: "reception-r",
      roleConfig: {
        masterKeys: [
          { id: "k1", secret: old },
          { id: "k2", secret: next },
        ],
        activeKeyId: "k2",
        staleAfter: "1500ms",
        reportInterval: "300ms",
      },
    });
    const common = { receptions: [reception.address], capacity: 10, reportInterval: "300ms", seed: [{ itemId: "hello.txt", kind: "text", bytes: 3000 }] };
    // content-1 has not installed the new key yet; content-2 has both.
    const lagging = await startTestNode(contentServerRole, { id: "content-1", roleConfig: { ...common, ticketKeys: [derived(old, "k1", "content-1")] } });
    const current = await startTestNode(contentServerRole, { id: "content-2", roleConfig: { ...common, ticketKeys: [derived(old, "k1", "content-2"), derived(next, "k2", "content-2")] } });
    const rcore = (reception.role as ReceptionInstance).reception;
    await eventually(() => ["content-1", "content-2"].every((id) => rcore.table.entries.get(id)?.load !== undefined), 10_000);
    const rc = new ReceptionClient(reception.address);
    const cs2 = new ContentServerClient(current.address);
    const cs1 = new ContentServerClient(lagging.address);
    onCleanup(() => [rc, cs1, cs2].forEach((c) => c.close()));

    // content-1 refuses the first notice (unknown key): that order goes to content-2 and
    // content-1 is avoided from then on.
    const tickets: Ticket[] = [];
    for (let i = 0; i < 4; i++) tickets.push((await rc.placeOrder({ itemId: "hello.txt", clientId: `c${i}` })).ticket as Ticket);
    assert.deepEqual(
      tickets.map((t) => [t.serverId, t.keyId]),
      tickets.map(() => ["content-2", "k2"]),
    );
    assert.equal(await drain(cs2, tickets[0]!.token, "c0"), 3000);

    // A ticket issued under the old key before the switch still verifies.
    const before = new TicketMinter([{ id: "k1", secret: Buffer.from(old, "hex") }], "k1");
    const now = Date.now();
    const claims = { ticketId: randomUUID(), clientId: "early", clientAddress: "127.0.0.1", contentLocation: "hello.txt", notBefore: new Date(now - 1000), notAfter: new Date(now + 60_000), issuer: "reception-r" };
    assert.equal(await drain(cs2, before.mint({ ...claims, serverId: "content-2" }), "early"), 3000);
    assert.equal(await drain(cs1, before.mint({ ...claims, ticketId: randomUUID(), serverId: "content-1" }), "early"), 3000);

    // The lagging server cannot open new-key tickets.
    const err = await drain(cs1, new TicketMinter([{ id: "k2", secret: Buffer.from(next, "hex") }], "k2").mint({ ...claims, ticketId: randomUUID(), serverId: "content-1" }), "early").then(
      () => assert.fail("verified a ticket under a key it does not hold"),
      (e: unknown) => parseRichError(e),
    );
    assert.equal(err.code, Status.UNAUTHENTICATED);
    assert.equal(err.errorInfo?.reason, "TICKET_KEY_UNKNOWN");
  });
});
