/**
 * The content server's side of ReportLoad: one stream per reception, opened by the
 * content server (so it works from behind a firewall), re-opened with backoff when it
 * breaks. It sends a registration, then a report at least every interval and soon after
 * each change, catalog updates, and answers pings at once.
 */
import type { Logger } from "pino";
import type { ChannelSettings } from "../../clients/grpc/channel.js";
import { durationToMs } from "../../clients/grpc/duration.js";
import { sleep } from "../../clients/grpc/retry.js";
import { ReceptionClient, type ReportLoadRequest, type ServerLoad } from "../../clients/reception/index.js";

/** Channel options for peers that come back after a restart. */
export const RECONNECT = { "grpc.initial_reconnect_backoff_ms": 200, "grpc.max_reconnect_backoff_ms": 2_000 };

/** What the reporter needs from its content server. */
export interface ReporterSource {
  serverId: string;
  capacity: number;
  incarnation: string;
  labels: Record<string, string>;
  itemIds(): Promise<string[]>;
  load(): ServerLoad;
}

/** Keeps one ReportLoad stream to one reception alive. */
export class LoadReporter {
  private readonly client: ReceptionClient;
  private write: ((m: ReportLoadRequest) => void) | undefined;
  private lastSent = 0;
  private pendingTimer: NodeJS.Timeout | undefined;
  private intervalMs: number;
  /** True while a stream is registered. */
  connected = false;

  constructor(
    readonly target: string,
    private readonly src: ReporterSource,
    private readonly address: () => string,
    settings: ChannelSettings,
    private readonly log: Logger,
    private readonly opts: { intervalMs: number; minGapMs: number },
  ) {
    // Reconnect quickly after a reception restart (grpc-js would back off up to 2 min).
    this.client = new ReceptionClient(target, { ...settings, extra: { ...RECONNECT, ...settings.extra } });
    this.intervalMs = opts.intervalMs;
  }

  /** Runs until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    let backoff = 200;
    while (!signal.aborted) {
      const started = Date.now();
      try {
        await this.once(signal);
      } catch (err) {
        if (signal.aborted) break;
        this.log.warn({ reception: this.target, err: (err as Error).message }, "load report stream to reception broke; reconnecting");
      }
      if (Date.now() - started > 5_000) backoff = 200;
      await sleep(backoff, signal).catch(() => undefined);
      backoff = Math.min(5_000, backoff * 2);
    }
  }

  private async once(signal: AbortSignal): Promise<void> {
    const call = this.client.reportLoad();
    // The call may fail before the loop below reads it; the loop still sees the error.
    call.on("error", () => undefined);
    const onAbort = (): void => {
      call.end();
    };
    signal.addEventListener("abort", onAbort, { once: true });
    const heartbeat = setInterval(() => this.reportNow(), this.intervalMs);
    heartbeat.unref();
    try {
      call.write({
        message: {
          $case: "registration",
          value: {
            serverId: this.src.serverId,
            address: this.address(),
            capacity: this.src.capacity,
            itemIds: await this.src.itemIds(),
            labels: this.src.labels,
            incarnation: this.src.incarnation,
          },
        },
      });
      this.write = (m) => {
        if (!call.writableEnded) call.write(m);
      };
      for await (const res of call) {
        const m = res.message;
        if (m?.$case === "accepted") {
          this.connected = true;
          this.log.info({ reception: m.value.receptionId }, "registered with reception");
          const ms = durationToMs(m.value.reportInterval);
          if (ms && ms > 0 && ms < this.intervalMs) {
            this.intervalMs = ms;
            heartbeat.refresh();
          }
          this.reportNow();
        } else if (m?.$case === "ping") {
          this.write({ message: { $case: "pong", value: { nonce: m.value.nonce } } });
        }
      }
    } finally {
      clearInterval(heartbeat);
      signal.removeEventListener("abort", onAbort);
      this.write = undefined;
      this.connected = false;
      call.cancel();
    }
  }

  /** Sends a report now. */
  reportNow(): void {
    if (!this.write) return;
    if (this.pendingTimer) {
      clearTimeout(this.pendingTimer);
      this.pendingTimer = undefined;
    }
    this.lastSent = Date.now();
    this.write({ message: { $case: "load", value: this.src.load() } });
  }

  /** Sends a report soon (at most one per minimum gap). */
  changed(): void {
    if (!this.write || this.pendingTimer) return;
    const wait = this.lastSent + this.opts.minGapMs - Date.now();
    if (wait <= 0) this.reportNow();
    else {
      this.pendingTimer = setTimeout(() => this.reportNow(), wait);
      this.pendingTimer.unref();
    }
  }

  /** Sends the full item list. */
  catalogChanged(itemIds: string[]): void {
    this.write?.({ message: { $case: "catalog", value: { itemIds } } });
  }

  /** Closes the channel. */
  close(): void {
    if (this.pendingTimer) clearTimeout(this.pendingTimer);
    this.client.close();
  }
}
