/**
 * Ticket notices from the reception to one content server over a long-lived
 * NotifyTickets stream (much cheaper per order than a unary call). Answers come back in
 * order; a broken stream fails every notice in flight and is re-opened on the next one.
 */
import type { ClientDuplexStream } from "@grpc/grpc-js";
import type { ChannelSettings } from "../../clients/grpc/channel.js";
import { RECONNECT } from "./load-reporter.js";
import { ContentServerClient, type NotifyTicketsRequest, type NotifyTicketsResponse } from "../../clients/reception/index.js";

interface Waiter {
  resolve: (r: NotifyTicketsResponse) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** Sends ticket notices to one content server. */
export class TicketNotifier {
  private client: ContentServerClient;
  private call: ClientDuplexStream<NotifyTicketsRequest, NotifyTicketsResponse> | undefined;
  private readonly waiting: Waiter[] = [];

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
      const w = this.waiting.shift();
      if (!w) return;
      clearTimeout(w.timer);
      w.resolve(r);
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

  private fail(err: Error): void {
    const c = this.call;
    this.call = undefined;
    c?.cancel();
    for (const w of this.waiting.splice(0)) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  /** Announces a ticket; resolves with the server's answer or rejects after `timeoutMs`. */
  notify(token: Buffer, timeoutMs: number): Promise<NotifyTicketsResponse> {
    return new Promise((resolve, reject) => {
      const call = this.call ?? this.open();
      const timer = setTimeout(() => this.fail(new Error(`content server did not answer a notice within ${timeoutMs} ms`)), timeoutMs);
      timer.unref();
      this.waiting.push({ resolve, reject, timer });
      call.write({ token });
    });
  }

  /** Closes the stream and the channel. */
  close(): void {
    this.fail(new Error("reception shutting down"));
    this.client.close();
  }
}
