/**
 * The content server's core: it counts notified clients as incoming load, verifies
 * tickets by itself, serves catalog items as streams, records completed tickets durably
 * until they expire (so a ticket is used once, also across restarts), and measures how
 * long clients hold a slot so receptions can estimate waits.
 */
import { EventEmitter } from "node:events";
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { Collection, NodeStore } from "../runtime/store.js";
import type { CallContext, StreamSink } from "../runtime/service.js";
import type { FetchContentRequest, FetchContentResponse } from "../../gen/switchyard/reception/v1/content_server_service.js";
import type { ServerLoad } from "../../gen/switchyard/reception/v1/content_server.js";
import { msToDuration } from "../../clients/grpc/duration.js";
import { sleep } from "../../clients/grpc/retry.js";
import { Catalog, toCatalogItem, type ItemRecord } from "./catalog.js";
import { CatalogItemNotFoundError, invalidField, ServerAtCapacityError, TicketAlreadyUsedError, TicketInUseError, TicketExpiredError } from "./errors.js";
import { peerHost, TicketVerifier, type KeySpec, type TicketClaims } from "./tickets.js";
import { SwitchyardError } from "../runtime/errors.js";

/** Options of a content server core. */
export interface ContentServerOptions {
  serverId: string;
  capacity: number;
  keys: KeySpec[];
  checkClientAddress: boolean;
  clockSkewMs: number;
  /** Per-client rate limit in bytes/s (0 = none). */
  serveBytesPerSecond: number;
  chunkBytes: number;
  maxItemBytes: number;
}

interface Incoming {
  noticedAt: number;
  expiresAt: number;
  sizeBytes: number;
  timer: NodeJS.Timeout;
  notAfter: number;
}

interface Serving {
  noticedAt: number;
  arrivedAt: number;
  offset: number;
  sent: number;
  total: number;
  inFlight: number;
}

/** Exponentially weighted moving average. */
class Ewma {
  value: number | undefined;
  constructor(private readonly alpha = 0.2) {}
  add(x: number): void {
    this.value = this.value === undefined ? x : this.value + this.alpha * (x - this.value);
  }
}

const CLIENT_ID_MAX = 128;

/** State and behaviour of one content server. Emits "change" when its load changes. */
export class ContentServerCore extends EventEmitter {
  readonly verifier: TicketVerifier;
  readonly catalog: Catalog;
  /** Random id of this process, so receptions can tell a restart. */
  readonly incarnation = randomUUID();
  private readonly used: Collection<{ completedAt: number }>;
  private readonly incoming = new Map<string, Incoming>();
  private readonly serving = new Map<string, Serving>();
  private noticesSeen = 0;
  private readonly hold = new Ewma();
  private readonly arrival = new Ewma();
  /** Observed serving rate, bytes per ms. */
  private readonly rate = new Ewma();
  private peakServing = 0;
  private readonly startedAt = Date.now();
  /** Tickets this process recorded as used, until their record expires (insertion order). */
  private readonly usedHere = new Map<string, number>();

  constructor(
    readonly opts: ContentServerOptions,
    store: NodeStore,
    private readonly log: Logger,
  ) {
    super();
    this.verifier = new TicketVerifier(opts.serverId, opts.keys, opts.clockSkewMs);
    this.catalog = new Catalog(store, opts.chunkBytes, opts.maxItemBytes);
    this.used = store.collection("used-tickets", { ttl: true });
  }

  /** Clients holding a slot (served + incoming). */
  get occupancy(): number {
    return this.incoming.size + this.serving.size;
  }

  /** Largest number of clients served at the same time since start (tests, metrics). */
  get peakClientsServed(): number {
    return this.peakServing;
  }

  /** Handles one NotifyTickets request: every token in order, one answer. */
  notices(tokens: Uint8Array[]): { rejections: { index: number; ticketId: string; reason: string }[]; noticesSeen: bigint } {
    const rejections: { index: number; ticketId: string; reason: string }[] = [];
    tokens.forEach((t, index) => {
      const r = this.notice(t);
      if (r.rejectedReason) rejections.push({ index, ticketId: r.ticketId, reason: r.rejectedReason });
    });
    return { rejections, noticesSeen: BigInt(this.noticesSeen) };
  }

  /**
   * Handles one ticket notice from a reception; returns the rejection reason or "".
   * Synchronous (no store read), so a stream of notices never queues behind the disk.
   */
  notice(token: Uint8Array): { ticketId: string; rejectedReason: string; noticesSeen: bigint } {
    let claims: TicketClaims;
    try {
      claims = this.verifier.open(token);
      const na = claims.notAfter?.getTime() ?? 0;
      if (Date.now() > na + this.opts.clockSkewMs) throw new TicketExpiredError(new Date(na));
    } catch (err) {
      this.noticesSeen++;
      const rejectedReason = err instanceof SwitchyardError ? err.reason : "TICKET_MALFORMED";
      return { ticketId: "", rejectedReason, noticesSeen: BigInt(this.noticesSeen) };
    }
    const id = claims.ticketId;
    const notAfter = claims.notAfter?.getTime() ?? 0;
    // The counter and the slot change together, so every report's counts include exactly
    // the notices up to its notices_seen.
    this.noticesSeen++;
    if (!this.incoming.has(id) && !this.serving.has(id) && !this.usedHere.has(id)) {
      this.addIncoming(id, Date.now(), notAfter + this.opts.clockSkewMs, notAfter, this.catalog.sizeOf(claims.contentLocation) ?? 0);
      // A ticket issued before this process started may have been used by an earlier
      // one: the store knows (a notice sent again must not hold a slot until expiry).
      const nb = claims.notBefore?.getTime() ?? 0;
      if (nb < this.startedAt + this.opts.clockSkewMs) {
        this.used.has(id).then(
          (u) => void (u && this.dropIncoming(id, false)),
          () => undefined,
        );
      }
    }
    return { ticketId: id, rejectedReason: "", noticesSeen: BigInt(this.noticesSeen) };
  }

  private addIncoming(id: string, noticedAt: number, expiresAt: number, notAfter: number, sizeBytes: number): void {
    const timer = setTimeout(() => this.dropIncoming(id, true), Math.max(0, expiresAt - Date.now()));
    timer.unref();
    this.incoming.set(id, { noticedAt, expiresAt, notAfter, sizeBytes, timer });
    this.emit("change");
  }

  private dropIncoming(id: string, expired: boolean): Incoming | undefined {
    const e = this.incoming.get(id);
    if (!e) return undefined;
    clearTimeout(e.timer);
    this.incoming.delete(id);
    if (expired) this.hold.add(Date.now() - e.noticedAt);
    this.emit("change");
    return e;
  }

  /** Verifies a presented ticket (seal, window, client) and that it is not used up. */
  private async admit(token: Uint8Array, clientId: string, ctx: CallContext): Promise<TicketClaims> {
    if (!clientId || clientId.length > CLIENT_ID_MAX) {
      throw invalidField("client_id", `required, at most ${CLIENT_ID_MAX} characters`, "INVALID_CLIENT_ID");
    }
    const addr = this.opts.checkClientAddress ? peerHost(ctx.peer) : undefined;
    return this.verifier.verify(token, { clientId: subjectOf(ctx) ?? clientId, clientAddress: addr });
  }

  /** FetchContent: serves the ticket's item, then records the ticket as used. */
  async fetch(req: FetchContentRequest, sink: StreamSink<FetchContentResponse>, ctx: CallContext): Promise<void> {
    const claims = await this.admit(req.token, req.clientId, ctx);
    const id = claims.ticketId;
    if (this.serving.has(id)) throw new TicketInUseError(id);
    if (await this.used.has(id)) throw new TicketAlreadyUsedError(id);
    const rec = await this.catalog.get(claims.contentLocation);
    if (!rec) throw new CatalogItemNotFoundError(claims.contentLocation);
    const offset = Number(req.offset);
    if (offset > rec.sizeBytes) throw invalidField("offset", `must be at most the item size ${rec.sizeBytes}`, "OFFSET_OUT_OF_RANGE");
    // Re-check after the awaits: another fetch may have started meanwhile.
    if (this.serving.has(id)) throw new TicketInUseError(id);
    const inc = this.incoming.get(id);
    if (!inc && this.occupancy >= this.opts.capacity) throw new ServerAtCapacityError(this.nextFreeMs());
    if (inc) {
      clearTimeout(inc.timer);
      this.incoming.delete(id);
    }
    const now = Date.now();
    const s: Serving = { noticedAt: inc?.noticedAt ?? now, arrivedAt: now, offset, sent: offset, total: rec.sizeBytes, inFlight: 0 };
    this.arrival.add(now - s.noticedAt);
    this.serving.set(id, s);
    this.peakServing = Math.max(this.peakServing, this.serving.size);
    this.emit("change");
    let finished = false;
    try {
      await sink.send({ part: { $case: "header", value: toCatalogItem(rec) } });
      await this.stream(rec, s, sink, ctx.signal);
      // Durable before the stream ends OK: once the client saw the end, a replay is refused.
      await this.markUsed(id, claims);
      finished = true;
    } finally {
      this.serving.delete(id);
      const end = Date.now();
      if (finished) {
        this.hold.add(end - s.noticedAt);
        if (s.sent > s.offset && end > s.arrivedAt) this.rate.add((s.sent - s.offset) / (end - s.arrivedAt));
      } else if (end < (claims.notAfter?.getTime() ?? 0) + this.opts.clockSkewMs) {
        // Interrupted: the client may come back with the same ticket (and an offset).
        const na = claims.notAfter?.getTime() ?? 0;
        this.addIncoming(id, s.noticedAt, na + this.opts.clockSkewMs, na, rec.sizeBytes);
      }
      this.emit("change");
    }
  }

  private async stream(rec: ItemRecord, s: Serving, sink: StreamSink<FetchContentResponse>, signal: AbortSignal): Promise<void> {
    const bps = this.opts.serveBytesPerSecond;
    const start = Date.now();
    let sentHere = 0;
    // With a rate limit, send smaller pieces so the pace is even.
    const piece = bps > 0 ? Math.max(1024, Math.min(rec.chunkBytes, Math.floor(bps / 10))) : rec.chunkBytes;
    for await (const chunk of this.catalog.read(rec, s.offset)) {
      for (let o = 0; o < chunk.length; o += piece) {
        if (signal.aborted) throw signal.reason;
        const part = chunk.subarray(o, o + piece);
        if (bps > 0) {
          const due = start + (sentHere * 1000) / bps - Date.now();
          if (due > 0) await sleep(due, signal);
        }
        s.inFlight += part.length;
        try {
          await sink.send({ part: { $case: "chunk", value: part } });
        } finally {
          s.inFlight -= part.length;
        }
        s.sent += part.length;
        sentHere += part.length;
      }
    }
  }

  private async markUsed(id: string, claims: TicketClaims): Promise<void> {
    const na = claims.notAfter?.getTime() ?? Date.now();
    // Kept a while past expiry (skew, plus margin): until then a replay must be refused.
    const expiresAt = na + this.opts.clockSkewMs + 60_000;
    await this.used.put(id, { completedAt: Date.now() }, { expiresAt });
    this.usedHere.set(id, expiresAt);
    // Entries are added in completion order, which trails expiry by at most a ticket's
    // lifetime, so dropping lapsed ones from the front keeps the map small.
    const now = Date.now();
    for (const [k, exp] of this.usedHere) {
      if (exp > now) break;
      this.usedHere.delete(k);
    }
  }

  /** CompleteOrder: records the ticket as used and frees its slot. */
  async complete(token: Uint8Array, clientId: string, ctx: CallContext): Promise<{ ticketId: string; alreadyCompleted: boolean }> {
    const claims = await this.admit(token, clientId, ctx);
    const id = claims.ticketId;
    if (await this.used.has(id)) return { ticketId: id, alreadyCompleted: true };
    await this.markUsed(id, claims);
    const inc = this.incoming.get(id);
    if (inc) {
      this.hold.add(Date.now() - inc.noticedAt);
      this.dropIncoming(id, false);
    }
    return { ticketId: id, alreadyCompleted: false };
  }

  /**
   * The mean hold time: measured over completed orders, or before the first completion
   * the expected hold of the slots held now (elapsed since notice plus the rest).
   */
  meanHoldMs(now = Date.now()): number | undefined {
    if (this.hold.value !== undefined) return this.hold.value;
    const rest = this.slotFreeIn(now, false);
    if (!rest.length) return undefined;
    let sum = 0;
    let i = 0;
    for (const s of this.serving.values()) sum += now - s.noticedAt + (rest[i++] ?? 0);
    for (const e of this.incoming.values()) sum += now - e.noticedAt + (rest[i++] ?? 0);
    return sum / rest.length;
  }

  /** Estimated ms until each occupied slot frees (served first, then incoming, unless sorted). */
  slotFreeIn(now = Date.now(), sorted = true): number[] {
    const out: number[] = [];
    // Rates in bytes/ms: a client's own observed rate, else the mean observed over
    // completed orders, else the configured limit.
    const bps = this.opts.serveBytesPerSecond;
    const rate = this.rate.value ?? (bps > 0 ? bps / 1000 : undefined);
    const serveMs = (bytes: number): number => (rate ? bytes / rate : (this.hold.value ?? 1000));
    for (const s of this.serving.values()) {
      const elapsed = now - s.arrivedAt;
      const observed = elapsed > 200 && s.sent > s.offset ? (s.sent - s.offset) / elapsed : undefined;
      const r = observed ?? rate;
      out.push(Math.max(0, r ? (s.total - s.sent) / r : (this.hold.value ?? 1000) - (now - s.noticedAt)));
    }
    for (const e of this.incoming.values()) {
      const arrival = Math.max(0, (this.arrival.value ?? 0) - (now - e.noticedAt));
      // Never later than the ticket's expiry, when the slot frees anyway.
      out.push(Math.min(Math.max(0, e.expiresAt - now), arrival + serveMs(e.sizeBytes)));
    }
    return sorted ? out.sort((a, b) => a - b) : out;
  }

  private nextFreeMs(): number {
    return Math.max(100, Math.round(this.slotFreeIn()[0] ?? 1000));
  }

  /** The load report receptions get. */
  load(cpuCores: number): ServerLoad {
    const hold = this.meanHoldMs();
    let bytesInFlight = 0;
    for (const s of this.serving.values()) bytesInFlight += s.inFlight;
    return {
      clientsServed: this.serving.size,
      clientsIncoming: this.incoming.size,
      capacity: this.opts.capacity,
      memoryRssBytes: BigInt(process.memoryUsage.rss()),
      cpuCores,
      bytesInFlight: BigInt(bytesInFlight),
      ...(hold !== undefined ? { meanHoldTime: msToDuration(hold) } : {}),
      slotFreeIn: this.slotFreeIn().map(msToDuration),
      observedAt: new Date(),
      noticesSeen: BigInt(this.noticesSeen),
    };
  }

  /** Figures for NodeService load reports. */
  figures(): Record<string, number> {
    let bytesInFlight = 0;
    for (const s of this.serving.values()) bytesInFlight += s.inFlight;
    return {
      clients_served: this.serving.size,
      clients_incoming: this.incoming.size,
      capacity: this.opts.capacity,
      bytes_in_flight: bytesInFlight,
      mean_hold_ms: this.hold.value ?? 0,
    };
  }

  /** Clears timers. */
  close(): void {
    for (const e of this.incoming.values()) clearTimeout(e.timer);
    this.incoming.clear();
    this.log.debug("content server core closed");
  }
}

/** The mTLS certificate CN when the node runs with client certificates. */
function subjectOf(ctx: CallContext): string | undefined {
  const cn = ctx.peerCertificate?.subject?.["CN"];
  return typeof cn === "string" && cn ? cn : undefined;
}
