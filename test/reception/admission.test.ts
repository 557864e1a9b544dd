import assert from "node:assert/strict";
import { status as Status } from "@grpc/grpc-js";
import { parseRichError } from "../../clients/grpc/rich-error.js";
import { order, type Ticket } from "../../clients/reception/index.js";
import { estimateWait, VirtualQueue } from "../../servers/reception/index.js";
import { eventually } from "../helpers/nodes.js";
import { startCluster } from "./fixtures.js";

describe("estimateWait", () => {
  it("hands out slots in release order and reuses a slot after its hold time", () => {
    const servers = [{ releases: [100, 300], holdMs: 1000 }];
    assert.equal(estimateWait(0, servers), 100);
    assert.equal(estimateWait(1, servers), 300);
    assert.equal(estimateWait(2, servers), 1100);
    assert.equal(estimateWait(3, servers), 1300);
  });
  it("merges several servers", () => {
    assert.equal(estimateWait(2, [{ releases: [500], holdMs: 200 }, { releases: [0], holdMs: 400 }]), 500);
  });
});

describe("VirtualQueue", () => {
  it("counts only live entries ahead and keeps a returning client's place", () => {
    const q = new VirtualQueue(10);
    const a = q.add("a", "i", "a", 0)!;
    const b = q.add("b", "i", "b", 0)!;
    a.expiresAt = 1000;
    b.expiresAt = 5000;
    assert.equal(q.ahead(b.seq, () => true, 500), 1);
    assert.equal(q.get("b", 900)?.seq, b.seq);
    assert.equal(q.ahead(b.seq, () => true, 1500), 0, "a lapsed");
  });
});

describe("Reception admission", () => {
  describe("PlaceOrder", () => {
    it("spreads orders to the least-loaded server", async () => {
      const c = await startCluster({ servers: 2, capacity: 4 });
      const counts = new Map<string, number>();
      for (let i = 0; i < 6; i++) {
        const t = (await c.rc.placeOrder({ itemId: "hello.txt", clientId: `c${i}` })).ticket as Ticket;
        counts.set(t.serverId, (counts.get(t.serverId) ?? 0) + 1);
      }
      assert.deepEqual([...counts.values()].sort(), [3, 3]);
    });

    it("admits a burst of concurrent orders up to capacity and no further, and each chosen server counts its tickets", async () => {
      const c = await startCluster({ servers: 2, capacity: 5 });
      const results = await Promise.allSettled(Array.from({ length: 25 }, (_, i) => c.rc.placeOrder({ itemId: "hello.txt", clientId: `burst-${i}` })));
      const tickets = results.flatMap((r) => (r.status === "fulfilled" && r.value.ticket ? [r.value.ticket] : []));
      const refusals = results.flatMap((r) => (r.status === "rejected" ? [parseRichError(r.reason).errorInfo?.reason] : []));
      assert.equal(tickets.length, 10, "exactly the total capacity is admitted");
      assert.deepEqual([...new Set(refusals)], ["ALL_SERVERS_BUSY"]);
      for (let s = 0; s < 2; s++) {
        const id = c.servers[s]!.config.node.id;
        const issued = tickets.filter((t) => t.serverId === id).length;
        assert.equal(issued, 5, `${id} got ${issued} tickets`);
        // The server learned of every ticket before the reception answered.
        assert.equal(c.core(s).occupancy, issued);
      }
    });

    it("breaks ties by configured distance", async () => {
      const c = await startCluster({ servers: 2, capacity: 4, reception: { distances: { "content-1": 5, "content-2": 1 } } });
      const t = (await c.rc.placeOrder({ itemId: "hello.txt", clientId: "near" })).ticket as Ticket;
      assert.equal(t.serverId, "content-2");
    });

    it("answers RESOURCE_EXHAUSTED with RetryInfo and queue position when every server is full, and keeps a returning client's place", async () => {
      const c = await startCluster({ servers: 2, capacity: 1 });
      const held: Ticket[] = [];
      for (const who of ["a", "b"]) held.push((await c.rc.placeOrder({ itemId: "hello.txt", clientId: who })).ticket as Ticket);
      const busy = (who: string) => c.rc.placeOrder({ itemId: "hello.txt", clientId: who }).then(() => assert.fail("admitted"), (e: unknown) => parseRichError(e));
      const third = await busy("c");
      assert.equal(third.code, Status.RESOURCE_EXHAUSTED);
      assert.equal(third.errorInfo?.reason, "ALL_SERVERS_BUSY");
      assert.equal(third.errorInfo?.metadata?.["queue_position"], "0");
      assert.ok((third.retryDelayMs ?? 0) > 0);
      const fourth = await busy("d");
      assert.equal(fourth.errorInfo?.metadata?.["queue_position"], "1");
      // Both slots free about together (two idle tickets), so the estimates are close.
      assert.ok(Number(fourth.errorInfo?.metadata?.["estimated_wait_ms"]) >= 0.8 * Number(third.errorInfo?.metadata?.["estimated_wait_ms"]));
      // One slot frees: "d" asks first but "c" is ahead of it and still within its time.
      const idx = c.servers.findIndex((s) => s.config.node.id === held[0]?.serverId);
      await c.content(idx).complete(held[0]!.token, "a");
      await eventually(() => c.rcore.table.free(c.rcore.table.entries.get(held[0]!.serverId)!) === 1, 5000);
      const early = await busy("d");
      assert.equal(early.errorInfo?.metadata?.["queue_position"], "1");
      const admitted = await c.rc.placeOrder({ itemId: "hello.txt", clientId: "c" });
      assert.equal(admitted.ticket?.serverId, held[0]?.serverId);
    });

    it("holds a queued client whose slot frees within the parking window and admits it without a retry", async () => {
      const c = await startCluster({ servers: 1, capacity: 1, reception: { parkWithin: "5s" } });
      const held = (await c.rc.placeOrder({ itemId: "hello.txt", clientId: "a" })).ticket as Ticket;
      const waiting = c.rc.placeOrder({ itemId: "hello.txt", clientId: "b" });
      let settled = false;
      void waiting.finally(() => (settled = true)).catch(() => undefined);
      await eventually(() => c.rcore.queue.size === 1, 5000);
      assert.equal(settled, false, "b is held, not answered");
      await c.content(0).complete(held.token, "a");
      const res = await waiting;
      assert.equal(res.ticket?.serverId, "content-1");
      assert.equal(c.rcore.queue.size, 0);
    });

    it("stops sending orders to a server whose reports stop, and uses the others", async () => {
      const c = await startCluster({ servers: 2, capacity: 100 });
      const victim = c.servers[0]!;
      await victim.stop("gone");
      await eventually(() => !c.rcore.table.active(c.rcore.table.entries.get("content-1")!), 5000);
      for (let i = 0; i < 5; i++) {
        assert.equal((await c.rc.placeOrder({ itemId: "hello.txt", clientId: `x${i}` })).ticket?.serverId, "content-2");
      }
      const row = await c.rc.getServer("content-1");
      assert.equal(row.state, 2 /* STALE */);
    });

    it("lists the live table for operators", async () => {
      const c = await startCluster({ servers: 3, capacity: 2 });
      await eventually(async () => (await c.rc.listServers()).every((s) => s.roundTripTime !== undefined), 8000);
      const rows = await c.rc.listServers();
      assert.deepEqual(rows.map((r) => r.serverId), ["content-1", "content-2", "content-3"]);
      assert.ok(rows.every((r) => r.state === 1 && r.load?.capacity === 2 && r.itemIds.includes("hello.txt")));
      const page = await c.rc.raw.listContentServers({ pageSize: 2, pageToken: "" }, () => undefined);
      page.cancel();
      const err = await c.rc.getServer("nope").catch((e: unknown) => parseRichError(e));
      assert.equal((err as ReturnType<typeof parseRichError>).errorInfo?.reason, "SERVER_NOT_FOUND");
    });
  });

  describe("saturation", () => {
    it("never serves more than capacity, serves everyone in arrival order, and estimates the wait", async function () {
      this.timeout(60_000);
      const capacity = 2;
      const c = await startCluster({
        servers: 2,
        capacity,
        content: { serveBytesPerSecond: "40KiB", chunkBytes: "4KiB" },
        seed: [{ itemId: "slow.bin", kind: "binary", bytes: 16 * 1024 }],
      });
      const clients = 3 * capacity * 2;
      const admittedOrder: number[] = [];
      const rows: { i: number; estimate: number | undefined; actual: number; attempts: number }[] = [];
      const runs: Promise<void>[] = [];
      for (let i = 0; i < clients; i++) {
        runs.push(
          order({
            reception: c.reception.address,
            itemId: "slow.bin",
            clientId: `client-${i}`,
            sink: () => undefined,
            onEvent: (e) => {
              if (e.type === "admitted") admittedOrder.push(i);
              if (process.env["DBG"]) process.stdout.write(`${Date.now() % 100000} ${i} ${JSON.stringify(e, (_k, v: unknown) => (typeof v === "bigint" ? Number(v) : v instanceof Uint8Array || (v as { type?: string })?.type === "Buffer" ? "<bytes>" : v))?.slice(0, 200)}\n`);
            },
          }).then((r) => void rows.push({ i, estimate: r.firstEstimateMs, actual: r.waitedMs, attempts: r.attempts })),
        );
        // Stagger so arrival order is well defined.
        await new Promise((r) => setTimeout(r, 15));
      }
      await Promise.all(runs);
      assert.equal(rows.length, clients);
      for (let s = 0; s < 2; s++) assert.ok(c.core(s).peakClientsServed <= capacity, `server ${s} served ${c.core(s).peakClientsServed} at once`);
      // Arrival order, up to swaps inside one round of free slots (clients admitted
      // together when several slots free at once).
      admittedOrder.forEach((j, rank) => {
        const overtaken = admittedOrder.slice(rank + 1).filter((i) => i < j).length;
        assert.ok(overtaken < 2 * capacity, `client ${j} overtook ${overtaken} earlier clients: ${admittedOrder.join(",")}`);
      });
      rows.sort((a, b) => a.i - b.i);
      // A client is either sent away with an estimate or, when its slot was due within
      // the reception's parking window, held and admitted on its first call.
      const waited = rows.filter((r) => r.estimate !== undefined);
      assert.ok(waited.length >= (clients - 2 * capacity) / 2, `the queue formed: ${waited.length} clients waited with an estimate`);
      for (const r of rows) if (r.estimate === undefined) assert.equal(r.attempts, 1, `client ${r.i} retried without an estimate`);
      process.stdout.write(`      client  estimate_ms  actual_ms\n${rows.map((r) => `      ${String(r.i).padStart(6)}  ${String(r.estimate ?? "-").padStart(11)}  ${String(r.actual).padStart(9)}`).join("\n")}\n`);
    });
  });
});
