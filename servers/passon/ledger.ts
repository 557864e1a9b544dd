/**
 * Durable bookkeeping of a pass-on node:
 * - Ids: "<node>:<boot epoch>:<counter>", unique across restarts without a write per id.
 * - Outbox (locals): usage records and data diffs waiting for the parent's ack.
 * - Ledger (centers): usage aggregated per user/app/serving node, each record counted
 *   exactly once (a record id already seen is acknowledged and skipped).
 * - Master data (centers) with the conflict rule, and the data cache (locals).
 */
import type { Collection, NodeStore, StoreBatch } from "../runtime/store.js";
import type { BillingLine, DataDiff, DataEntry, UsageRecord } from "../../gen/switchyard/passon/v1/app.js";
import { DataEntry as DataEntryCodec, DiffOutcome } from "../../gen/switchyard/passon/v1/app.js";

/** How long a center remembers counted record / applied diff ids (duplicates older than this would count again). */
export const SEEN_TTL_MS = 30 * 24 * 3600_000;

/** Allocates unique ids for this boot of the node. */
export class IdSource {
  private counter = 0;
  private constructor(
    readonly nodeId: string,
    readonly epoch: number,
  ) {}

  /** Bumps and persists the boot epoch. */
  static async open(store: NodeStore, nodeId: string): Promise<IdSource> {
    const meta = store.collection<number>("passon-meta");
    const epoch = ((await meta.get("epoch")) ?? 0) + 1;
    await meta.put("epoch", epoch);
    return new IdSource(nodeId, epoch);
  }

  /** A new id and its sortable outbox key. */
  next(): { id: string; key: string } {
    const n = ++this.counter;
    return { id: `${this.nodeId}:${this.epoch}:${n}`, key: `${this.epoch.toString(36).padStart(8, "0")}:${n.toString(36).padStart(10, "0")}` };
  }
}

/** JSON form of a usage record in the store. */
export interface StoredRecord {
  recordId: string;
  user: string;
  app: string;
  version: number;
  nodeId: string;
  calls: number;
  execMicros: number;
  bytesIn: number;
  bytesOut: number;
  at: number;
}

/** JSON form of a data diff in the store. */
export interface StoredDiff {
  diffId: string;
  user: string;
  key: string;
  /** base64 value; null = deleted. */
  value: string | null;
  baseVersion: number;
  writer: string;
}

/** Converters between the store's JSON and the contract's messages. */
export const convert = {
  recordToProto(r: StoredRecord): UsageRecord {
    return {
      recordId: r.recordId,
      user: r.user,
      app: r.app,
      version: r.version,
      nodeId: r.nodeId,
      calls: BigInt(r.calls),
      execMicros: BigInt(r.execMicros),
      bytesIn: BigInt(r.bytesIn),
      bytesOut: BigInt(r.bytesOut),
      at: new Date(r.at),
    };
  },
  recordFromProto(r: UsageRecord): StoredRecord {
    return {
      recordId: r.recordId,
      user: r.user,
      app: r.app,
      version: r.version,
      nodeId: r.nodeId,
      calls: Number(r.calls),
      execMicros: Number(r.execMicros),
      bytesIn: Number(r.bytesIn),
      bytesOut: Number(r.bytesOut),
      at: r.at?.getTime() ?? 0,
    };
  },
  diffToProto(d: StoredDiff): DataDiff {
    return {
      diffId: d.diffId,
      user: d.user,
      key: d.key,
      value: d.value === null ? Buffer.alloc(0) : Buffer.from(d.value, "base64"),
      deleted: d.value === null,
      baseVersion: BigInt(d.baseVersion),
      writer: d.writer,
    };
  },
  diffFromProto(d: DataDiff): StoredDiff {
    return {
      diffId: d.diffId,
      user: d.user,
      key: d.key,
      value: d.deleted ? null : Buffer.from(d.value).toString("base64"),
      baseVersion: Number(d.baseVersion),
      writer: d.writer,
    };
  },
};

/** Queued records mirrored in memory at most. */
const MEM_RECORDS = 20_000;

/** The local's queue of records and diffs for its parent. */
export class Outbox {
  readonly records: Collection<StoredRecord>;
  readonly diffs: Collection<StoredDiff>;
  /** Outbox keys by record/diff id, for deleting on ack. */
  private readonly keyOf = new Map<string, string>();
  private recordCount = 0;
  private diffCount = 0;
  /**
   * The queued records in key order, mirrored in memory so the uplink does not scan the
   * store on every flush; undefined once the queue outgrew MEM_RECORDS (the store is then
   * read) until it drains.
   */
  private mem: Map<string, StoredRecord> | undefined = new Map();

  constructor(private readonly store: NodeStore) {
    this.records = store.collection<StoredRecord>("passon-out-records");
    this.diffs = store.collection<StoredDiff>("passon-out-diffs");
  }

  /** Indexes what survived a restart. */
  async open(): Promise<void> {
    for await (const [k, r] of this.records.entries()) {
      this.keyOf.set(r.recordId, k);
      this.recordCount++;
      if (this.mem && this.mem.size < MEM_RECORDS) this.mem.set(k, r);
      else this.mem = undefined;
    }
    for await (const [k, d] of this.diffs.entries()) {
      this.keyOf.set(d.diffId, k);
      this.diffCount++;
    }
  }

  /** Adds a record to `batch` (queued once the batch is written). */
  addRecord(batch: StoreBatch, key: string, r: StoredRecord): void {
    batch.put(this.records, key, r);
    this.keyOf.set(r.recordId, key);
    this.recordCount++;
  }

  /** Makes a record added with addRecord visible to pendingRecords (call once its batch is written). */
  committed(key: string, r: StoredRecord): void {
    if (!this.keyOf.has(r.recordId)) return; // already acknowledged
    if (this.mem && this.mem.size < MEM_RECORDS) this.mem.set(key, r);
    else this.mem = undefined;
  }

  /** Adds a diff to `batch`. */
  addDiff(batch: StoreBatch, key: string, d: StoredDiff): void {
    batch.put(this.diffs, key, d);
    this.keyOf.set(d.diffId, key);
    this.diffCount++;
  }

  /** Oldest records, at most `limit`. */
  async pendingRecords(limit: number): Promise<StoredRecord[]> {
    const out: StoredRecord[] = [];
    if (this.recordCount === 0) return out;
    if (this.mem) {
      for (const r of this.mem.values()) {
        if (out.length >= limit) break;
        out.push(r);
      }
      return out;
    }
    for await (const [, r] of this.records.entries({ limit })) out.push(r);
    return out;
  }

  /** Oldest diffs, at most `limit`. */
  async pendingDiffs(limit: number): Promise<StoredDiff[]> {
    const out: StoredDiff[] = [];
    if (this.diffCount === 0) return out;
    for await (const [, d] of this.diffs.entries({ limit })) out.push(d);
    return out;
  }

  /** Pending diffs of one user (applied over a freshly fetched master copy). */
  async pendingDiffsOf(user: string): Promise<StoredDiff[]> {
    const out: StoredDiff[] = [];
    for await (const [, d] of this.diffs.entries()) if (d.user === user) out.push(d);
    return out;
  }

  /** Forgets acknowledged records. */
  async ackRecords(ids: string[]): Promise<void> {
    const batch = this.store.batch();
    for (const id of ids) {
      const k = this.keyOf.get(id);
      if (k === undefined) continue;
      batch.del(this.records, k);
      this.keyOf.delete(id);
      this.recordCount--;
      this.mem?.delete(k);
    }
    if (this.recordCount === 0) this.mem ??= new Map();
    await batch.write();
  }

  /** Forgets acknowledged diffs (in the caller's batch). */
  ackDiffs(batch: StoreBatch, ids: string[]): void {
    for (const id of ids) {
      const k = this.keyOf.get(id);
      if (k === undefined) continue;
      batch.del(this.diffs, k);
      this.keyOf.delete(id);
      this.diffCount--;
    }
  }

  /** Queue lengths. */
  get queued(): { records: number; diffs: number } {
    return { records: this.recordCount, diffs: this.diffCount };
  }
}

interface Totals {
  calls: number;
  execMicros: number;
  bytesIn: number;
  bytesOut: number;
}

/** Serializes async critical sections. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  /** Runs `fn` after every earlier call finished. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

/**
 * Group commit: concurrent callers add their operations to one shared batch, written as a
 * single LevelDB batch while no other write of the group is in flight. Each caller's
 * promise resolves only once the batch holding its operations is durable, and a caller's
 * operations are written all together or not at all (the whole group is atomic), so
 * "durable before the reply" holds with far fewer writes under load.
 */
export class GroupCommit {
  private pending: { batch: StoreBatch; done: Promise<void>; resolve: () => void; reject: (e: unknown) => void } | undefined;
  private writing = false;
  private scheduled = false;

  constructor(private readonly store: NodeStore) {}

  /** Adds `fill`'s operations to the next group write; resolves when it is durable. `fill` must not throw. */
  commit(fill: (batch: StoreBatch) => void): Promise<void> {
    if (!this.pending) {
      let resolve!: () => void;
      let reject!: (e: unknown) => void;
      const done = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.pending = { batch: this.store.batch(), done, resolve, reject };
    }
    const group = this.pending;
    fill(group.batch);
    if (!this.writing && !this.scheduled) {
      // Let the calls that finish in this turn of the event loop join the write.
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        if (!this.writing) this.flush();
      });
    }
    return group.done;
  }

  private flush(): void {
    const group = this.pending;
    if (!group) return;
    this.pending = undefined;
    this.writing = true;
    group.batch
      .write()
      .then(group.resolve, group.reject)
      .finally(() => {
        this.writing = false;
        this.flush();
      });
  }
}

/** Aggregates kept in memory at most (others are read from the store when needed). */
const MEM_TOTALS = 50_000;

/** A center's billing: aggregates with exactly-once counting. */
export class Ledger {
  private readonly agg: Collection<Totals>;
  private readonly seen: Collection<number>;
  private readonly mutex = new Mutex();
  /** Mirror of `agg` for keys read or written since start; changed only after a write succeeded, under the mutex. */
  private readonly totals = new Map<string, Totals>();
  private readonly own: { record: StoredRecord; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private ownQueued = false;

  constructor(private readonly store: NodeStore) {
    this.agg = store.collection<Totals>("passon-billing");
    this.seen = store.collection<number>("passon-billing-seen", { ttl: true });
  }

  /** Counts records not counted before (atomically with their seen marks); returns ids to ack (all of them). */
  ingest(records: StoredRecord[]): Promise<string[]> {
    return this.mutex.run(async () => {
      const fresh: StoredRecord[] = [];
      const seen = await this.seen.getMany(records.map((r) => r.recordId));
      const inBatch = new Set<string>();
      records.forEach((r, i) => {
        if (seen[i] === undefined && !inBatch.has(r.recordId)) {
          fresh.push(r);
          inBatch.add(r.recordId);
        }
      });
      if (fresh.length) await this.count(fresh, true);
      return records.map((r) => r.recordId);
    });
  }

  /**
   * Counts a record of a call this node served itself, resolving once it is durable. Its id
   * was just minted here and the record never travels, so it cannot arrive twice and needs
   * no seen mark. Concurrent calls are counted in one write.
   */
  ingestOwn(record: StoredRecord): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.own.push({ record, resolve, reject });
      if (!this.ownQueued) this.drainOwn();
    });
  }

  private drainOwn(): void {
    this.ownQueued = true;
    void this.mutex
      .run(async () => {
        const items = this.own.splice(0);
        try {
          await this.count(
            items.map((i) => i.record),
            false,
          );
          for (const i of items) i.resolve();
        } catch (err) {
          for (const i of items) i.reject(err);
        }
      })
      .finally(() => {
        this.ownQueued = false;
        if (this.own.length) this.drainOwn();
      });
  }

  /** Adds records to the aggregates in one atomic write (with their seen marks when `markSeen`). Call under the mutex. */
  private async count(records: StoredRecord[], markSeen: boolean): Promise<void> {
    const sums = new Map<string, Totals>();
    for (const r of records) {
      const k = `${r.user}\u0000${r.app}\u0000${r.nodeId}`;
      const t = sums.get(k) ?? { calls: 0, execMicros: 0, bytesIn: 0, bytesOut: 0 };
      t.calls += r.calls;
      t.execMicros += r.execMicros;
      t.bytesIn += r.bytesIn;
      t.bytesOut += r.bytesOut;
      sums.set(k, t);
    }
    const keys = [...sums.keys()];
    const missing = keys.filter((k) => !this.totals.has(k));
    const loaded = missing.length ? await this.agg.getMany(missing) : [];
    const current = new Map<string, Totals>();
    missing.forEach((k, i) => current.set(k, loaded[i] ?? { calls: 0, execMicros: 0, bytesIn: 0, bytesOut: 0 }));
    const batch = this.store.batch();
    const next = new Map<string, Totals>();
    for (const k of keys) {
      const add = sums.get(k) as Totals;
      const c = this.totals.get(k) ?? (current.get(k) as Totals);
      const t = { calls: c.calls + add.calls, execMicros: c.execMicros + add.execMicros, bytesIn: c.bytesIn + add.bytesIn, bytesOut: c.bytesOut + add.bytesOut };
      batch.put(this.agg, k, t);
      next.set(k, t);
    }
    if (markSeen) for (const r of records) batch.put(this.seen, r.recordId, 1, { ttlMs: SEEN_TTL_MS });
    await batch.write();
    for (const [k, t] of next) {
      this.totals.delete(k);
      if (this.totals.size >= MEM_TOTALS) this.totals.delete(this.totals.keys().next().value as string);
      this.totals.set(k, t);
    }
  }

  /** One user's lines. */
  async billing(user: string): Promise<BillingLine[]> {
    const out: BillingLine[] = [];
    for await (const [k, t] of this.agg.prefixed(`${user}\u0000`)) {
      const [, app, nodeId] = k.split("\u0000");
      out.push({ user, app: app ?? "", nodeId: nodeId ?? "", calls: BigInt(t.calls), execMicros: BigInt(t.execMicros), bytesIn: BigInt(t.bytesIn), bytesOut: BigInt(t.bytesOut) });
    }
    return out;
  }
}

interface MasterEntry {
  /** base64 value, null when deleted. */
  v: string | null;
  ver: number;
  /** Node whose app wrote the current version. */
  writer: string;
  /** Version before the current writer's run of consecutive writes began. */
  runStart: number;
}

/** Users whose master values are mirrored in memory at most. */
const MEM_MASTER_USERS = 4096;

/** Result of applying a diff to the master copy. */
export interface DiffApplied {
  diffId: string;
  user: string;
  outcome: DiffOutcome;
  entry: DataEntry;
}

/**
 * The master copy of user data at a center.
 *
 * Conflict rule (first change to reach the master wins): a diff based on version b is
 * applied when the master is still at b, or when every change since b came from the same
 * writer (its own earlier diffs). Otherwise another place changed the key in between: the
 * master keeps its value, the diff is stored as a conflict, and the writer gets the master
 * entry back to refresh its cache.
 */
export class MasterData {
  private readonly master: Collection<MasterEntry>;
  private readonly applied: Collection<{ diffId: string; user: string; outcome: DiffOutcome; entry: unknown }>;
  private readonly conflicts: Collection<StoredDiff>;
  private readonly mutex = new Mutex();
  /** Live values of recently read users (see values()). */
  private readonly mem = new Map<string, Map<string, Uint8Array>>();

  constructor(
    private readonly store: NodeStore,
    private readonly ids: IdSource,
  ) {
    this.master = store.collection<MasterEntry>("passon-master");
    this.applied = store.collection("passon-diff-seen", { ttl: true });
    this.conflicts = store.collection<StoredDiff>("passon-conflicts");
  }

  /** All entries of a user (tombstones included). */
  async entries(user: string): Promise<DataEntry[]> {
    const out: DataEntry[] = [];
    for await (const [k, e] of this.master.prefixed(`${user}\u0000`)) out.push(toEntry(k.slice(user.length + 1), e));
    return out;
  }

  /**
   * The user's live values, for running an app at this node (the caller must not change
   * the map). The most recently read users are mirrored in memory, so serving an app at a
   * center does not read the store: the mirror is filled under the mutex (no apply can
   * interleave) and every apply updates it, copy on write, once its batch is written — this
   * class is the only writer of the master collection.
   */
  async values(user: string): Promise<Map<string, Uint8Array>> {
    const hit = this.mem.get(user);
    if (hit) return hit;
    return this.mutex.run(async () => {
      const again = this.mem.get(user);
      if (again) return again;
      const m = new Map<string, Uint8Array>();
      for await (const [k, e] of this.master.prefixed(`${user}\u0000`)) if (e.v !== null) m.set(k.slice(user.length + 1), Buffer.from(e.v, "base64"));
      if (this.mem.size >= MEM_MASTER_USERS) this.mem.delete(this.mem.keys().next().value as string);
      this.mem.set(user, m);
      return m;
    });
  }

  /** Applies diffs in order (each exactly once); returns their outcomes. */
  apply(diffs: StoredDiff[], extra?: (batch: StoreBatch) => void): Promise<DiffApplied[]> {
    return this.mutex.run(async () => {
      const out: DiffApplied[] = [];
      const batch = this.store.batch();
      const pending = new Map<string, MasterEntry | undefined>();
      for (const d of diffs) {
        const prior = await this.applied.get(d.diffId);
        if (prior) {
          out.push({ ...prior, entry: DataEntryCodec.fromJSON(prior.entry) });
          continue;
        }
        const mk = `${d.user}\u0000${d.key}`;
        const cur = pending.has(mk) ? pending.get(mk) : await this.master.get(mk);
        const ver = cur?.ver ?? 0;
        const ok = d.baseVersion === -1 || ver === d.baseVersion || (cur !== undefined && cur.writer === d.writer && d.baseVersion >= cur.runStart && d.baseVersion <= ver);
        let result: DiffApplied;
        if (ok) {
          const next: MasterEntry = { v: d.value, ver: ver + 1, writer: d.writer, runStart: cur && cur.writer === d.writer ? cur.runStart : ver };
          pending.set(mk, next);
          batch.put(this.master, mk, next);
          result = { diffId: d.diffId, user: d.user, outcome: DiffOutcome.APPLIED, entry: toEntry(d.key, next) };
        } else {
          batch.put(this.conflicts, `${d.user}\u0000${this.ids.next().key}`, d);
          result = { diffId: d.diffId, user: d.user, outcome: DiffOutcome.CONFLICT, entry: toEntry(d.key, cur as MasterEntry) };
        }
        batch.put(this.applied, d.diffId, { ...result, entry: DataEntryCodec.toJSON(result.entry) }, { ttlMs: SEEN_TTL_MS });
        out.push(result);
      }
      extra?.(batch);
      await batch.write();
      // Bring mirrored users up to date with what was just written (new maps: a caller may
      // still hold the old one).
      const changed = new Map<string, Map<string, Uint8Array>>();
      for (const [mk, e] of pending) {
        const sep = mk.indexOf("\u0000");
        const user = mk.slice(0, sep);
        const cur = changed.get(user) ?? this.mem.get(user);
        if (!cur) continue;
        const next = changed.get(user) ?? new Map(cur);
        changed.set(user, next);
        if (!e || e.v === null) next.delete(mk.slice(sep + 1));
        else next.set(mk.slice(sep + 1), Buffer.from(e.v, "base64"));
      }
      for (const [user, m] of changed) this.mem.set(user, m);
      return out;
    });
  }

  /** Conflicts recorded for a user, oldest first. */
  async conflictsOf(user: string): Promise<StoredDiff[]> {
    const out: StoredDiff[] = [];
    for await (const [, d] of this.conflicts.prefixed(`${user}\u0000`)) out.push(d);
    return out;
  }
}

function toEntry(key: string, e: MasterEntry): DataEntry {
  return { key, value: e.v === null ? Buffer.alloc(0) : Buffer.from(e.v, "base64"), version: BigInt(e.ver), deleted: e.v === null };
}

interface CacheEntry {
  v: string | null;
  /** Master version the value is based on. */
  ver: number;
}

/** A user's cached data as an invocation sees it. */
export interface UserData {
  values: Map<string, Uint8Array>;
  versions: Map<string, number>;
}

/** Users whose cached data is also kept in memory. */
const MEM_USERS = 4096;

/**
 * A local's cache of user data, with an expiry per user. The store holds the cache; the
 * most recently used users' data is mirrored in memory so an invocation does not read the
 * store. Every change bumps the user's generation, and a store read only fills the mirror
 * when no change happened meanwhile, so the mirror never holds older data than the store.
 */
export class DataCache {
  readonly cache: Collection<CacheEntry>;
  private readonly fresh: Collection<number>;
  private readonly mem = new Map<string, UserData & { fetchedAt: number | undefined }>();
  private readonly gen = new Map<string, number>();

  constructor(private readonly store: NodeStore) {
    this.cache = store.collection<CacheEntry>("passon-cache");
    this.fresh = store.collection<number>("passon-cache-fresh");
  }

  private bump(user: string): void {
    this.gen.set(user, (this.gen.get(user) ?? 0) + 1);
  }

  /** Forgets the in-memory copy of a user's data (after the store changed under it). */
  invalidate(user: string): void {
    this.bump(user);
    this.mem.delete(user);
  }

  private async mirrored(user: string): Promise<UserData & { fetchedAt: number | undefined }> {
    const hit = this.mem.get(user);
    if (hit) return hit;
    const g = this.gen.get(user);
    const values = new Map<string, Uint8Array>();
    const versions = new Map<string, number>();
    const fetchedAt = await this.fresh.get(user);
    for await (const [k, e] of this.cache.prefixed(`${user}\u0000`)) {
      const key = k.slice(user.length + 1);
      versions.set(key, e.ver);
      if (e.v !== null) values.set(key, new Uint8Array(Buffer.from(e.v, "base64")));
    }
    const entry = { values, versions, fetchedAt };
    if (this.gen.get(user) === g) {
      if (this.mem.size >= MEM_USERS) this.mem.delete(this.mem.keys().next().value as string);
      this.mem.set(user, entry);
    }
    return entry;
  }

  /** When the user's cache was last filled from the master, or undefined. */
  async fetchedAt(user: string): Promise<number | undefined> {
    return (await this.mirrored(user)).fetchedAt;
  }

  /** Replaces the user's cache with master entries, then re-applies still-pending local diffs. */
  async fill(user: string, entries: DataEntry[], pending: StoredDiff[], at: number): Promise<void> {
    const batch = this.store.batch();
    for await (const [k] of this.cache.prefixed(`${user}\u0000`)) batch.del(this.cache, k);
    const map = new Map<string, CacheEntry>();
    for (const e of entries) map.set(e.key, { v: e.deleted ? null : Buffer.from(e.value).toString("base64"), ver: Number(e.version) });
    for (const d of pending) map.set(d.key, { v: d.value, ver: map.get(d.key)?.ver ?? d.baseVersion });
    for (const [k, v] of map) batch.put(this.cache, `${user}\u0000${k}`, v);
    batch.put(this.fresh, user, at);
    this.invalidate(user);
    try {
      await batch.write();
    } finally {
      this.invalidate(user);
    }
  }

  /** The user's cached values and the versions they are based on (the caller must not change them). */
  async load(user: string): Promise<UserData> {
    const { values, versions } = await this.mirrored(user);
    return { values, versions };
  }

  /** Puts an app's write into the cache (in the caller's batch; call `wrote` once it is written). */
  write(batch: StoreBatch, user: string, key: string, v: string | null, baseVersion: number): void {
    batch.put(this.cache, `${user}\u0000${key}`, { v, ver: baseVersion });
  }

  /** Updates the in-memory copy after the batch holding `write`s for these keys was written. */
  wrote(user: string, writes: { key: string; value: string | null; baseVersion: number }[]): void {
    this.bump(user);
    const cur = this.mem.get(user);
    if (!cur) return;
    // Copy on write: an invocation that loaded the old maps keeps a consistent view.
    const values = new Map(cur.values);
    const versions = new Map(cur.versions);
    for (const w of writes) {
      versions.set(w.key, w.baseVersion);
      if (w.value === null) values.delete(w.key);
      else values.set(w.key, new Uint8Array(Buffer.from(w.value, "base64")));
    }
    this.mem.set(user, { values, versions, fetchedAt: cur.fetchedAt });
  }

  /** Puts the master's answer to a diff into the cache (in the caller's batch), unless newer local diffs are pending for the key. */
  settle(batch: StoreBatch, user: string, entry: DataEntry, outcome: DiffOutcome, keyHasPending: boolean): void {
    const v = entry.deleted ? null : Buffer.from(entry.value).toString("base64");
    if (outcome === DiffOutcome.CONFLICT || !keyHasPending) batch.put(this.cache, `${user}\u0000${entry.key}`, { v, ver: Number(entry.version) });
  }
}
