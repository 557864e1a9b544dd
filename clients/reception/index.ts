/**
 * Client library of the Reception subsystem, used by people ordering content (the
 * `order()` flow and the CLI), by operators, and by the servers themselves (content
 * servers report load to receptions through ReceptionClient; receptions notify content
 * servers through ContentServerClient).
 */
import { createHash } from "node:crypto";
import { status as Status, type ClientDuplexStream, type ClientReadableStream } from "@grpc/grpc-js";
import {
  ReceptionServiceClient,
  type GetContentServerResponse,
  type ListContentServersResponse,
  type PlaceOrderRequest,
  type PlaceOrderResponse,
  type ReportLoadRequest,
  type ReportLoadResponse,
} from "../../gen/switchyard/reception/v1/reception_service.js";
import {
  ContentServerServiceClient,
  type CompleteOrderResponse,
  type FetchContentResponse,
  type ListItemsResponse,
  type NotifyTicketsRequest,
  type NotifyTicketsResponse,
  type PublishItemRequest,
  type PublishItemResponse,
} from "../../gen/switchyard/reception/v1/content_server_service.js";
import type { CatalogItem, ContentServer, ServerLoad } from "../../gen/switchyard/reception/v1/content_server.js";
import { ServerState } from "../../gen/switchyard/reception/v1/content_server.js";
import type { Ticket } from "../../gen/switchyard/reception/v1/ticket.js";
import { dial, type ChannelSettings } from "../grpc/channel.js";
import { cancelledError, unary, type CallSettings } from "../grpc/call.js";
import { parseRichError } from "../grpc/rich-error.js";
import { sleep } from "../grpc/retry.js";
import { durationToMs } from "../grpc/duration.js";

export type { CatalogItem, ContentServer, ServerLoad, Ticket, PlaceOrderResponse, ReportLoadRequest, ReportLoadResponse, NotifyTicketsRequest, NotifyTicketsResponse };
export { ServerState };

/** A Buffer view of bytes (no copy). */
function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.length);
}

/** Connection to a reception. */
export class ReceptionClient {
  /** The generated client, for calls this wrapper does not cover. */
  readonly raw: ReceptionServiceClient;

  constructor(
    readonly target: string,
    settings: ChannelSettings = {},
  ) {
    this.raw = dial(ReceptionServiceClient, target, settings);
  }

  /** One PlaceOrder call (no retries; see `order()` for the whole flow). */
  placeOrder(req: Partial<PlaceOrderRequest> & { itemId: string; clientId: string }, s?: CallSettings): Promise<PlaceOrderResponse> {
    return unary(this.raw, this.raw.placeOrder, { requestId: "", ...req }, s);
  }

  /** Every row of the reception's live table (follows pages). */
  async listServers(s?: CallSettings): Promise<ContentServer[]> {
    const out: ContentServer[] = [];
    let pageToken = "";
    do {
      const res: ListContentServersResponse = await unary(this.raw, this.raw.listContentServers, { pageSize: 1000, pageToken }, s);
      out.push(...res.servers);
      pageToken = res.nextPageToken;
    } while (pageToken);
    return out;
  }

  /** One row of the live table. */
  async getServer(serverId: string, s?: CallSettings): Promise<ContentServer> {
    const res: GetContentServerResponse = await unary(this.raw, this.raw.getContentServer, { serverId }, s);
    if (!res.server) throw new Error("reception answered GetContentServer without a server");
    return res.server;
  }

  /** Opens the load-report stream a content server keeps with the reception. */
  reportLoad(): ClientDuplexStream<ReportLoadRequest, ReportLoadResponse> {
    return this.raw.reportLoad();
  }

  /** Closes the channel. */
  close(): void {
    this.raw.close();
  }
}

/** What a content-server fetch yields. */
export type FetchPart = { header: CatalogItem } | { chunk: Uint8Array };

/** Connection to a content server. */
export class ContentServerClient {
  /** The generated client. */
  readonly raw: ContentServerServiceClient;

  constructor(
    readonly target: string,
    settings: ChannelSettings = {},
  ) {
    this.raw = dial(ContentServerServiceClient, target, settings);
  }

  /** Streams the content a ticket names: the header first, then chunks. */
  async *fetch(token: Uint8Array, clientId: string, opts: { offset?: number; signal?: AbortSignal } = {}): AsyncGenerator<FetchPart> {
    if (opts.signal?.aborted) throw cancelledError(opts.signal);
    const call: ClientReadableStream<FetchContentResponse> = this.raw.fetchContent({ token: asBuffer(token), clientId, offset: BigInt(opts.offset ?? 0) });
    const onAbort = (): void => call.cancel();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const m of call as AsyncIterable<FetchContentResponse>) {
        if (m.part?.$case === "header") yield { header: m.part.value };
        else if (m.part?.$case === "chunk") yield { chunk: m.part.value };
      }
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
      call.cancel();
    }
  }

  /** Marks the ticket's order complete (frees the slot; idempotent). */
  complete(token: Uint8Array, clientId: string, s?: CallSettings): Promise<CompleteOrderResponse> {
    return unary(this.raw, this.raw.completeOrder, { token: asBuffer(token), clientId }, s);
  }

  /** Publishes an item from a byte source (Buffer or async iterable of chunks). */
  publish(
    header: { itemId: string; sizeBytes: number; contentType?: string; sha256?: Uint8Array; requestId?: string },
    data: Uint8Array | AsyncIterable<Uint8Array>,
    s: CallSettings & { chunkBytes?: number } = {},
  ): Promise<PublishItemResponse> {
    return new Promise<PublishItemResponse>((resolve, reject) => {
      const call = this.raw.publishItem((err, res) => (err ? reject(err) : resolve(res)));
      const onAbort = (): void => call.cancel();
      s.signal?.addEventListener("abort", onAbort, { once: true });
      const write = (m: PublishItemRequest): Promise<void> =>
        new Promise((r) => {
          if (call.write(m)) r();
          else call.once("drain", () => r());
        });
      void (async () => {
        try {
          await write({
            part: {
              $case: "header",
              value: {
                itemId: header.itemId,
                sizeBytes: BigInt(header.sizeBytes),
                contentType: header.contentType ?? "",
                sha256: asBuffer(header.sha256 ?? new Uint8Array()),
                requestId: header.requestId ?? "",
              },
            },
          });
          const step = s.chunkBytes ?? 64 * 1024;
          if (data instanceof Uint8Array) {
            for (let o = 0; o < data.length; o += step) await write({ part: { $case: "chunk", value: asBuffer(data.subarray(o, o + step)) } });
          } else {
            for await (const c of data) await write({ part: { $case: "chunk", value: asBuffer(c) } });
          }
          call.end();
        } catch (err) {
          call.cancel();
          reject(err);
        } finally {
          s.signal?.removeEventListener("abort", onAbort);
        }
      })();
    });
  }

  /** Every catalog item (follows pages). */
  async listItems(s?: CallSettings): Promise<CatalogItem[]> {
    const out: CatalogItem[] = [];
    let pageToken = "";
    do {
      const res: ListItemsResponse = await unary(this.raw, this.raw.listItems, { pageSize: 1000, pageToken }, s);
      out.push(...res.items);
      pageToken = res.nextPageToken;
    } while (pageToken);
    return out;
  }

  /** Opens the ticket-notice stream a reception keeps with this server. */
  notifyTickets(): ClientDuplexStream<NotifyTicketsRequest, NotifyTicketsResponse> {
    return this.raw.notifyTickets();
  }

  /** Closes the channel. */
  close(): void {
    this.raw.close();
  }
}

/** Events of an order, in the order they happen. */
export type OrderEvent =
  | { type: "waiting"; attempt: number; position: number | undefined; estimatedWaitMs: number | undefined; retryInMs: number; reason: string }
  | { type: "admitted"; ticket: Ticket; waitedMs: number; attempts: number }
  | { type: "progress"; bytes: number; totalBytes: number }
  | { type: "done"; item: CatalogItem; bytes: number; sha256: Buffer; waitedMs: number; fetchMs: number };

/** Options of `order()`. */
export interface OrderOptions {
  /** Reception address. */
  reception: string;
  /** Item to fetch. */
  itemId: string;
  /** Who is ordering. */
  clientId: string;
  /** Receives the content chunk by chunk, in order (offset = bytes before this chunk). */
  sink: (chunk: Uint8Array, offset: number) => Promise<void> | void;
  /** Called with each event. */
  onEvent?: (e: OrderEvent) => void;
  /** Stops waiting / fetching. */
  signal?: AbortSignal;
  /** Give up when the total wait would pass this, in ms. Default 10 minutes. */
  maxWaitMs?: number;
  /** Channel settings for the reception and content servers. */
  settings?: ChannelSettings;
  /** Reuse these clients (keyed by address) instead of dialling; not closed by order(). */
  clients?: { reception?: ReceptionClient; content?: Map<string, ContentServerClient> };
}

/** Outcome of a finished order. */
export interface OrderResult {
  item: CatalogItem;
  ticket: Ticket;
  bytes: number;
  sha256: Buffer;
  /** From the first PlaceOrder until admission. */
  waitedMs: number;
  /** From admission until the last byte. */
  fetchMs: number;
  attempts: number;
  /** The first wait estimate the reception gave (undefined when admitted at once). */
  firstEstimateMs: number | undefined;
  /** When that estimate arrived, in ms after the order started (the estimate counts from then). */
  firstEstimateAtMs: number | undefined;
}

/** An order that gave up; `cause` is the last gRPC error. */
export class OrderError extends Error {
  override name = "OrderError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

const RETRY_REASONS = new Set(["ALL_SERVERS_BUSY", "NO_SERVER_AVAILABLE", "SERVER_AT_CAPACITY", "NODE_SHUTTING_DOWN"]);

function retryable(err: unknown): { delay: number; reason: string; position?: number; estimate?: number } | undefined {
  const st = parseRichError(err);
  const reason = st.errorInfo?.reason ?? Status[st.code] ?? "UNKNOWN";
  if (st.code === Status.CANCELLED) return undefined;
  if (RETRY_REASONS.has(reason) || st.code === Status.UNAVAILABLE || st.code === Status.RESOURCE_EXHAUSTED) {
    const md = st.errorInfo?.metadata ?? {};
    const pos = md["queue_position"] !== undefined ? Number(md["queue_position"]) : undefined;
    const est = md["estimated_wait_ms"] !== undefined ? Number(md["estimated_wait_ms"]) : undefined;
    // Without RetryInfo (e.g. a broken connection), back off a little.
    const delay = st.retryDelayMs ?? 500;
    return { delay, reason, ...(pos !== undefined ? { position: pos } : {}), ...(est !== undefined ? { estimate: est } : {}) };
  }
  return undefined;
}

/**
 * The whole order flow: PlaceOrder, waiting after each RetryInfo delay (keeping the
 * client's place in the reception's queue), then fetching with the ticket from the
 * chosen content server and checking the SHA-256. A content server that turns out to be
 * full or gone sends the client back to the reception. Rejects with OrderError when the
 * wait would pass `maxWaitMs`, when aborted, or on a final error.
 */
export async function order(o: OrderOptions): Promise<OrderResult> {
  const reception = o.clients?.reception ?? new ReceptionClient(o.reception, o.settings);
  const content = o.clients?.content ?? new Map<string, ContentServerClient>();
  const ownContent = !o.clients?.content;
  const maxWait = o.maxWaitMs ?? 600_000;
  const started = Date.now();
  let attempts = 0;
  let firstEstimate: number | undefined;
  let firstEstimateAt: number | undefined;
  const emit = (e: OrderEvent): void => o.onEvent?.(e);
  try {
    for (;;) {
      let ticket: Ticket | undefined;
      try {
        attempts++;
        const res = await reception.placeOrder({ itemId: o.itemId, clientId: o.clientId }, o.signal ? { signal: o.signal } : {});
        ticket = res.ticket;
      } catch (err) {
        const r = retryable(err);
        if (!r || o.signal?.aborted) throw new OrderError(`order of ${o.itemId} failed: ${parseRichError(err).message}`, { cause: err });
        if (firstEstimate === undefined && r.estimate !== undefined) {
          firstEstimate = r.estimate;
          firstEstimateAt = Date.now() - started;
        }
        if (Date.now() + r.delay - started > maxWait) {
          throw new OrderError(`gave up waiting for ${o.itemId}: the next retry would pass the ${maxWait} ms limit`, { cause: err });
        }
        emit({ type: "waiting", attempt: attempts, position: r.position, estimatedWaitMs: r.estimate, retryInMs: r.delay, reason: r.reason });
        await sleep(r.delay, o.signal).catch((e: unknown) => {
          throw new OrderError(`order of ${o.itemId} cancelled while waiting`, { cause: e });
        });
        continue;
      }
      if (!ticket) throw new OrderError("reception answered PlaceOrder without a ticket");
      const waitedMs = Date.now() - started;
      emit({ type: "admitted", ticket, waitedMs, attempts });
      let cs = content.get(ticket.serverAddress);
      if (!cs) {
        cs = new ContentServerClient(ticket.serverAddress, o.settings);
        content.set(ticket.serverAddress, cs);
      }
      const fetchStart = Date.now();
      let header: CatalogItem | undefined;
      let bytes = 0;
      const hash = createHash("sha256");
      try {
        for await (const part of cs.fetch(ticket.token, o.clientId, o.signal ? { signal: o.signal } : {})) {
          if ("header" in part) {
            header = part.header;
            continue;
          }
          await o.sink(part.chunk, bytes);
          hash.update(part.chunk);
          bytes += part.chunk.length;
          emit({ type: "progress", bytes, totalBytes: Number(header?.sizeBytes ?? 0) });
        }
      } catch (err) {
        // A full or vanished server before any byte arrived: place the order again.
        const r = retryable(err);
        if (r && bytes === 0 && !o.signal?.aborted) {
          emit({ type: "waiting", attempt: attempts, position: undefined, estimatedWaitMs: undefined, retryInMs: r.delay, reason: r.reason });
          await sleep(r.delay, o.signal);
          continue;
        }
        throw new OrderError(`fetch of ${o.itemId} from ${ticket.serverId} failed: ${parseRichError(err).message}`, { cause: err });
      }
      if (!header) throw new OrderError(`content server ${ticket.serverId} sent no header`);
      const sha256 = hash.digest();
      if (bytes !== Number(header.sizeBytes) || !sha256.equals(Buffer.from(header.sha256))) {
        throw new OrderError(`content of ${o.itemId} from ${ticket.serverId} is corrupt (size or SHA-256 mismatch)`);
      }
      const fetchMs = Date.now() - fetchStart;
      emit({ type: "done", item: header, bytes, sha256, waitedMs, fetchMs });
      return { item: header, ticket, bytes, sha256, waitedMs, fetchMs, attempts, firstEstimateMs: firstEstimate, firstEstimateAtMs: firstEstimateAt };
    }
  } finally {
    if (!o.clients?.reception) reception.close();
    if (ownContent) for (const c of content.values()) c.close();
  }
}

/** Milliseconds of a load report's mean hold time, or undefined. */
export function meanHoldMs(load: ServerLoad | undefined): number | undefined {
  return durationToMs(load?.meanHoldTime);
}
