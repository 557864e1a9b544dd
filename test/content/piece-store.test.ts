import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { sha256Hex } from "../../clients/content/crypto.js";
import { NodeStore } from "../../servers/runtime/store.js";
import { ChunkPool, PieceStore } from "../../servers/content/piece-store.js";
import { onCleanup, tempDir, testLogger } from "../helpers/nodes.js";
import { testBytes } from "./cluster.js";

/** A piece's stored bytes as readResponses yields them. */
async function read(store: PieceStore, id: string, size: number, chunk = 4096): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const m of store.readResponses(id, chunk, size)) parts.push(Buffer.from(m.data));
  return Buffer.concat(parts);
}

const openFds = (): number => readdirSync("/proc/self/fd").length;

describe("PieceStore", () => {
  async function openPieces(): Promise<PieceStore> {
    const dir = tempDir();
    const db = await NodeStore.open(join(dir, "store"), { log: testLogger(), sweepIntervalMs: 0 });
    const pieces = await PieceStore.open(join(dir, "pieces"), db, 1 << 30);
    onCleanup(async () => {
      pieces.closeHandles();
      await db.close();
    });
    return pieces;
  }

  it("serves many pieces concurrently and repeatedly with a bounded number of open files", async () => {
    const pieces = await openPieces();
    const data = new Map<string, Buffer>();
    for (let i = 0; i < 300; i++) {
      const b = testBytes(10_000 + i);
      const id = sha256Hex(b);
      await pieces.put(id, b);
      data.set(id, b);
    }
    const before = openFds();
    for (let round = 0; round < 2; round++) {
      const got = await Promise.all([...data].map(async ([id, b]) => (await read(pieces, id, b.length)).equals(b)));
      assert.ok(got.every(Boolean), `round ${round}`);
    }
    // Idle handles beyond the cache's bound (128) were closed.
    assert.ok(openFds() - before <= 130, `${openFds() - before} more open files`);
  });

  it("finishes a read of a piece deleted meanwhile, and then reports it gone", async () => {
    const pieces = await openPieces();
    const b = testBytes(64 * 1024);
    const id = sha256Hex(b);
    await pieces.put(id, b);
    assert.ok((await read(pieces, id, b.length)).equals(b)); // its handle is now kept open
    const it = pieces.readResponses(id, 4096, b.length);
    const first = await it.next();
    assert.equal(await pieces.delete(id), true);
    const parts = [Buffer.from((first.value as { data: Uint8Array }).data)];
    for (let r = await it.next(); !r.done; r = await it.next()) parts.push(Buffer.from(r.value.data));
    assert.ok(Buffer.concat(parts).equals(b));
    assert.equal(await pieces.get(id), undefined);
    await assert.rejects(read(pieces, id, b.length), /ENOENT/);
    // Stored again: read from the new file.
    assert.equal(await pieces.put(id, b), true);
    assert.ok((await read(pieces, id, b.length)).equals(b));
  });
});

describe("ChunkPool", () => {
  it("reuses as many buffers as were in use at once, up to its limit, and drops them once idle", async () => {
    const pool = new ChunkPool(1024, 4 * 1024, 100);
    const taken = Array.from({ length: 6 }, () => pool.take());
    for (const b of taken) pool.give(b);
    assert.equal(pool.size, 4, "at most keepBytes / chunkBytes");
    const again = Array.from({ length: 4 }, () => pool.take());
    assert.ok(again.every((b) => taken.includes(b)), "the same buffers come back");
    pool.give(Buffer.alloc(10));
    assert.equal(pool.size, 0, "a buffer of another size is not kept");
    for (const b of again) pool.give(b);
    await new Promise((r) => setTimeout(r, 250));
    assert.equal(pool.size, 0);
  });
});
