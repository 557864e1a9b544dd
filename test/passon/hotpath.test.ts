import assert from "node:assert/strict";
import wabtInit from "wabt";
import { NodeStore } from "../../servers/runtime/store.js";
import { DataCache, GroupCommit, IdSource, Ledger, MasterData, Outbox, type StoredRecord } from "../../servers/passon/ledger.js";
import { Sandbox } from "../../servers/passon/sandbox.js";
import { onCleanup, tempDir, testLogger } from "../helpers/nodes.js";

async function openStore(): Promise<NodeStore> {
  const store = await NodeStore.open(tempDir(), { log: testLogger(), sweepIntervalMs: 0 });
  onCleanup(() => store.close());
  return store;
}

async function wat(text: string): Promise<WebAssembly.Module> {
  const wabt = await wabtInit();
  const mod = wabt.parseWat("t.wat", text, {});
  const { buffer } = mod.toBinary({});
  mod.destroy();
  return new WebAssembly.Module(buffer);
}

/** Returns the 16 bytes at 4096 as they were when the call began, then scribbles over them. */
const PEEK_AND_SCRIBBLE = `(module
  (import "env" "memory" (memory 1))
  (import "env" "output" (func $output (param i32 i32)))
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "handle") (param i32 i32) (result i32)
    (call $output (i32.const 4096) (i32.const 16))
    (i64.store (i32.const 4096) (i64.const -1))
    (i64.store (i32.const 4104) (i64.const -1))
    (i32.const 0)))`;

function record(id: { id: string }, n = 1): StoredRecord {
  return { recordId: id.id, user: "u", app: "echo", version: 1, nodeId: "n", calls: n, execMicros: 1, bytesIn: 1, bytesOut: 1, at: 0 };
}

describe("Pass-on hot path", () => {
  describe("Sandbox.run", () => {
    it("gives every invocation zeroed memory, whatever the previous one left in it", async () => {
      const sandbox = new Sandbox({ workers: 1, maxQueue: 100, log: testLogger() });
      onCleanup(() => sandbox.close());
      const module = await wat(PEEK_AND_SCRIBBLE);
      for (let i = 0; i < 5; i++) {
        const r = await sandbox.run({ module, minPages: 1, maxPages: 4, entry: "handle", request: new Uint8Array(0), data: new Map() }, 5000);
        assert.equal(r.kind, "ok");
        assert.deepEqual([...(r as { response: Uint8Array }).response], new Array(16).fill(0), `call ${i} saw an earlier call's bytes`);
      }
    });
  });

  describe("Sandbox.run (views)", () => {
    it("hands the app exactly the bytes of a request and data values that are views on larger buffers", async () => {
      const sandbox = new Sandbox({ workers: 1, maxQueue: 100, log: testLogger() });
      onCleanup(() => sandbox.close());
      const module = await wat(`(module
        (import "env" "memory" (memory 1))
        (import "env" "output" (func $output (param i32 i32)))
        (import "env" "data_get" (func $data_get (param i32 i32 i32 i32) (result i32)))
        (data (i32.const 16) "k")
        (func (export "alloc") (param i32) (result i32) (i32.const 1024))
        (func (export "handle") (param $p i32) (param $n i32) (result i32)
          (local $v i32)
          (local.set $v (call $data_get (i32.const 16) (i32.const 1) (i32.add (i32.const 1024) (local.get $n)) (i32.const 64)))
          (call $output (i32.const 1024) (i32.add (local.get $n) (local.get $v)))
          (i32.const 0)))`);
      const big = Buffer.from("xxxxhello-worldyyyyvaluezzzz");
      const request = big.subarray(4, 15);
      const value = big.subarray(19, 24);
      const r = await sandbox.run({ module, minPages: 1, maxPages: 4, entry: "handle", request, data: new Map([["k", value]]) }, 5000);
      assert.equal(r.kind, "ok");
      assert.equal(Buffer.from((r as { response: Uint8Array }).response).toString(), "hello-worldvalue");
    });
  });

  describe("Sandbox.run (modules)", () => {
    it("runs the right module when a worker holds many (each sent once) and after a worker was replaced", async () => {
      const sandbox = new Sandbox({ workers: 1, maxQueue: 100, log: testLogger() });
      onCleanup(() => sandbox.close());
      const answering = async (n: number): Promise<WebAssembly.Module> =>
        wat(`(module
          (import "env" "memory" (memory 1))
          (import "env" "output" (func $output (param i32 i32)))
          (data (i32.const 16) "${n.toString().padStart(3, "0")}")
          (func (export "alloc") (param i32) (result i32) (i32.const 1024))
          (func (export "handle") (param i32 i32) (result i32) (call $output (i32.const 16) (i32.const 3)) (i32.const 0)))`);
      const modules = await Promise.all(Array.from({ length: 70 }, (_, i) => answering(i)));
      const run = async (i: number): Promise<string> => {
        const r = await sandbox.run({ module: modules[i] as WebAssembly.Module, minPages: 1, maxPages: 1, entry: "handle", request: new Uint8Array(0), data: new Map() }, 5000);
        assert.equal(r.kind, "ok", JSON.stringify(r));
        return Buffer.from((r as { response: Uint8Array }).response).toString();
      };
      // More modules than a worker keeps: the oldest are dropped and sent again when needed.
      for (const i of [0, 1, 2, 69, 0, ...Array.from({ length: 70 }, (_, k) => k), 0, 1, 35]) assert.equal(await run(i), i.toString().padStart(3, "0"));
      // A job past its time limit replaces the worker; the new one gets modules afresh.
      const spin = await wat(`(module (import "env" "memory" (memory 1))
        (func (export "alloc") (param i32) (result i32) (i32.const 1024))
        (func (export "handle") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 0)))`);
      const stuck = await sandbox.run({ module: spin, minPages: 1, maxPages: 1, entry: "handle", request: new Uint8Array(0), data: new Map() }, 100);
      assert.equal(stuck.kind, "timeout");
      assert.equal(await run(5), "005");
    });
  });

  describe("GroupCommit.commit", () => {
    it("resolves each caller once its operations are in the store, writing concurrent callers together", async () => {
      const store = await openStore();
      const col = store.collection<number>("g");
      const group = new GroupCommit(store);
      let writes = 0;
      const write = store.write.bind(store);
      store.write = (ops) => {
        writes++;
        return write(ops);
      };
      await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          await group.commit((b) => b.put(col, `k${i}`, i).put(col, `j${i}`, i + 100));
          assert.equal(await col.get(`k${i}`), i);
          assert.equal(await col.get(`j${i}`), i + 100);
        }),
      );
      assert.ok(writes < 50, `${writes} writes for 50 concurrent commits`);
    });

    it("rejects every caller whose operations were in a failed write, and keeps working", async () => {
      const store = await openStore();
      const col = store.collection<number>("g");
      const group = new GroupCommit(store);
      const write = store.write.bind(store);
      let fail = true;
      store.write = (ops) => (fail ? Promise.reject(new Error("disk full")) : write(ops));
      const results = await Promise.allSettled([group.commit((b) => b.put(col, "a", 1)), group.commit((b) => b.put(col, "b", 2))]);
      assert.deepEqual(
        results.map((r) => r.status),
        ["rejected", "rejected"],
      );
      fail = false;
      await group.commit((b) => b.put(col, "c", 3));
      assert.equal(await col.get("a"), undefined);
      assert.equal(await col.get("c"), 3);
    });
  });

  describe("Ledger.ingestOwn", () => {
    it("counts each of its own records once, concurrently and alongside records from children, also after a restart", async () => {
      const dir = tempDir();
      const store = await NodeStore.open(dir, { log: testLogger(), sweepIntervalMs: 0 });
      const ids = await IdSource.open(store, "n");
      const ledger = new Ledger(store);
      const child = Array.from({ length: 5 }, (_, i) => ({ ...record({ id: `c:1:${i}` }), nodeId: "n" }));
      await Promise.all([
        ...Array.from({ length: 30 }, () => ledger.ingestOwn(record(ids.next()))),
        ledger.ingest(child),
        ledger.ingest(child.slice(0, 3)),
        ...Array.from({ length: 30 }, () => ledger.ingestOwn(record(ids.next()))),
      ]);
      const calls = async (l: Ledger): Promise<bigint> => (await l.billing("u")).reduce((t, line) => t + line.calls, 0n);
      assert.equal(await calls(ledger), 65n);
      await store.close();
      const again = await openStore2(dir);
      const reopened = new Ledger(again);
      assert.equal(await calls(reopened), 65n);
      await reopened.ingest(child);
      await reopened.ingestOwn(record({ id: "n:2:1" }));
      assert.equal(await calls(reopened), 66n);
    });
  });

  describe("MasterData.values", () => {
    it("sees every applied change (the in-memory copy follows the store), also after a restart", async () => {
      const dir = tempDir();
      const store = await NodeStore.open(dir, { log: testLogger(), sweepIntervalMs: 0 });
      const master = new MasterData(store, await IdSource.open(store, "c"));
      const b64 = (s: string): string => Buffer.from(s).toString("base64");
      const text = (m: Map<string, Uint8Array>): Record<string, string> => Object.fromEntries([...m].map(([k, v]) => [k, Buffer.from(v).toString()]));
      await master.apply([{ diffId: "d1", user: "u", key: "a", value: b64("1"), baseVersion: 0, writer: "l1" }]);
      const first = await master.values("u");
      assert.deepEqual(text(first), { a: "1" });
      // Changes after the user was read (and mirrored): a new key, a change, a conflict (kept out), a delete.
      await master.apply([
        { diffId: "d2", user: "u", key: "b", value: b64("2"), baseVersion: 0, writer: "l1" },
        { diffId: "d3", user: "u", key: "a", value: b64("1b"), baseVersion: 1, writer: "l1" },
        { diffId: "d4", user: "u", key: "a", value: b64("lost"), baseVersion: 1, writer: "l2" },
        { diffId: "d5", user: "v", key: "x", value: b64("other user"), baseVersion: 0, writer: "l1" },
      ]);
      assert.deepEqual(text(await master.values("u")), { a: "1b", b: "2" });
      assert.deepEqual(text(first), { a: "1" }, "a map already handed out does not change under its holder");
      await master.apply([{ diffId: "d6", user: "u", key: "b", value: null, baseVersion: 1, writer: "l1" }]);
      assert.deepEqual(text(await master.values("u")), { a: "1b" });
      assert.deepEqual(text(await master.values("v")), { x: "other user" });
      await store.close();
      const again = await openStore2(dir);
      const reopened = new MasterData(again, await IdSource.open(again, "c"));
      assert.deepEqual(text(await reopened.values("u")), { a: "1b" });
    });
  });

  describe("Outbox.pendingRecords", () => {
    it("lists committed records until they are acknowledged, also after a restart", async () => {
      const dir = tempDir();
      const store = await NodeStore.open(dir, { log: testLogger(), sweepIntervalMs: 0 });
      const ids = await IdSource.open(store, "n");
      const outbox = new Outbox(store);
      await outbox.open();
      const added: StoredRecord[] = [];
      for (let i = 0; i < 5; i++) {
        const id = ids.next();
        const r = record(id, i + 1);
        const batch = store.batch();
        outbox.addRecord(batch, id.key, r);
        await batch.write();
        outbox.committed(id.key, r);
        added.push(r);
      }
      assert.deepEqual(await outbox.pendingRecords(3), added.slice(0, 3));
      await outbox.ackRecords([added[0]?.recordId as string, added[2]?.recordId as string]);
      assert.deepEqual(
        (await outbox.pendingRecords(10)).map((r) => r.calls),
        [2, 4, 5],
      );
      await store.close();
      const again = await openStore2(dir);
      const reopened = new Outbox(again);
      await reopened.open();
      assert.deepEqual(
        (await reopened.pendingRecords(10)).map((r) => r.calls),
        [2, 4, 5],
      );
    });
  });

  describe("DataCache.load", () => {
    it("sees an app's committed writes and the store again after invalidate", async () => {
      const store = await openStore();
      const cache = new DataCache(store);
      assert.equal((await cache.load("u")).values.size, 0);
      const batch = store.batch();
      cache.write(batch, "u", "k", Buffer.from("v1").toString("base64"), 3);
      await batch.write();
      cache.wrote("u", [{ key: "k", value: Buffer.from("v1").toString("base64"), baseVersion: 3 }]);
      const seen = await cache.load("u");
      assert.equal(Buffer.from(seen.values.get("k") as Uint8Array).toString(), "v1");
      assert.equal(seen.versions.get("k"), 3);
      // A change behind the mirror's back (as the master's answer to a diff is applied).
      await store.batch().put(cache.cache, "u\u0000k", { v: Buffer.from("v2").toString("base64"), ver: 4 }).write();
      cache.invalidate("u");
      const fresh = await cache.load("u");
      assert.equal(Buffer.from(fresh.values.get("k") as Uint8Array).toString(), "v2");
      assert.equal(fresh.versions.get("k"), 4);
      // The earlier view was not changed under its holder.
      assert.equal(Buffer.from(seen.values.get("k") as Uint8Array).toString(), "v1");
    });
  });
});

async function openStore2(dir: string): Promise<NodeStore> {
  const store = await NodeStore.open(dir, { log: testLogger(), sweepIntervalMs: 0 });
  onCleanup(() => store.close());
  return store;
}
