import assert from "node:assert/strict";
import { readdirSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { NodeStore } from "../../servers/runtime/store.js";
import { PrintStore } from "../../servers/print/store.js";
import { ColorMode } from "../../gen/switchyard/print/v1/print_job.js";
import { onCleanup, tempDir, testLogger } from "../helpers/nodes.js";

async function openStore(now: () => number, sessionTtlMs = 60_000): Promise<PrintStore> {
  const db = await NodeStore.open(tempDir(), { log: testLogger(), sweepIntervalMs: 0 });
  onCleanup(() => db.close());
  return new PrintStore(db, { tokenTtlMs: 10_000, maxDocumentBytes: 1 << 20, sessionTtlMs, now, pagesDir: tempDir() });
}

async function* chunks(...b: Buffer[]): AsyncGenerator<Buffer> {
  yield* b;
}

describe("PrintStore", () => {
  describe("sweep", () => {
    it("removes an abandoned session with its token, document, result and pages, and keeps a live one", async () => {
      let t = 1_000_000;
      const s = await openStore(() => t, 60_000);
      await s.createSession("old/p", { jobId: "old", printerId: "p" }, "tok-old", t);
      await s.putDocument("old/p", chunks(Buffer.from("%PDF-1.4 a"), Buffer.from("b")));
      await s.createResult("old/p", "res-old", 2, ColorMode.COLOR);
      await s.putPage("res-old", 1, Buffer.from([0xff, 0xd8]), 10, 10, 72);
      assert.equal((await s.counts()).pages, 1);
      t += 50_000;
      await s.createSession("new/p", { jobId: "new", printerId: "p" }, "tok-new", t);
      t += 20_000;
      assert.equal(await s.sweep(), 1);
      assert.deepEqual(await s.counts(), { sessions: 1, tokens: 1, documentChunks: 0, results: 0, pages: 0 });
      assert.equal((s as unknown as { writing: Map<string, unknown> }).writing.size, 0);
      await assert.rejects(s.getSession("old/p"), /no session/);
    });
  });
  describe("getMetafile", () => {
    it("refuses a wrong token and an expired one, and serves the growing metafile to the right one", async () => {
      let t = 5_000_000;
      const s = await openStore(() => t);
      await s.createSession("j/p", { jobId: "j", printerId: "p" }, "right", t);
      await s.createResult("j/p", "r1", 2, ColorMode.COLOR);
      await s.putPage("r1", 1, Buffer.from([1, 2, 3]), 5, 6, 150);
      await assert.rejects(s.putPage("r1", 3, Buffer.from([1]), 1, 1, 150), /must be between 1 and 2/);
      await s.createResult("j/p", "r1", 2, ColorMode.COLOR).then(() => assert.fail("second result"), (e: Error & { reason?: string }) => assert.equal(e.reason, "RESULT_EXISTS"));
      const m = await s.getMetafile("r1", "right");
      assert.equal(m.pages.length, 1);
      assert.equal(m.complete, false);
      await assert.rejects(s.getMetafile("r1", "wrong"), (e: Error & { reason?: string }) => e.reason === "TOKEN_INVALID");
      await assert.rejects(s.getMetafile("nope", "right"), (e: Error & { reason?: string }) => e.reason === "RESULT_NOT_FOUND");
      t += 10_000;
      await assert.rejects(s.getMetafile("r1", "right"), (e: Error & { reason?: string }) => e.reason === "TOKEN_EXPIRED");
    });
  });

  describe("getPage", () => {
    it("serves each page's bytes from its file and deletes the files with the session", async () => {
      const t = 7_000_000;
      const dir = tempDir();
      const db = await NodeStore.open(tempDir(), { log: testLogger(), sweepIntervalMs: 0 });
      onCleanup(() => db.close());
      const s = new PrintStore(db, { tokenTtlMs: 10_000, maxDocumentBytes: 1 << 20, sessionTtlMs: 60_000, now: () => t, pagesDir: dir });
      await s.createSession("g/p", { jobId: "g", printerId: "p" }, "tok", t);
      await s.createResult("g/p", "rg", 2, ColorMode.COLOR);
      const one = Buffer.from([0xff, 0xd8, 1, 2]);
      const two = Buffer.alloc(300_000, 7);
      await s.putPage("rg", 1, one, 1, 1, 72);
      await s.putPage("rg", 2, two, 1, 1, 72);
      assert.deepEqual((await s.getPage("rg", "tok", 1)).jpeg, one);
      assert.deepEqual((await s.getPage("rg", "tok", 2)).jpeg, two);
      await assert.rejects(s.getPage("rg", "tok", 3), (e: Error & { reason?: string }) => e.reason === "PAGE_NOT_FOUND");
      assert.equal(readdirSync(join(dir, "rg")).length, 2);
      assert.equal(await s.deleteSession("g/p"), 5);
      assert.deepEqual(readdirSync(dir), []);
      // Nor in memory: the record cached while the result was written is gone with it.
      assert.equal((s as unknown as { writing: Map<string, unknown> }).writing.size, 0);
      assert.deepEqual(await s.counts(), { sessions: 0, tokens: 0, documentChunks: 0, results: 0, pages: 0 });
    });
  });

  describe("putPage with a spool file", () => {
    it("moves the named file into the result, owns it from then on, and refuses what it cannot take", async () => {
      const t = 9_000_000;
      const pages = tempDir();
      const spool = tempDir();
      const db = await NodeStore.open(tempDir(), { log: testLogger(), sweepIntervalMs: 0 });
      onCleanup(() => db.close());
      const s = new PrintStore(db, { tokenTtlMs: 10_000, maxDocumentBytes: 1 << 20, sessionTtlMs: 60_000, now: () => t, pagesDir: pages, spoolDir: spool });
      await s.createSession("s/p", { jobId: "s", printerId: "p" }, "tok", t);
      await s.createResult("s/p", "rs", 2, ColorMode.COLOR);
      const one = Buffer.alloc(200_000, 3);
      writeFileSync(join(spool, "rs-1-a.jpg"), one);
      const entry = await s.putPage("rs", 1, Buffer.alloc(0), 4, 5, 150, "rs-1-a.jpg");
      assert.equal(entry.sizeBytes, 200_000n);
      assert.deepEqual(readdirSync(spool), []);
      assert.deepEqual((await s.getPage("rs", "tok", 1)).jpeg, one);
      // A retried PutPage of the page last stored: the new copy is dropped, not kept.
      writeFileSync(join(spool, "rs-1-b.jpg"), one);
      assert.deepEqual(await s.putPage("rs", 1, Buffer.alloc(0), 4, 5, 150, "rs-1-b.jpg"), entry);
      assert.deepEqual(readdirSync(spool), []);
      const reason = (e: Error & { reason?: string; fieldViolations?: { field: string }[] }): string => e.reason ?? "";
      await assert.rejects(s.putPage("rs", 2, Buffer.alloc(0), 4, 5, 150, "../rs-2.jpg"), /spool_file|letters/);
      await assert.rejects(s.putPage("rs", 2, Buffer.alloc(0), 4, 5, 150, "rs-2-missing.jpg"), /no such file/);
      writeFileSync(join(spool, "rs-2-empty.jpg"), "");
      await assert.rejects(s.putPage("rs", 2, Buffer.alloc(0), 4, 5, 150, "rs-2-empty.jpg"), /empty/);
      // Files waiting in the spool count as pages; orphans (a worker died before PutPage) are swept.
      assert.equal((await s.counts()).pages, 2);
      utimesSync(join(spool, "rs-2-empty.jpg"), new Date(Date.now() - 3_600_000), new Date(Date.now() - 3_600_000));
      await s.sweep();
      assert.equal((await s.counts()).pages, 1);
      await s.deleteSession("s/p");
      assert.deepEqual(await s.counts(), { sessions: 0, tokens: 0, documentChunks: 0, results: 0, pages: 0 });

      const plain = await openStore(() => t);
      await plain.createSession("n/p", { jobId: "n", printerId: "p" }, "tok", t);
      await plain.createResult("n/p", "rn", 1, ColorMode.COLOR);
      await assert.rejects(plain.putPage("rn", 1, Buffer.alloc(0), 4, 5, 150, "rn-1-a.jpg"), (e: Error & { reason?: string }) => reason(e) === "SPOOL_NOT_CONFIGURED");
    });
  });
  describe("watchMetafile", () => {
    it("sees every change made while it reads the record: each watch ends with the finished metafile", async () => {
      const t = 9_000_000;
      const s = await openStore(() => t);
      // A change that lands between the watch's read and its wait for the next change
      // must still wake it; otherwise the watch (and the printer following it) waits forever.
      const n = 300;
      const watches: Promise<boolean>[] = [];
      for (let i = 0; i < n; i++) {
        await s.createSession(`w${i}/p`, { jobId: `w${i}`, printerId: "p" }, "tok", t);
        await s.createResult(`w${i}/p`, `rw${i}`, 1, ColorMode.COLOR);
        await s.putPage(`rw${i}`, 1, Buffer.from([0xff, 0xd8]), 1, 1, 72);
      }
      const stop = new AbortController();
      for (let i = 0; i < n; i++) {
        const watch = (async (): Promise<boolean> => {
          let last = false;
          for await (const m of s.watchMetafile(`rw${i}`, "tok", stop.signal)) last = m.complete;
          return last;
        })();
        // Finish each result a little later each time, sweeping the race window.
        const finish = i % 3 === 0 ? Promise.resolve() : new Promise<void>((r) => (i % 3 === 1 ? setImmediate(r) : queueMicrotask(r)));
        watches.push(watch);
        await finish.then(() => s.finishResult(`rw${i}`, false));
      }
      const timer = setTimeout(() => stop.abort(), 5000);
      const ended = await Promise.all(watches);
      clearTimeout(timer);
      assert.equal(ended.filter((complete) => !complete).length, 0, "watches that missed the finish and waited until aborted");
    });
  });
});
