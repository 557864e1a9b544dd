/**
 * A content server's catalog: items stored in the node's LevelDB in fixed-size chunks.
 * A publish writes its chunks under a fresh version and then switches the catalog record
 * in one write, so readers see either the old or the new item, never a mix; the chunks of
 * a replaced or abandoned version are deleted afterwards (and swept at start after a crash).
 */
import { createHash, randomUUID } from "node:crypto";
import type { Collection, NodeStore } from "../runtime/store.js";
import type { CatalogItem } from "../../gen/switchyard/reception/v1/content_server.js";
import { invalidField } from "./errors.js";

/** Item ids: letters, digits, '.', '_', '-'; 1..128; not "." or "..". */
export const ITEM_ID = /^(?!\.{1,2}$)[A-Za-z0-9._-]{1,128}$/;

/** The stored record of one item. */
export interface ItemRecord {
  itemId: string;
  sizeBytes: number;
  sha256: string;
  contentType: string;
  publishedAt: number;
  version: string;
  chunkBytes: number;
}

/** What a publisher declares before sending bytes. */
export interface PublishSpec {
  itemId: string;
  contentType: string;
  sizeBytes: number;
  /** Expected SHA-256 (empty: not checked). */
  sha256: Uint8Array;
}

/** Checks an item id; throws INVALID_ARGUMENT naming `field`. */
export function checkItemId(id: string, field = "item_id"): void {
  if (!ITEM_ID.test(id)) {
    throw invalidField(field, "must be 1..128 characters of letters, digits, '.', '_' or '-' (not '.' or '..')", "INVALID_ITEM_ID");
  }
}

const pad = (n: number): string => n.toString().padStart(10, "0");

/** The catalog of one content server. */
export class Catalog {
  private readonly items: Collection<ItemRecord>;
  private readonly blobs: Collection<Buffer>;
  /** Item sizes in memory (loaded by `load()`, kept by `publish()`), for the notice path. */
  private readonly sizes = new Map<string, number>();

  constructor(
    private readonly store: NodeStore,
    /** Chunk size of new items, in bytes. */
    readonly chunkBytes: number,
    /** Largest item accepted, in bytes. */
    readonly maxItemBytes: number,
  ) {
    this.items = store.collection<ItemRecord>("catalog");
    this.blobs = store.collection<Buffer>("catalog-blobs", { encoding: "buffer" });
  }

  /** The item's record, or undefined. */
  get(itemId: string): Promise<ItemRecord | undefined> {
    return this.items.get(itemId);
  }

  /** Loads the item sizes into memory; call once at start. */
  async load(): Promise<void> {
    for await (const [k, v] of this.items.entries()) this.sizes.set(k, v.sizeBytes);
  }

  /** The item's size from memory (no store read), or undefined when unknown. */
  sizeOf(itemId: string): number | undefined {
    return this.sizes.get(itemId);
  }

  /** Every item id, sorted. */
  async ids(): Promise<string[]> {
    const out: string[] = [];
    for await (const [k] of this.items.entries()) out.push(k);
    return out;
  }

  /** Up to `limit` items after `after` (exclusive), sorted by id. */
  async page(after: string, limit: number): Promise<ItemRecord[]> {
    const out: ItemRecord[] = [];
    for await (const [, v] of this.items.entries(after ? { gt: after, limit } : { limit })) out.push(v);
    return out;
  }

  /**
   * Stores `data` as item `spec.itemId`. Validates size and checksum before the item
   * becomes visible; on any failure the partial chunks are deleted.
   */
  async publish(spec: PublishSpec, data: AsyncIterable<Uint8Array>, now = Date.now()): Promise<ItemRecord> {
    checkItemId(spec.itemId, "header.item_id");
    if (spec.sizeBytes > this.maxItemBytes) {
      throw invalidField("header.size_bytes", `at most ${this.maxItemBytes} bytes, got ${spec.sizeBytes}`, "ITEM_TOO_LARGE");
    }
    if (spec.sha256.length !== 0 && spec.sha256.length !== 32) {
      throw invalidField("header.sha256", "must be 32 bytes when set", "CHECKSUM_MISMATCH");
    }
    const version = randomUUID();
    const prefix = `${spec.itemId}@${version}/`;
    const hash = createHash("sha256");
    let index = 0;
    let total = 0;
    let pending: Buffer[] = [];
    let pendingLen = 0;
    const flush = async (all: boolean): Promise<void> => {
      let buf = Buffer.concat(pending, pendingLen);
      while (buf.length >= this.chunkBytes || (all && buf.length > 0)) {
        const n = Math.min(this.chunkBytes, buf.length);
        await this.blobs.put(prefix + pad(index++), Buffer.from(buf.subarray(0, n)));
        buf = buf.subarray(n);
      }
      pending = buf.length ? [buf] : [];
      pendingLen = buf.length;
    };
    try {
      for await (const chunk of data) {
        total += chunk.length;
        if (total > spec.sizeBytes) {
          throw invalidField("chunk", `more bytes than the declared size_bytes ${spec.sizeBytes}`, "SIZE_MISMATCH");
        }
        hash.update(chunk);
        pending.push(Buffer.from(chunk));
        pendingLen += chunk.length;
        if (pendingLen >= this.chunkBytes) await flush(false);
      }
      await flush(true);
      if (total !== spec.sizeBytes) {
        throw invalidField("header.size_bytes", `declared ${spec.sizeBytes} bytes, received ${total}`, "SIZE_MISMATCH");
      }
      const digest = hash.digest();
      if (spec.sha256.length && !digest.equals(Buffer.from(spec.sha256))) {
        throw invalidField("header.sha256", "does not match the SHA-256 of the bytes received", "CHECKSUM_MISMATCH");
      }
      const old = await this.items.get(spec.itemId);
      const rec: ItemRecord = {
        itemId: spec.itemId,
        sizeBytes: total,
        sha256: digest.toString("hex"),
        contentType: spec.contentType,
        publishedAt: now,
        version,
        chunkBytes: this.chunkBytes,
      };
      await this.items.put(spec.itemId, rec);
      this.sizes.set(spec.itemId, total);
      if (old) await this.deleteChunks(`${spec.itemId}@${old.version}/`);
      return rec;
    } catch (err) {
      await this.deleteChunks(prefix).catch(() => undefined);
      throw err;
    }
  }

  /** The item's bytes from `offset`, chunk by chunk. */
  async *read(rec: ItemRecord, offset = 0): AsyncGenerator<Buffer> {
    const prefix = `${rec.itemId}@${rec.version}/`;
    const first = Math.floor(offset / rec.chunkBytes);
    let skip = offset - first * rec.chunkBytes;
    for await (const [, chunk] of this.blobs.entries({ gte: prefix + pad(first), lt: prefix + "\uffff" })) {
      yield skip ? chunk.subarray(skip) : chunk;
      skip = 0;
    }
  }

  /** Deletes chunks that belong to no catalog record (left by a crash mid-publish). */
  async sweepOrphans(): Promise<number> {
    const live = new Set<string>();
    for await (const [, v] of this.items.entries()) live.add(`${v.itemId}@${v.version}`);
    let n = 0;
    let batch = this.store.batch();
    let size = 0;
    for await (const [k] of this.blobs.entries()) {
      if (live.has(k.slice(0, k.lastIndexOf("/")))) continue;
      batch.del(this.blobs, k);
      n++;
      if (++size >= 500) {
        await batch.write();
        batch = this.store.batch();
        size = 0;
      }
    }
    if (size) await batch.write();
    return n;
  }

  private async deleteChunks(prefix: string): Promise<void> {
    let batch = this.store.batch();
    let size = 0;
    for await (const [k] of this.blobs.prefixed(prefix)) {
      batch.del(this.blobs, k);
      if (++size >= 500) {
        await batch.write();
        batch = this.store.batch();
        size = 0;
      }
    }
    if (size) await batch.write();
  }
}

/** The wire form of an item record. */
export function toCatalogItem(r: ItemRecord): CatalogItem {
  return {
    itemId: r.itemId,
    sizeBytes: BigInt(r.sizeBytes),
    sha256: Buffer.from(r.sha256, "hex"),
    contentType: r.contentType,
    publishedAt: new Date(r.publishedAt),
  };
}
