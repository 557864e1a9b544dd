/**
 * The reception's live table of content servers: what each carries, its latest load
 * report, the tickets this reception issued that the report does not include yet, its
 * distance and round-trip time, and whether it is reporting (active) or stale.
 */
import type { ServerLoad, ContentServer } from "../../gen/switchyard/reception/v1/content_server.js";
import { ServerState } from "../../gen/switchyard/reception/v1/content_server.js";
import type { Registration } from "../../gen/switchyard/reception/v1/reception_service.js";
import { durationToMs, msToDuration } from "../../clients/grpc/duration.js";
import { AlreadyExistsError } from "../runtime/errors.js";
import { DOMAIN } from "./errors.js";

/** A ticket this reception issued for a server and the server has not reported yet. */
interface Pending {
  /** notices_seen the server answered the notice with (undefined until answered). */
  seq: bigint | undefined;
  issuedAt: number;
  expiresAt: number;
}

/** One row of the table. */
export interface ServerEntry {
  id: string;
  address: string;
  capacity: number;
  items: Set<string>;
  labels: Record<string, string>;
  incarnation: string;
  /** Identifies the ReportLoad stream currently reporting for this server. */
  stream: symbol | undefined;
  lastReportAt: number;
  load: ServerLoad | undefined;
  /** Reception time the load report arrived. */
  loadAt: number;
  pending: Map<string, Pending>;
  distance: number;
  rttMs: number | undefined;
  /** Orders avoid the server until then (a notice failed). */
  suspectUntil: number;
}

/** Options of the table. */
export interface TableOptions {
  /** A server whose last report is older than this is stale. */
  staleAfterMs: number;
  /** Configured distances by server id (smaller = nearer). */
  distances: Record<string, number>;
}

/** The live table. */
export class ServerTable {
  readonly entries = new Map<string, ServerEntry>();
  /** item id → ids of servers that carry it. */
  private readonly carriers = new Map<string, Set<string>>();

  constructor(private readonly opts: TableOptions) {}

  /** Registers (or re-registers) a server for a new stream. */
  register(r: Registration, stream: symbol, now = Date.now()): ServerEntry {
    let e = this.entries.get(r.serverId);
    if (e?.stream && e.incarnation === r.incarnation && now - e.lastReportAt <= this.opts.staleAfterMs) {
      throw new AlreadyExistsError(`another stream already reports for content server "${r.serverId}"`, {
        reason: "SERVER_ALREADY_REPORTING",
        domain: DOMAIN,
      });
    }
    if (!e) {
      e = {
        id: r.serverId,
        address: r.address,
        capacity: r.capacity,
        items: new Set(),
        labels: {},
        incarnation: r.incarnation,
        stream,
        lastReportAt: now,
        load: undefined,
        loadAt: now,
        pending: new Map(),
        distance: this.opts.distances[r.serverId] ?? 0,
        rttMs: undefined,
        suspectUntil: 0,
      };
      this.entries.set(r.serverId, e);
    }
    if (e.incarnation !== r.incarnation) {
      // A new process: what the old one counted is gone with it.
      e.pending.clear();
      e.load = undefined;
    }
    Object.assign(e, { address: r.address, capacity: r.capacity, labels: { ...r.labels }, incarnation: r.incarnation, stream, lastReportAt: now, suspectUntil: 0 });
    this.setItems(e, r.itemIds);
    return e;
  }

  /** The stream of `e` ended: no orders until it reports again. */
  disconnect(e: ServerEntry, stream: symbol): void {
    if (e.stream === stream) e.stream = undefined;
  }

  /** Replaces the items a server carries. */
  setItems(e: ServerEntry, itemIds: string[]): void {
    for (const i of e.items) this.carriers.get(i)?.delete(e.id);
    e.items = new Set(itemIds);
    for (const i of e.items) {
      let s = this.carriers.get(i);
      if (!s) this.carriers.set(i, (s = new Set()));
      s.add(e.id);
    }
  }

  /** Applies a load report. */
  report(e: ServerEntry, load: ServerLoad, now = Date.now()): void {
    e.load = load;
    e.loadAt = now;
    e.lastReportAt = now;
    for (const [id, p] of e.pending) {
      if ((p.seq !== undefined && p.seq <= load.noticesSeen) || p.expiresAt <= now) e.pending.delete(id);
    }
  }

  /** Servers (any state) that carry `itemId`. */
  carriersOf(itemId: string): ServerEntry[] {
    const ids = this.carriers.get(itemId);
    if (!ids) return [];
    const out: ServerEntry[] = [];
    for (const id of ids) {
      const e = this.entries.get(id);
      if (e) out.push(e);
    }
    return out;
  }

  /** Ids of the servers carrying `itemId`. */
  carrierIds(itemId: string): ReadonlySet<string> {
    return this.carriers.get(itemId) ?? new Set();
  }

  /** True when orders may go to `e` now. */
  active(e: ServerEntry, now = Date.now()): boolean {
    return e.stream !== undefined && now - e.lastReportAt <= this.opts.staleAfterMs && now >= e.suspectUntil;
  }

  /**
   * Clients holding a slot: the last report's counts plus our tickets it does not
   * include. Lapsed tickets leave `pending` on the next report or sweep, so until then
   * they still count (erring on the side of a full server).
   */
  occupancy(e: ServerEntry): number {
    return (e.load ? e.load.clientsServed + e.load.clientsIncoming : 0) + e.pending.size;
  }

  /** Drops lapsed tickets from every server's pending set. */
  sweep(now = Date.now()): void {
    for (const e of this.entries.values()) for (const [id, p] of e.pending) if (p.expiresAt <= now) e.pending.delete(id);
  }

  /** Free slots of `e` (0 when inactive). */
  free(e: ServerEntry, now = Date.now()): number {
    return this.active(e, now) ? Math.max(0, e.capacity - this.occupancy(e)) : 0;
  }

  /**
   * Active carriers of `itemId` with a free slot, least loaded first; equal load goes to
   * the nearer server (configured distance, then measured RTT).
   */
  candidates(itemId: string, now = Date.now()): ServerEntry[] {
    const list = this.carriersOf(itemId).filter((e) => this.free(e, now) > 0);
    if (list.length < 2) return list;
    const util = new Map(list.map((e) => [e, this.occupancy(e) / e.capacity]));
    return list.sort(
      (a, b) =>
        (util.get(a) ?? 0) - (util.get(b) ?? 0) ||
        a.distance - b.distance ||
        (a.rttMs ?? Infinity) - (b.rttMs ?? Infinity) ||
        a.id.localeCompare(b.id),
    );
  }

  /** Reserves a slot on `e` for a ticket being issued. */
  reserve(e: ServerEntry, ticketId: string, expiresAt: number, now = Date.now()): void {
    e.pending.set(ticketId, { seq: undefined, issuedAt: now, expiresAt });
  }

  /** The server acknowledged the notice of `ticketId` at `seq`. */
  acknowledged(e: ServerEntry, ticketId: string, seq: bigint): void {
    const p = e.pending.get(ticketId);
    if (!p) return;
    if (e.load && seq <= e.load.noticesSeen) e.pending.delete(ticketId);
    else p.seq = seq;
  }

  /** Gives back a reservation whose notice failed. */
  release(e: ServerEntry, ticketId: string): void {
    e.pending.delete(ticketId);
  }

  /** Folds a measured round-trip time into the moving average. */
  rtt(e: ServerEntry, ms: number): void {
    e.rttMs = e.rttMs === undefined ? ms : e.rttMs + 0.3 * (ms - e.rttMs);
  }

  /** The API view of a row. */
  view(e: ServerEntry, now = Date.now()): ContentServer {
    const live = e.stream !== undefined && now - e.lastReportAt <= this.opts.staleAfterMs;
    let pending = 0;
    for (const p of e.pending.values()) if (p.expiresAt > now) pending++;
    return {
      serverId: e.id,
      address: e.address,
      state: live ? ServerState.ACTIVE : ServerState.STALE,
      ...(e.load ? { load: e.load } : {}),
      pendingTickets: pending,
      itemIds: [...e.items].sort(),
      distance: e.distance,
      ...(e.rttMs !== undefined ? { roundTripTime: msToDuration(e.rttMs) } : {}),
      lastReportAt: new Date(e.lastReportAt),
      labels: e.labels,
    };
  }

  /**
   * Estimated ms until each slot of `e` frees, from now: the report's per-slot estimates
   * aged by the time since the report, our unreported tickets at a full hold time, and
   * free slots at 0. Always `capacity` values, sorted.
   */
  releaseTimes(e: ServerEntry, holdMs: number, now = Date.now()): number[] {
    const age = now - e.loadAt;
    const out: number[] = [];
    for (const d of e.load?.slotFreeIn ?? []) out.push(Math.max(0, (durationToMs(d) ?? 0) - age));
    for (const p of e.pending.values()) if (p.expiresAt > now) out.push(Math.max(0, holdMs - (now - p.issuedAt)));
    out.sort((a, b) => a - b);
    while (out.length < e.capacity) out.unshift(0);
    return out.slice(0, e.capacity);
  }
}
