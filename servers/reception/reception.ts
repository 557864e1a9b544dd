/**
 * The reception's core: PlaceOrder (pick, mint, notify, or queue with an estimate), the
 * ReportLoad stream handler, and the operator views of the live table.
 */
import { randomBytes, randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type {
  PlaceOrderRequest,
  PlaceOrderResponse,
  ReportLoadRequest,
  ReportLoadResponse,
  ListContentServersRequest,
  ListContentServersResponse,
} from "../../gen/switchyard/reception/v1/reception_service.js";
import type { Ticket } from "../../gen/switchyard/reception/v1/ticket.js";
import type { ChannelSettings } from "../../clients/grpc/channel.js";
import { durationToMs, msToDuration } from "../../clients/grpc/duration.js";
import type { CallContext, StreamSink } from "../runtime/service.js";
import { ITEM_ID } from "./catalog.js";
import { AllServersBusyError, invalidField, ItemNotFoundError, NoServerAvailableError, ServerNotFoundError } from "./errors.js";
import { TicketNotifier } from "./notifier.js";
import { estimateWait, VirtualQueue } from "./queue.js";
import { ServerTable, type ServerEntry } from "./server-table.js";
import { peerHost, TicketMinter, type KeySpec } from "./tickets.js";

/** Options of a reception. */
export interface ReceptionOptions {
  receptionId: string;
  masterKeys: KeySpec[];
  activeKeyId: string;
  /** How long a ticket stays valid after issue. */
  ticketTtlMs: number;
  /** Tickets are valid from issue minus this (clock skew between machines). */
  notBeforeSlackMs: number;
  staleAfterMs: number;
  reportIntervalMs: number;
  pingIntervalMs: number;
  notifyTimeoutMs: number;
  distances: Record<string, number>;
  /** Hold time assumed for a server that has not measured one yet. */
  defaultHoldMs: number;
  minRetryMs: number;
  maxRetryMs: number;
  /** How long a queued client's place is kept past its retry time. */
  queueGraceMs: number;
  maxQueue: number;
  /** Largest random spread added to retry delays. */
  maxSpreadMs: number;
  /**
   * A queued client whose slot should free within this long, or whose wait cannot be
   * estimated yet (no report covers the tickets just issued), is held by the reception
   * until the next load reports instead of being sent away; 0 turns this off.
   */
  parkWithinMs: number;
}

const CLIENT_ID_MAX = 128;
const REQUEST_ID_MAX = 64;
const PRINTABLE = /^[\x21-\x7e][\x20-\x7e]*$/;

/** The reception. */
export class Reception {
  readonly table: ServerTable;
  readonly queue: VirtualQueue;
  private readonly minter: TicketMinter;
  private readonly notifiers = new Map<string, TicketNotifier>();
  private readonly idempotent = new Map<string, { at: number; expiresAt: number; res: Promise<PlaceOrderResponse> }>();
  private readonly staleWatch: NodeJS.Timeout;
  private readonly wasActive = new Map<string, boolean>();
  /** Parked PlaceOrder calls, woken by the next load report. */
  private readonly reportWaiters = new Set<() => void>();
  /** Orders admitted and refused (busy), for metrics and tests. */
  readonly counters = { admitted: 0, busy: 0 };

  constructor(
    readonly opts: ReceptionOptions,
    private readonly channel: ChannelSettings,
    private readonly log: Logger,
  ) {
    this.table = new ServerTable({ staleAfterMs: opts.staleAfterMs, distances: opts.distances });
    this.queue = new VirtualQueue(opts.maxQueue);
    this.minter = new TicketMinter(opts.masterKeys, opts.activeKeyId);
    // Log state changes so operators see a server go stale when its reports stop.
    this.staleWatch = setInterval(() => {
      const now = Date.now();
      for (const e of this.table.entries.values()) {
        const active = this.table.active(e, now);
        if (this.wasActive.get(e.id) !== active) {
          this.wasActive.set(e.id, active);
          this.log.info({ serverId: e.id, address: e.address }, active ? "content server active" : "content server stale: no orders go to it");
        }
      }
      this.queue.purge(now);
      this.table.sweep(now);
    }, 250);
    this.staleWatch.unref();
  }

  /** PlaceOrder. */
  async placeOrder(req: PlaceOrderRequest, ctx: CallContext): Promise<PlaceOrderResponse> {
    validateOrder(req);
    const clientId = subjectOf(ctx) ?? req.clientId;
    if (!req.requestId) return this.admit(req.itemId, clientId, peerHost(ctx.peer), ctx);
    const key = `${clientId}\u0000${req.requestId}`;
    const now = Date.now();
    const hit = this.idempotent.get(key);
    if (hit && hit.expiresAt > now) return hit.res;
    const res = this.admit(req.itemId, clientId, peerHost(ctx.peer), ctx);
    this.idempotent.set(key, { at: now, expiresAt: now + this.opts.ticketTtlMs, res });
    res.catch(() => this.idempotent.delete(key));
    if (this.idempotent.size > 50_000) {
      for (const [k, v] of this.idempotent) if (v.expiresAt <= now || this.idempotent.size > 40_000) this.idempotent.delete(k);
    }
    return res;
  }

  private async admit(itemId: string, clientId: string, clientAddress: string, ctx: CallContext): Promise<PlaceOrderResponse> {
    const parkUntil = Date.now() + this.opts.parkWithinMs;
    for (let failures = 0; failures < 4; ) {
      const now = Date.now();
      const carriers = this.table.carriersOf(itemId);
      if (!carriers.length) throw new ItemNotFoundError(itemId);
      const live = carriers.filter((e) => this.table.active(e, now));
      if (!live.length) throw new NoServerAvailableError(itemId, this.opts.staleAfterMs);
      const qkey = VirtualQueue.key(clientId, itemId);
      const entry = this.queue.get(qkey, now);
      const mine = this.table.carrierIds(itemId);
      const competes = (other: string): boolean => {
        if (other === itemId) return true;
        for (const id of this.table.carrierIds(other)) if (mine.has(id)) return true;
        return false;
      };
      const position = this.queue.ahead(entry?.seq ?? Infinity, competes, now);
      const free = live.reduce((n, e) => n + this.table.free(e, now), 0);
      const server = position < free ? this.table.candidates(itemId, now)[0] : undefined;
      if (!server) {
        const busy = this.busy(itemId, clientId, qkey, entry !== undefined, position, live, now);
        // Due very soon, or not estimable until a report covers the tickets just issued:
        // wait here for the next reports rather than send the client away.
        const left = parkUntil - now;
        if (busy.queued && left > 0 && (busy.estimate <= left || !busy.informed) && !ctx.signal.aborted) {
          await this.nextReport(busy.informed ? Math.min(left, busy.estimate + 50) : left, ctx.signal);
          continue;
        }
        this.counters.busy++;
        throw busy.error;
      }
      const ticket = this.mint(server, itemId, clientId, clientAddress, now);
      this.table.reserve(server, ticket.ticketId, ticket.notAfter?.getTime() ?? now, now);
      const notifier = this.notifierFor(server);
      // A proven stream (answered before, refused nothing) gets the notice written and
      // the order answered at once; the acknowledgement is reconciled when it comes. The
      // reservation counts against the server until a report includes the ticket, so
      // nothing is admitted beyond capacity either way.
      const early = notifier.proven;
      const acked = notifier.notify(ticket.token, this.opts.notifyTimeoutMs).then((ack) => {
        if (ack.rejectedReason) throw new Error(`content server rejected the notice: ${ack.rejectedReason}`);
        this.table.acknowledged(server, ticket.ticketId, ack.noticesSeen);
      });
      if (early) {
        // The client already holds the ticket: its slot stays reserved until the ticket
        // expires (the server admits it only with a free slot, notified or not).
        acked.catch((err: unknown) => this.noticeFailed(server, err));
      } else {
        try {
          await acked;
        } catch (err) {
          this.table.release(server, ticket.ticketId);
          this.noticeFailed(server, err);
          failures++;
          continue;
        }
      }
      if (entry) this.queue.remove(qkey);
      this.counters.admitted++;
      return { ticket, queuedFor: msToDuration(entry ? Date.now() - entry.enqueuedAt : 0) };
    }
    throw new NoServerAvailableError(itemId, this.opts.minRetryMs);
  }

  private noticeFailed(server: ServerEntry, err: unknown): void {
    const now = Date.now();
    // One log line per episode, not one per ticket of a failed batch.
    if (server.suspectUntil <= now) this.log.warn({ serverId: server.id, err: (err as Error).message }, "ticket notice failed; avoiding the server for now");
    server.suspectUntil = now + this.opts.staleAfterMs;
  }

  private mint(server: ServerEntry, itemId: string, clientId: string, clientAddress: string, now: number): Ticket {
    const ticketId = randomUUID();
    const notBefore = new Date(now - this.opts.notBeforeSlackMs);
    const notAfter = new Date(now + this.opts.ticketTtlMs);
    const token = this.minter.mint({
      ticketId,
      clientId,
      clientAddress,
      serverId: server.id,
      contentLocation: itemId,
      notBefore,
      notAfter,
      issuer: this.opts.receptionId,
    });
    return { ticketId, serverId: server.id, serverAddress: server.address, contentLocation: itemId, token, notBefore, notAfter, keyId: this.minter.activeKeyId };
  }

  /** Resolves after the next load report, `ms`, or an abort, whichever comes first. */
  private nextReport(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.reportWaiters.delete(done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(1, ms));
      this.reportWaiters.add(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  /**
   * Queues the client (or keeps its place) and builds the busy answer with an estimate.
   * `informed` is false when the estimate rests on the configured default hold time for
   * slots taken by tickets no report covers yet.
   */
  private busy(
    itemId: string,
    clientId: string,
    qkey: string,
    queued: boolean,
    position: number,
    live: ServerEntry[],
    now: number,
  ): { error: Error; estimate: number; informed: boolean; queued: boolean } {
    const entry = queued ? this.queue.get(qkey, now) : this.queue.add(qkey, itemId, clientId, now);
    let informed = true;
    const servers = live.map((e) => {
      // Before a server has completed an order, its longest per-slot estimate (a slot
      // taken recently) stands in for the hold time; the configured default comes last.
      const longest = Math.max(0, ...(e.load?.slotFreeIn ?? []).map((d) => durationToMs(d) ?? 0));
      const hold = durationToMs(e.load?.meanHoldTime) ?? (longest > 0 ? longest : this.opts.defaultHoldMs);
      if (hold === this.opts.defaultHoldMs && e.pending.size > 0 && !e.load?.meanHoldTime && !(longest > 0)) informed = false;
      return { releases: this.table.releaseTimes(e, hold, now), holdMs: hold };
    });
    const est = estimateWait(position, servers);
    const estimate = Number.isFinite(est) ? est : this.opts.maxRetryMs;
    // Spread returns so that clients due at the same moment do not all arrive in the
    // same instant. With parking on, come back a little before the slot should free
    // (the reception holds an early client until it frees, so the wait is the estimate);
    // without, a little after. Admission follows queue positions, never arrival order.
    const spread = Math.min(this.opts.maxSpreadMs, 0.1 * estimate) * (position / (position + 4));
    const retry = Math.min(
      this.opts.maxRetryMs,
      this.opts.parkWithinMs > 0
        ? Math.max(this.opts.minRetryMs, estimate - Math.min(spread, this.opts.parkWithinMs / 2))
        : Math.max(this.opts.minRetryMs, estimate + spread),
    );
    if (entry) entry.expiresAt = now + retry + Math.max(this.opts.queueGraceMs, 0.25 * retry);
    return { error: new AllServersBusyError(itemId, position, estimate, retry), estimate, informed, queued: entry !== undefined };
  }

  private notifierFor(e: ServerEntry): TicketNotifier {
    let n = this.notifiers.get(e.id);
    if (!n) {
      n = new TicketNotifier(e.address, this.channel);
      this.notifiers.set(e.id, n);
    } else n.retarget(e.address);
    return n;
  }

  /** ReportLoad: one content server's registration, reports, catalog updates, pongs. */
  async reportLoad(requests: AsyncIterable<ReportLoadRequest>, sink: StreamSink<ReportLoadResponse>, ctx: CallContext): Promise<void> {
    const it = requests[Symbol.asyncIterator]();
    const first = await it.next();
    const reg = first.done ? undefined : first.value.message;
    if (reg?.$case !== "registration") throw invalidField("registration", "the first message must be a registration", "REGISTRATION_REQUIRED");
    const r = reg.value;
    if (!/^[a-z0-9][a-z0-9._-]{0,62}$/.test(r.serverId)) throw invalidField("registration.server_id", "must be a node id", "INVALID_SERVER_ID");
    if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(r.address)) throw invalidField("registration.address", 'must be "host:port"', "INVALID_ADDRESS");
    if (r.capacity <= 0) throw invalidField("registration.capacity", "must be > 0", "INVALID_CAPACITY");
    const stream = Symbol(r.serverId);
    const entry = this.table.register(r, stream);
    this.log.info({ serverId: r.serverId, address: r.address, capacity: r.capacity, items: r.itemIds.length }, "content server registered");
    sink.write({ message: { $case: "accepted", value: { receptionId: this.opts.receptionId, reportInterval: msToDuration(this.opts.reportIntervalMs) } } });
    const pings = new Map<bigint, number>();
    const ping = (): void => {
      const nonce = randomBytes(8).readBigUInt64BE();
      pings.set(nonce, performance.now());
      if (pings.size > 16) pings.delete(pings.keys().next().value as bigint);
      sink.write({ message: { $case: "ping", value: { nonce } } });
    };
    ping();
    const pinger = setInterval(ping, this.opts.pingIntervalMs);
    pinger.unref();
    try {
      for (;;) {
        const n = await it.next();
        if (n.done || ctx.signal.aborted) break;
        if (entry.stream !== stream) break; // replaced by a newer stream of a restarted server
        const m = n.value.message;
        if (m?.$case === "load") {
          this.table.report(entry, m.value);
          for (const wake of [...this.reportWaiters]) wake();
        }
        else if (m?.$case === "catalog") this.table.setItems(entry, m.value.itemIds);
        else if (m?.$case === "pong") {
          const sent = pings.get(m.value.nonce);
          if (sent !== undefined) {
            pings.delete(m.value.nonce);
            this.table.rtt(entry, performance.now() - sent);
          }
        }
      }
    } finally {
      clearInterval(pinger);
      this.table.disconnect(entry, stream);
    }
  }

  /** ListContentServers. */
  list(req: ListContentServersRequest): ListContentServersResponse {
    const size = req.pageSize <= 0 ? 100 : Math.min(1000, req.pageSize);
    let after = "";
    if (req.pageToken) {
      after = Buffer.from(req.pageToken, "base64url").toString("utf8");
      if (!after) throw invalidField("page_token", "is not a token from ListContentServers", "INVALID_PAGE_TOKEN");
    }
    const rows = [...this.table.entries.values()].filter((e) => e.id > after).sort((a, b) => a.id.localeCompare(b.id));
    const page = rows.slice(0, size);
    const last = page[page.length - 1];
    return {
      servers: page.map((e) => this.table.view(e)),
      nextPageToken: rows.length > size && last ? Buffer.from(last.id).toString("base64url") : "",
    };
  }

  /** GetContentServer. */
  get(serverId: string): ReturnType<ServerTable["view"]> {
    const e = this.table.entries.get(serverId);
    if (!e) throw new ServerNotFoundError(serverId);
    return this.table.view(e);
  }

  /** Figures for NodeService load reports. */
  figures(): Record<string, number> {
    const now = Date.now();
    let active = 0;
    for (const e of this.table.entries.values()) if (this.table.active(e, now)) active++;
    return { servers_active: active, servers_known: this.table.entries.size, queue_length: this.queue.size, orders_admitted: this.counters.admitted, orders_busy: this.counters.busy };
  }

  /** Stops timers and closes notice streams. */
  close(): void {
    clearInterval(this.staleWatch);
    for (const n of this.notifiers.values()) n.close();
  }
}

function validateOrder(req: PlaceOrderRequest): void {
  if (req.itemId.length > 128) throw invalidField("item_id", `at most 128 characters, got ${req.itemId.length}`, "FIELD_TOO_LONG");
  if (!ITEM_ID.test(req.itemId)) {
    throw invalidField("item_id", "required: 1..128 letters, digits, '.', '_' or '-'", "INVALID_ITEM_ID");
  }
  if (req.clientId.length > CLIENT_ID_MAX) throw invalidField("client_id", `at most ${CLIENT_ID_MAX} characters, got ${req.clientId.length}`, "FIELD_TOO_LONG");
  if (!PRINTABLE.test(req.clientId)) throw invalidField("client_id", "required: printable ASCII, not starting with a space", "INVALID_CLIENT_ID");
  if (req.requestId.length > REQUEST_ID_MAX) throw invalidField("request_id", `at most ${REQUEST_ID_MAX} characters, got ${req.requestId.length}`, "FIELD_TOO_LONG");
  if (req.requestId && !PRINTABLE.test(req.requestId)) throw invalidField("request_id", "must be printable ASCII", "INVALID_REQUEST_ID");
}

/** The mTLS certificate CN when the node runs with client certificates. */
function subjectOf(ctx: CallContext): string | undefined {
  const cn = ctx.peerCertificate?.subject?.["CN"];
  return typeof cn === "string" && cn ? cn : undefined;
}
