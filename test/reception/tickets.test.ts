import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { status as Status } from "@grpc/grpc-js";
import { parseRichError } from "../../clients/grpc/rich-error.js";
import { ContentServerClient, type Ticket } from "../../clients/reception/index.js";
import { deriveServerKey, parseToken, TicketMinter, TicketVerifier } from "../../servers/reception/index.js";
import { sealClaims } from "../../servers/reception/tickets.js";
import { startCluster, type TestCluster } from "./fixtures.js";

/** Reads a whole fetch; resolves with the byte count or rejects with the gRPC error. */
async function drain(cs: ContentServerClient, token: Uint8Array, clientId: string): Promise<number> {
  let n = 0;
  for await (const p of cs.fetch(token, clientId)) if ("chunk" in p) n += p.chunk.length;
  return n;
}

async function refused(p: Promise<unknown>, code: Status, reason: string): Promise<ReturnType<typeof parseRichError>> {
  const err = await p.then(
    () => assert.fail(`expected ${Status[code]} ${reason}, got success`),
    (e: unknown) => e,
  );
  const st = parseRichError(err);
  assert.equal(Status[st.code], Status[code], `${st.message} (${st.errorInfo?.reason})`);
  assert.equal(st.errorInfo?.reason, reason, st.message);
  assert.equal(st.errorInfo?.domain, "switchyard.reception");
  return st;
}

describe("ContentServerService", () => {
  let c: TestCluster;
  let ticket: Ticket;
  let mine: ContentServerClient;
  let other: ContentServerClient;
  let minter: TicketMinter;
  const claimsFor = (t: Ticket, over: Record<string, unknown> = {}) => ({
    ticketId: randomUUID(),
    clientId: "alice",
    clientAddress: "127.0.0.1",
    serverId: t.serverId,
    contentLocation: "hello.txt",
    notBefore: new Date(Date.now() - 1000),
    notAfter: new Date(Date.now() + 60_000),
    issuer: "test",
    ...over,
  });

  beforeEach(async () => {
    c = await startCluster({ servers: 2 });
    ticket = (await c.rc.placeOrder({ itemId: "hello.txt", clientId: "alice" })).ticket as Ticket;
    const idx = c.servers.findIndex((s) => s.config.node.id === ticket.serverId);
    mine = c.content(idx);
    other = c.content(1 - idx);
    minter = new TicketMinter([{ id: "k1", secret: Buffer.from(c.master, "hex") }], "k1");
  });

  describe("FetchContent", () => {
    it("serves the item to the client the ticket was issued to", async () => {
      assert.equal(await drain(mine, ticket.token, "alice"), 3000);
    });

    it("refuses a replayed ticket with FAILED_PRECONDITION TICKET_ALREADY_USED", async () => {
      await drain(mine, ticket.token, "alice");
      await refused(drain(mine, ticket.token, "alice"), Status.FAILED_PRECONDITION, "TICKET_ALREADY_USED");
    });

    it("refuses a replay after the content server restarted on the same store", async () => {
      await drain(mine, ticket.token, "alice");
      const idx = c.servers.findIndex((s) => s.config.node.id === ticket.serverId);
      const node = c.servers[idx]!;
      await node.stop("restart");
      const { startTestNode } = await import("../helpers/nodes.js");
      const { contentServerRole } = await import("../../servers/reception/index.js");
      const again = await startTestNode(contentServerRole, {
        id: node.config.node.id,
        dataDir: node.config.dataDir,
        roleConfig: { receptions: [], ticketKeys: [{ id: "k1", secret: deriveServerKey(Buffer.from(c.master, "hex"), "k1", node.config.node.id).toString("hex") }] },
      });
      const cs = new ContentServerClient(again.address);
      try {
        await refused(drain(cs, ticket.token, "alice"), Status.FAILED_PRECONDITION, "TICKET_ALREADY_USED");
      } finally {
        cs.close();
      }
    });

    it("refuses a forged token (well-formed, random ciphertext) with UNAUTHENTICATED TICKET_NOT_AUTHENTIC", async () => {
      const forged = Buffer.from(ticket.token);
      const p = parseToken(forged);
      randomBytes(p.ciphertext.length + p.tag.length).copy(forged, forged.length - p.ciphertext.length - p.tag.length);
      await refused(drain(mine, forged, "alice"), Status.UNAUTHENTICATED, "TICKET_NOT_AUTHENTIC");
    });

    it("refuses a ticket minted with another master key", async () => {
      const rogue = new TicketMinter([{ id: "k1", secret: randomBytes(32) }], "k1");
      await refused(drain(mine, rogue.mint(claimsFor(ticket)), "alice"), Status.UNAUTHENTICATED, "TICKET_NOT_AUTHENTIC");
    });

    it("refuses an altered token with UNAUTHENTICATED TICKET_NOT_AUTHENTIC", async () => {
      for (const at of [ticket.token.length - 1, ticket.token.length - 30, 3]) {
        const altered = Buffer.from(ticket.token);
        altered[at] = (altered[at] as number) ^ 0x01;
        const st = parseRichError(await drain(mine, altered, "alice").catch((e: unknown) => e));
        assert.ok(["TICKET_NOT_AUTHENTIC", "TICKET_KEY_UNKNOWN", "TICKET_WRONG_SERVER"].includes(st.errorInfo?.reason ?? ""), st.message);
      }
      const altered = Buffer.from(ticket.token);
      altered[altered.length - 20] = (altered[altered.length - 20] as number) ^ 0x80;
      await refused(drain(mine, altered, "alice"), Status.UNAUTHENTICATED, "TICKET_NOT_AUTHENTIC");
    });

    it("refuses a truncated token with INVALID_ARGUMENT TICKET_MALFORMED", async () => {
      const st = await refused(drain(mine, ticket.token.subarray(0, ticket.token.length - 5), "alice"), Status.INVALID_ARGUMENT, "TICKET_MALFORMED");
      assert.deepEqual(st.fieldViolations?.map((v) => v.field), ["token"]);
      await refused(drain(mine, ticket.token.subarray(0, 4), "alice"), Status.INVALID_ARGUMENT, "TICKET_MALFORMED");
    });

    it("refuses garbage bytes and an empty or oversized token with INVALID_ARGUMENT TICKET_MALFORMED", async () => {
      await refused(drain(mine, randomBytes(120), "alice"), Status.INVALID_ARGUMENT, "TICKET_MALFORMED");
      await refused(drain(mine, Buffer.alloc(0), "alice"), Status.INVALID_ARGUMENT, "TICKET_MALFORMED");
      await refused(drain(mine, randomBytes(64 * 1024), "alice"), Status.INVALID_ARGUMENT, "TICKET_MALFORMED");
    });

    it("refuses an expired ticket with UNAUTHENTICATED TICKET_EXPIRED", async () => {
      const t = minter.mint(claimsFor(ticket, { notBefore: new Date(Date.now() - 120_000), notAfter: new Date(Date.now() - 60_000) }));
      await refused(drain(mine, t, "alice"), Status.UNAUTHENTICATED, "TICKET_EXPIRED");
    });

    it("refuses a not-yet-valid ticket with FAILED_PRECONDITION TICKET_NOT_YET_VALID and RetryInfo", async () => {
      const t = minter.mint(claimsFor(ticket, { notBefore: new Date(Date.now() + 60_000), notAfter: new Date(Date.now() + 120_000) }));
      const st = await refused(drain(mine, t, "alice"), Status.FAILED_PRECONDITION, "TICKET_NOT_YET_VALID");
      assert.ok(st.retryDelayMs !== undefined && st.retryDelayMs > 50_000 && st.retryDelayMs <= 60_000, String(st.retryDelayMs));
    });

    it("refuses another client's ticket with PERMISSION_DENIED TICKET_CLIENT_MISMATCH", async () => {
      await refused(drain(mine, ticket.token, "mallory"), Status.PERMISSION_DENIED, "TICKET_CLIENT_MISMATCH");
      const t = minter.mint(claimsFor(ticket, { clientAddress: "10.9.8.7" }));
      const st = await refused(drain(mine, t, "alice"), Status.PERMISSION_DENIED, "TICKET_CLIENT_MISMATCH");
      assert.equal(st.errorInfo?.metadata?.["mismatch"], "address");
    });

    it("refuses another server's ticket with PERMISSION_DENIED TICKET_WRONG_SERVER", async () => {
      await refused(drain(other, ticket.token, "alice"), Status.PERMISSION_DENIED, "TICKET_WRONG_SERVER");
    });

    it("refuses a ticket minted with one server's key for another server", async () => {
      const otherId = c.servers.map((s) => s.config.node.id).find((id) => id !== ticket.serverId) as string;
      // The holder of ticket.serverId's key tries to mint for the other server.
      const stolen = deriveServerKey(Buffer.from(c.master, "hex"), "k1", ticket.serverId);
      const t = sealClaims(stolen, "k1", claimsFor(ticket, { serverId: otherId }));
      await refused(drain(other, t, "alice"), Status.UNAUTHENTICATED, "TICKET_NOT_AUTHENTIC");
      // And the verifier for the other server agrees without any network.
      assert.throws(() => new TicketVerifier(otherId, [{ id: "k1", secret: deriveServerKey(Buffer.from(c.master, "hex"), "k1", otherId) }]).open(t), /not authentic/);
    });

    it("refuses a ticket sealed under an unknown key id with UNAUTHENTICATED TICKET_KEY_UNKNOWN", async () => {
      const m2 = new TicketMinter([{ id: "k2", secret: Buffer.from(c.master, "hex") }], "k2");
      await refused(drain(mine, m2.mint(claimsFor(ticket)), "alice"), Status.UNAUTHENTICATED, "TICKET_KEY_UNKNOWN");
    });

    it("keeps serving after the attacks", async () => {
      for (let i = 0; i < 20; i++) await drain(mine, randomBytes(i * 7), "x").catch(() => undefined);
      assert.equal(await drain(mine, ticket.token, "alice"), 3000);
    });
  });

  describe("NotifyTickets", () => {
    /** Sends one request on a fresh notice stream and returns the answer. */
    const notify = async (cs: ContentServerClient, tokens: Uint8Array[]) => {
      const call = cs.notifyTickets();
      try {
        const answer = new Promise<import("../../clients/reception/index.js").NotifyTicketsResponse>((resolve, reject) => {
          call.once("data", resolve);
          call.once("error", reject);
        });
        call.write({ tokens: tokens.map((t) => Buffer.from(t)) });
        return await answer;
      } finally {
        call.cancel();
      }
    };

    it("counts each new ticket of a batch once, lists the refused ones by index, and does not count a used ticket again", async () => {
      const idx = c.servers.findIndex((s) => s.config.node.id === ticket.serverId);
      const core = c.core(idx);
      assert.equal(core.occupancy, 1, "the order placed in beforeEach");
      const fresh = minter.mint(claimsFor(ticket));
      const before = core.load(0).noticesSeen;
      const res = await notify(mine, [fresh, randomBytes(40), ticket.token]);
      assert.deepEqual(res.rejections.map((r) => [r.index, r.reason]), [[1, "TICKET_MALFORMED"]]);
      assert.equal(res.noticesSeen, before + 3n);
      assert.equal(core.occupancy, 2, "the fresh ticket is incoming; the known one is not counted twice");
      await drain(mine, ticket.token, "alice");
      assert.equal(core.occupancy, 1);
      const again = await notify(mine, [ticket.token]);
      assert.deepEqual(again.rejections, []);
      assert.equal(core.occupancy, 1, "a used ticket announced again holds no slot");
    });
  });

  describe("CompleteOrder", () => {
    it("uses the ticket up and answers a second call with already_completed", async () => {
      const first = await mine.complete(ticket.token, "alice");
      assert.deepEqual(first, { ticketId: ticket.ticketId, alreadyCompleted: false });
      assert.equal((await mine.complete(ticket.token, "alice")).alreadyCompleted, true);
      await refused(drain(mine, ticket.token, "alice"), Status.FAILED_PRECONDITION, "TICKET_ALREADY_USED");
    });
  });
});

describe("ReceptionService", () => {
  describe("PlaceOrder", () => {
    it("answers an unknown item with NOT_FOUND ITEM_NOT_FOUND", async () => {
      const c = await startCluster({ servers: 1 });
      await refused(c.rc.placeOrder({ itemId: "nope.bin", clientId: "alice" }), Status.NOT_FOUND, "ITEM_NOT_FOUND");
    });

    it("answers oversized and malformed fields with INVALID_ARGUMENT and the field", async () => {
      const c = await startCluster({ servers: 1 });
      const st = await refused(c.rc.placeOrder({ itemId: "x".repeat(100_000), clientId: "alice" }), Status.INVALID_ARGUMENT, "FIELD_TOO_LONG");
      assert.deepEqual(st.fieldViolations?.map((v) => v.field), ["item_id"]);
      await refused(c.rc.placeOrder({ itemId: "hello.txt", clientId: "a".repeat(5000) }), Status.INVALID_ARGUMENT, "FIELD_TOO_LONG");
      await refused(c.rc.placeOrder({ itemId: "../etc/passwd", clientId: "alice" }), Status.INVALID_ARGUMENT, "INVALID_ITEM_ID");
      await refused(c.rc.placeOrder({ itemId: "hello.txt", clientId: "" }), Status.INVALID_ARGUMENT, "INVALID_CLIENT_ID");
      // Past the node's message limit: refused by gRPC itself, and the node stays up.
      const huge = await c.rc.placeOrder({ itemId: "hello.txt", clientId: "z".repeat(17 * 1024 * 1024) }).catch((e: unknown) => e);
      assert.equal(parseRichError(huge).code, Status.RESOURCE_EXHAUSTED);
      assert.ok((await c.rc.placeOrder({ itemId: "hello.txt", clientId: "alice" })).ticket);
    });

    it("returns the same ticket for a retried request_id", async () => {
      const c = await startCluster({ servers: 1 });
      const a = await c.rc.placeOrder({ itemId: "hello.txt", clientId: "alice", requestId: "r-1" });
      const b = await c.rc.placeOrder({ itemId: "hello.txt", clientId: "alice", requestId: "r-1" });
      assert.equal(a.ticket?.ticketId, b.ticket?.ticketId);
      const d = await c.rc.placeOrder({ itemId: "hello.txt", clientId: "alice", requestId: "r-2" });
      assert.notEqual(a.ticket?.ticketId, d.ticket?.ticketId);
    });

    it("keeps the claims out of the client's reach: the token has no plaintext client id or item", async () => {
      const c = await startCluster({ servers: 1 });
      const t = (await c.rc.placeOrder({ itemId: "hello.txt", clientId: "alice-the-client" })).ticket as Ticket;
      const s = Buffer.from(t.token).toString("latin1");
      assert.ok(!s.includes("alice-the-client") && !s.includes("hello.txt"));
    });
  });
});
