import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { NodeStore } from "../../servers/runtime/store.js";
import { onCleanup, tempDir, testLogger } from "../helpers/nodes.js";
import { packageRoot } from "../../servers/runtime/paths.js";

async function toArray<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function openStore(dir: string, now?: () => number): Promise<NodeStore> {
  const store = await NodeStore.open(dir, { log: testLogger(), sweepIntervalMs: 0, ...(now ? { now } : {}) });
  onCleanup(() => store.close());
  return store;
}

describe("NodeStore", () => {
  describe("collections", () => {
    it("keeps typed records apart per collection and iterates them in key order", async () => {
      const store = await openStore(tempDir());
      const users = store.collection<{ name: string }>("users");
      const blobs = store.collection<Buffer>("blobs", { encoding: "buffer" });
      await users.put("b", { name: "bo" });
      await users.put("a", { name: "al" });
      await blobs.put("a", Buffer.from([1, 2, 3]));
      assert.deepEqual(await users.get("a"), { name: "al" });
      assert.deepEqual(await blobs.get("a"), Buffer.from([1, 2, 3]));
      assert.deepEqual((await toArray(users.entries())).map(([k]) => k), ["a", "b"]);
      assert.equal(await users.get("missing"), undefined);
      assert.deepEqual(await users.getMany(["a", "zz"]), [{ name: "al" }, undefined]);
      assert.equal(await users.count(), 2);
    });

    it("applies a batch across collections all at once", async () => {
      const store = await openStore(tempDir());
      const a = store.collection<number>("a");
      const b = store.collection<number>("b");
      await a.put("gone", 1);
      await store.batch().put(a, "x", 1).put(b, "y", 2).del(a, "gone").write();
      assert.equal(await a.get("x"), 1);
      assert.equal(await b.get("y"), 2);
      assert.equal(await a.has("gone"), false);
    });

    it("refuses bad collection names and TTL writes to a collection without TTL", async () => {
      const store = await openStore(tempDir());
      assert.throws(() => store.collection("a!b"), /invalid collection name/);
      const plain = store.collection<number>("plain");
      assert.throws(() => store.batch().put(plain, "k", 1, { ttlMs: 10 }), /not opened with ttl/);
    });
  });

  describe("TTL", () => {
    it("hides expired records at once and removes them on the next sweep", async () => {
      let now = 1_000_000;
      const store = await openStore(tempDir(), () => now);
      const tickets = store.collection<string>("tickets", { encoding: "utf8", ttl: true });
      await tickets.put("short", "s", { ttlMs: 1000 });
      await tickets.put("long", "l", { ttlMs: 60_000 });
      await tickets.put("forever", "f");
      now += 1001;
      assert.equal(await tickets.get("short"), undefined);
      assert.equal(await tickets.get("long"), "l");
      assert.deepEqual((await toArray(tickets.entries())).map(([k]) => k), ["forever", "long"]);
      assert.equal(await store.sweepExpired(), 1);
      now += 60_000;
      assert.equal(await store.sweepExpired(), 1);
      assert.equal(await tickets.get("forever"), "f");
    });

    it("keeps a record rewritten with a later expiry when its old expiry passes", async () => {
      let now = 0;
      const store = await openStore(tempDir(), () => now);
      const leases = store.collection<number>("leases", { ttl: true });
      await leases.put("k", 1, { ttlMs: 100 });
      await leases.put("k", 2, { ttlMs: 10_000 });
      now = 500;
      assert.equal(await store.sweepExpired(), 0);
      assert.equal(await leases.get("k"), 2);
    });

    it("survives a restart with expiries intact", async () => {
      const dir = tempDir();
      let now = 0;
      const first = await NodeStore.open(dir, { log: testLogger(), sweepIntervalMs: 0, now: () => now });
      await first.collection<number>("c", { ttl: true }).put("k", 1, { ttlMs: 100 });
      await first.close();
      const second = await openStore(dir, () => now);
      assert.equal(await second.collection<number>("c", { ttl: true }).get("k"), 1);
      now = 200;
      assert.equal(await second.collection<number>("c", { ttl: true }).get("k"), undefined);
      assert.equal(await second.sweepExpired(), 1);
    });
  });

  describe("durability", () => {
    it("keeps every acknowledged write after the writing process is killed with SIGKILL", async function () {
      this.timeout(60_000);
      const dir = join(tempDir(), "store");
      const child = spawn(process.execPath, ["--import", "tsx", join(packageRoot(), "test", "fixtures", "store-writer.ts"), dir], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      let lastAck = -1;
      let buffered = "";
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      await new Promise<void>((resolve) => {
        child.stdout.on("data", (b: Buffer) => {
          buffered += b.toString();
          const lines = buffered.split("\n");
          buffered = lines.pop() ?? "";
          for (const l of lines) if (l.startsWith("ack ")) lastAck = Number(l.slice(4));
          if (lastAck >= 2000) {
            child.kill("SIGKILL");
            resolve();
          }
        });
      });
      await exited;
      const store = await openStore(dir);
      const records = store.collection<{ n: number }>("records");
      const index = store.collection<string>("index", { encoding: "utf8" });
      const keys = Array.from({ length: lastAck + 1 }, (_, n) => String(n).padStart(8, "0"));
      const got = await records.getMany(keys);
      const missing = keys.filter((_, i) => got[i]?.n !== i);
      assert.deepEqual(missing, [], `acknowledged records lost after kill -9 (last ack ${lastAck})`);
      // Batches are atomic: wherever the batch's record exists, its index entry does too.
      const idx = await index.getMany(keys);
      for (let n = 1; n <= lastAck; n += 2) assert.equal(idx[n], `batch-${n}`);
    });
  });
});
