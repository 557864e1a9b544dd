/**
 * The node's LevelDB store: one database per node (under its data directory), typed
 * collections on sub-levels, atomic batches across collections, and TTL records that a
 * sweeper removes once expired (reads never return an expired record, swept or not).
 *
 * Durability: a write resolves once LevelDB has appended it to its log, so an
 * acknowledged write survives `kill -9` of the process. `sync: true` (config
 * `store.syncWrites`) also fsyncs each write, to survive a machine crash.
 */
import { mkdirSync } from "node:fs";
import { Level } from "level";
import type { Logger } from "pino";

type Encoding = "json" | "buffer" | "utf8";
/** The part of a `level` sub-level the store uses (typed for string keys, Buffer values). */
interface Sub {
  get(key: string): Promise<Buffer | undefined>;
  getMany(keys: string[]): Promise<(Buffer | undefined)[]>;
  iterator(range: RangeOptions): AsyncIterable<[string, Buffer]>;
  keys(range: RangeOptions): AsyncIterable<string>;
}

type BatchOp = { type: "put"; sublevel: Sub; key: string; value: Buffer } | { type: "del"; sublevel: Sub; key: string };

/** How values of a collection are stored. */
export interface CollectionOptions {
  /** "json" (default) for plain objects, "buffer" for bytes, "utf8" for strings. */
  encoding?: Encoding;
  /** Records may carry an expiry (put with ttlMs / expiresAt). */
  ttl?: boolean;
}

/** Expiry of one write to a TTL collection. */
export interface PutOptions {
  /** Time to live from now, in ms. */
  ttlMs?: number;
  /** Absolute expiry, epoch ms. */
  expiresAt?: number;
}

/** Range and limit for iterating a collection (keys compare as strings). */
export interface RangeOptions {
  gt?: string;
  gte?: string;
  lt?: string;
  lte?: string;
  limit?: number;
  reverse?: boolean;
}

const TTL_INDEX = "__ttl";
const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const NO_EXPIRY = 0;

function encode(enc: Encoding, v: unknown): Buffer {
  if (enc === "buffer") return Buffer.isBuffer(v) ? v : Buffer.from(v as Uint8Array);
  if (enc === "utf8") return Buffer.from(v as string, "utf8");
  return Buffer.from(JSON.stringify(v), "utf8");
}

function decode<V>(enc: Encoding, b: Buffer): V {
  if (enc === "buffer") return b as V;
  if (enc === "utf8") return b.toString("utf8") as V;
  return JSON.parse(b.toString("utf8")) as V;
}

function ttlIndexKey(expiresAt: number, collection: string, key: string): string {
  return `${expiresAt.toString(36).padStart(11, "0")}!${collection}!${key}`;
}

/** A typed collection of records in the node store. */
export class Collection<V> {
  /** @internal */
  constructor(
    private readonly store: NodeStore,
    readonly name: string,
    /** @internal */ readonly sub: Sub,
    private readonly enc: Encoding,
    readonly ttl: boolean,
  ) {}

  /** @internal Stored bytes for a value (with the expiry header on TTL collections). */
  pack(value: V, expiresAt: number): Buffer {
    const body = encode(this.enc, value);
    if (!this.ttl) return body;
    const head = Buffer.allocUnsafe(8);
    head.writeDoubleBE(expiresAt, 0);
    return Buffer.concat([head, body]);
  }

  /** @internal Decodes stored bytes; undefined when expired at `now`. */
  unpack(raw: Buffer, now: number): V | undefined {
    if (!this.ttl) return decode<V>(this.enc, raw);
    const exp = raw.readDoubleBE(0);
    if (exp !== NO_EXPIRY && exp <= now) return undefined;
    return decode<V>(this.enc, raw.subarray(8));
  }

  /** @internal The expiry stored with a raw record (0 = none). */
  static expiryOf(raw: Buffer): number {
    return raw.readDoubleBE(0);
  }

  /** The record at `key`, or undefined when absent or expired. */
  async get(key: string): Promise<V | undefined> {
    const raw = await this.sub.get(key);
    return raw === undefined ? undefined : this.unpack(raw, this.store.now());
  }

  /** The records at `keys`, in order (undefined where absent or expired). */
  async getMany(keys: string[]): Promise<(V | undefined)[]> {
    const raws = await this.sub.getMany(keys);
    const now = this.store.now();
    return raws.map((r) => (r === undefined ? undefined : this.unpack(r, now)));
  }

  /** True when a live record exists at `key`. */
  async has(key: string): Promise<boolean> {
    return (await this.get(key)) !== undefined;
  }

  /** Writes one record (atomically with its expiry index entry). */
  async put(key: string, value: V, opts: PutOptions = {}): Promise<void> {
    await this.store.batch().put(this, key, value, opts).write();
  }

  /** Deletes one record. */
  async del(key: string): Promise<void> {
    await this.store.batch().del(this, key).write();
  }

  /** Live records in key order within the range. */
  async *entries(range: RangeOptions = {}): AsyncGenerator<[string, V]> {
    const now = this.store.now();
    for await (const [k, raw] of this.sub.iterator(range)) {
      const v = this.unpack(raw, now);
      if (v !== undefined) yield [k, v];
    }
  }

  /** Live records whose key starts with `prefix`. */
  prefixed(prefix: string, limit?: number): AsyncGenerator<[string, V]> {
    return this.entries({ gte: prefix, lt: prefix + "\uffff", ...(limit !== undefined ? { limit } : {}) });
  }

  /** Number of live records (walks the collection). */
  async count(): Promise<number> {
    let n = 0;
    for await (const _ of this.entries()) n++;
    return n;
  }
}

/** Writes to several collections applied all-or-nothing. */
export class StoreBatch {
  private readonly ops: BatchOp[] = [];

  /** @internal */
  constructor(private readonly store: NodeStore) {}

  /** Adds a put; on a TTL collection `opts` sets the expiry. */
  put<V>(col: Collection<V>, key: string, value: V, opts: PutOptions = {}): this {
    let exp = NO_EXPIRY;
    if (opts.expiresAt !== undefined) exp = opts.expiresAt;
    else if (opts.ttlMs !== undefined) exp = this.store.now() + opts.ttlMs;
    if (exp !== NO_EXPIRY && !col.ttl) throw new Error(`collection ${col.name} was not opened with ttl: true`);
    this.ops.push({ type: "put", sublevel: col.sub, key, value: col.pack(value, exp) });
    if (exp !== NO_EXPIRY) {
      this.ops.push({ type: "put", sublevel: this.store.ttlIndex, key: ttlIndexKey(exp, col.name, key), value: Buffer.alloc(0) });
    }
    return this;
  }

  /** Adds a delete. */
  del<V>(col: Collection<V>, key: string): this {
    this.ops.push({ type: "del", sublevel: col.sub, key });
    return this;
  }

  /** Number of operations queued. */
  get length(): number {
    return this.ops.length;
  }

  /** Applies every queued operation atomically. */
  async write(): Promise<void> {
    if (this.ops.length === 0) return;
    await this.store.write(this.ops);
  }
}

/** Options of NodeStore.open. */
export interface StoreOptions {
  log: Logger;
  /** How often expired records are swept, in ms; 0 disables the timer. Default 60 000. */
  sweepIntervalMs?: number;
  /** fsync every write (survives a machine crash, costs latency). Default false. */
  sync?: boolean;
  /** Clock, for tests. Default Date.now. */
  now?: () => number;
}

/** One node's LevelDB database. */
export class NodeStore {
  /** The underlying `level` database (values are Buffers; collections encode). */
  readonly db: Level<string, Buffer>;
  /** @internal */ readonly ttlIndex: Sub;
  readonly sync: boolean;
  readonly now: () => number;
  private readonly log: Logger;
  private readonly collections = new Map<string, Collection<unknown>>();
  private sweeper: NodeJS.Timeout | undefined;
  private sweeping: Promise<number> | undefined;

  private constructor(readonly location: string, opts: StoreOptions) {
    this.db = new Level<string, Buffer>(location, { keyEncoding: "utf8", valueEncoding: "buffer" });
    this.ttlIndex = this.sublevel(TTL_INDEX);
    this.sync = opts.sync ?? false;
    this.now = opts.now ?? Date.now;
    this.log = opts.log;
  }

  /** Opens (creating if needed) the database at `location` and starts the TTL sweeper. */
  static async open(location: string, opts: StoreOptions): Promise<NodeStore> {
    mkdirSync(location, { recursive: true });
    const store = new NodeStore(location, opts);
    await store.db.open();
    const every = opts.sweepIntervalMs ?? 60_000;
    if (every > 0) {
      store.sweeper = setInterval(() => {
        store.sweepExpired().catch((err: unknown) => store.log.warn({ err }, "TTL sweep failed"));
      }, every);
      store.sweeper.unref();
    }
    return store;
  }

  /** The typed collection `name` (the same object on every call). */
  collection<V>(name: string, opts: CollectionOptions = {}): Collection<V> {
    if (!NAME.test(name) || name === TTL_INDEX) throw new Error(`invalid collection name ${JSON.stringify(name)}`);
    const existing = this.collections.get(name);
    if (existing) return existing as Collection<V>;
    const sub = this.sublevel(name);
    const col = new Collection<V>(this, name, sub, opts.encoding ?? "json", opts.ttl ?? false);
    this.collections.set(name, col as Collection<unknown>);
    return col;
  }

  private sublevel(name: string): Sub {
    return this.db.sublevel<string, Buffer>(name, { keyEncoding: "utf8", valueEncoding: "buffer" }) as unknown as Sub;
  }

  /** @internal Applies operations atomically. */
  write(ops: BatchOp[]): Promise<void> {
    return this.db.batch(ops as never, { sync: this.sync });
  }

  /** A new atomic batch. */
  batch(): StoreBatch {
    return new StoreBatch(this);
  }

  /**
   * Deletes every record whose expiry has passed; returns how many. A record re-written
   * with a later expiry survives its older index entry.
   */
  sweepExpired(): Promise<number> {
    this.sweeping ??= this.sweepOnce().finally(() => {
      this.sweeping = undefined;
    });
    return this.sweeping;
  }

  private async sweepOnce(): Promise<number> {
    const now = this.now();
    const upTo = ttlIndexKey(now, "", "").slice(0, 11) + "\uffff";
    let removed = 0;
    let ops: BatchOp[] = [];
    for await (const indexKey of this.ttlIndex.keys({ lt: upTo })) {
      const [expStr, name, ...rest] = indexKey.split("!");
      const key = rest.join("!");
      const exp = parseInt(expStr ?? "", 36);
      if (!(exp <= now)) break;
      ops.push({ type: "del", sublevel: this.ttlIndex, key: indexKey });
      const col = name ? this.collections.get(name) : undefined;
      const sub = col?.sub ?? (name ? this.sublevel(name) : undefined);
      const raw = sub ? await sub.get(key) : undefined;
      if (sub && raw !== undefined && raw.length >= 8) {
        const stored = Collection.expiryOf(raw);
        if (stored !== NO_EXPIRY && stored <= now) {
          ops.push({ type: "del", sublevel: sub, key });
          removed++;
        }
      }
      if (ops.length >= 500) {
        await this.write(ops);
        ops = [];
      }
    }
    if (ops.length) await this.write(ops);
    if (removed) this.log.debug({ removed }, "expired records removed");
    return removed;
  }

  /** Stops the sweeper and closes the database (waits for a sweep in progress). */
  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    await this.sweeping?.catch(() => undefined);
    await this.db.close();
  }
}
