/**
 * Ticket notices from the reception to one content server over a long-lived
 * NotifyTickets stream (much cheaper per order than a unary call). The tickets issued in
 * one turn of the event loop go out as one request; answers come back in order. A
 * broken stream fails every notice in flight and is re-opened on the next one.
 */
import type { ClientDuplexStream } from "@grpc/grpc-js";
import type { ChannelSettings } from "../../clients/grpc/channel.js";
import { RECONNECT } from "./load-reporter.js";
import { ContentServerClient, type NotifyTicketsRequest, type NotifyTicketsResponse } from "../../clients/reception/index.js";

/** The server's answer to one notice. */
export interface NoticeAck {
  /** Empty when accepted; otherwise the ticket error reason. */
  rejectedReason: string;
  /** A load report with at least this notices_seen counts the ticket. */
  noticesSeen: bigint;
}

interface Waiter {
  resolve: (r: NoticeAck) => void;
  reject: (e: Error) => void;
}

interface Sent {
  waiters: Waiter[];
  timer: NodeJS.Timeout;
}

/** Most tokens in one request. */
const MAX_BATCH = 256;

/** Sends ticket notices to one content server. */
export class TicketNotifier {
  private client: ContentServerClient;
  private call: ClientDuplexStream<NotifyTicketsRequest, NotifyTicketsResponse> | undefined;
  /** Requests written and not answered yet, oldest first. */
  private readonly sent: Sent[] = [];
  /** Notices of this turn, not written yet. */
  private tokens: Buffer[] = [];
  private waiters: Waiter[] = [];
  private timeoutMs = 0;
  private scheduled = false;
  /**
   * True once the server answered a request on the current stream and refused none of
   * it: its keys match and it is listening. Cleared by any failure or refusal.
   */
  proven = false;

  private readonly settings: ChannelSettings;

  constructor(
    private address: string,
    settings: ChannelSettings,
  ) {
    this.settings = { ...settings, extra: { ...RECONNECT, ...settings.extra } };
    this.client = new ContentServerClient(address, this.settings);
  }

  /** Points the notifier at a new address (the server re-registered elsewhere). */
  retarget(address: string): void {
    if (address === this.address) return;
    this.fail(new Error("content server moved"));
    this.client.close();
    this.address = address;
    this.client = new ContentServerClient(address, this.settings);
  }

  private open(): ClientDuplexStream<NotifyTicketsRequest, NotifyTicketsResponse> {
    const call = this.client.notifyTickets();
    call.on("data", (r: NotifyTicketsResponse) => {
      const s = this.sent.shift();
      if (!s) return;
      clearTimeout(s.timer);
      const rejected = new Map(r.rejections.map((x) => [x.index, x.reason || "REJECTED"]));
      this.proven = rejected.size === 0;
      s.waiters.forEach((w, i) => w.resolve({ rejectedReason: rejected.get(i) ?? "", noticesSeen: r.noticesSeen }));
    });
    const broken = (err?: Error): void => {
      if (this.call !== call) return;
      this.call = undefined;
      this.fail(err ?? new Error("notice stream ended"));
    };
    call.on("error", broken);
    call.on("end", () => broken());
    this.call = call;
    return call;
  }

  /** Fails every notice written and not answered (queued ones go out on a new stream). */
  private fail(err: Error): void {
    this.proven = false;
    const c = this.call;
    this.call = undefined;
    c?.cancel();
    for (const s of this.sent.splice(0)) {
      clearTimeout(s.timer);
      for (const w of s.waiters) w.reject(err);
    }
  }

  /** Writes the notices of this turn as one request. */
  private flush(): void {
    this.scheduled = false;
    if (!this.tokens.length) return;
    const tokens = this.tokens;
    const waiters = this.waiters;
    this.tokens = [];
    this.waiters = [];
    const call = this.call ?? this.open();
    const ms = this.timeoutMs;
    const timer = setTimeout(() => this.fail(new Error(`content server did not answer a notice within ${ms} ms`)), ms);
    timer.unref();
    this.sent.push({ waiters, timer });
    call.write({ tokens });
  }

  /** Announces a ticket; resolves with the server's answer or rejects after `timeoutMs`. */
  notify(token: Buffer, timeoutMs: number): Promise<NoticeAck> {
    return new Promise((resolve, reject) => {
      this.tokens.push(token);
      this.waiters.push({ resolve, reject });
      this.timeoutMs = this.tokens.length === 1 ? timeoutMs : Math.min(this.timeoutMs, timeoutMs);
      if (this.tokens.length >= MAX_BATCH) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Closes the stream and the channel. */
  close(): void {
    this.flush();
    this.fail(new Error("reception shutting down"));
    this.client.close();
  }
}
