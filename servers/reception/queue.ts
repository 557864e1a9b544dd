/**
 * The reception's fair virtual queue and wait estimates.
 *
 * A client told to come back later keeps its place (keyed by client id and item) as long
 * as it returns before its entry lapses (retry delay plus a grace period). A client is
 * admitted only when fewer clients are queued ahead of it (for servers it could use) than
 * there are free slots, so free slots wait for the clients they are due to.
 */

/** One waiting client. */
export interface QueueEntry {
  key: string;
  itemId: string;
  clientId: string;
  seq: number;
  enqueuedAt: number;
  expiresAt: number;
}

/** The queue, in arrival order. */
export class VirtualQueue {
  private readonly entries = new Map<string, QueueEntry>();
  private nextSeq = 0;

  constructor(private readonly maxEntries: number) {}

  /** The key of a client waiting for an item. */
  static key(clientId: string, itemId: string): string {
    return `${clientId}\u0000${itemId}`;
  }

  /** Live entries. */
  get size(): number {
    return this.entries.size;
  }

  /** The client's live entry, or undefined (a lapsed entry is dropped). */
  get(key: string, now = Date.now()): QueueEntry | undefined {
    const e = this.entries.get(key);
    if (e && e.expiresAt <= now) {
      this.entries.delete(key);
      return undefined;
    }
    return e;
  }

  /** Adds a client at the back; undefined when the queue is full. */
  add(key: string, itemId: string, clientId: string, now = Date.now()): QueueEntry | undefined {
    this.purge(now);
    if (this.entries.size >= this.maxEntries) return undefined;
    const e: QueueEntry = { key, itemId, clientId, seq: this.nextSeq++, enqueuedAt: now, expiresAt: now + 60_000 };
    this.entries.set(key, e);
    return e;
  }

  /** Removes an entry (admitted). */
  remove(key: string): void {
    this.entries.delete(key);
  }

  /**
   * Live clients ahead of `seq` (Infinity = at the back) that compete for the same
   * servers: `competes(itemId)` says whether a queued item shares a server with ours.
   */
  ahead(seq: number, competes: (itemId: string) => boolean, now = Date.now()): number {
    let n = 0;
    for (const e of this.entries.values()) {
      if (e.seq >= seq) break;
      if (e.expiresAt <= now) continue;
      if (competes(e.itemId)) n++;
    }
    return n;
  }

  /** Drops lapsed entries. */
  purge(now = Date.now()): void {
    for (const [k, e] of this.entries) if (e.expiresAt <= now) this.entries.delete(k);
  }
}

/**
 * Estimated wait of the client at 0-based `position` among those waiting for a set of
 * servers: each server's slots free at the given times; whoever takes a slot holds it
 * for that server's hold time. Returns ms from now.
 */
export function estimateWait(position: number, servers: { releases: number[]; holdMs: number }[]): number {
  // Small binary heap of [time, holdMs].
  const heap: [number, number][] = [];
  const push = (v: [number, number]): void => {
    heap.push(v);
    let i = heap.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if ((heap[p] as [number, number])[0] <= v[0]) break;
      heap[i] = heap[p] as [number, number];
      i = p;
    }
    heap[i] = v;
  };
  const pop = (): [number, number] => {
    const top = heap[0] as [number, number];
    const last = heap.pop() as [number, number];
    if (heap.length) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && (heap[l] as [number, number])[0] < (heap[m] as [number, number])[0]) m = l;
        if (r < heap.length && (heap[r] as [number, number])[0] < (heap[m] as [number, number])[0]) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m] as [number, number], heap[i] as [number, number]];
        i = m;
      }
    }
    return top;
  };
  for (const s of servers) for (const t of s.releases) push([t, s.holdMs]);
  if (!heap.length) return Infinity;
  let t = 0;
  for (let i = 0; i <= position; i++) {
    const [at, hold] = pop();
    t = at;
    push([at + Math.max(1, hold), hold]);
  }
  return t;
}
