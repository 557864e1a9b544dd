/**
 * The relay's durable usage outbox: usage records are written to LevelDB when a
 * subscriber leaves (or when a relay below reports them) and deleted only once the
 * upstream acknowledged them. A delivery loop sends them in batches and retries with
 * capped exponential backoff for as long as it takes; after a crash the loop starts over
 * from what is stored. Record ids make the retries safe: the source counts each once.
 */
import type { Logger } from "pino";
import { sleep } from "../../clients/grpc/retry.js";
import { describeError } from "../../clients/grpc/call.js";
import type { StreamSourceClient } from "../../clients/relay/index.js";
import type { Collection, NodeStore } from "../runtime/store.js";
import { fromStored, type StoredUsage } from "./usage.js";

/** Options of the outbox's delivery loop. */
export interface OutboxOptions {
  /** Records per ReportUsage call (at most 500). */
  batchSize: number;
  /** First wait after a failed delivery, in ms. */
  retryMinMs: number;
  /** Longest wait between attempts, in ms. */
  retryMaxMs: number;
  /** Deadline of one ReportUsage call, in ms. */
  callTimeoutMs: number;
}

/** Usage records waiting for the upstream's acknowledgement. */
export class UsageOutbox {
  private readonly col: Collection<StoredUsage>;
  private pendingCount = 0;
  private wake: (() => void) | undefined;
  private kicked = false;
  private loop: Promise<void> | undefined;
  private readonly stopper = new AbortController();
  /** Records acknowledged by the upstream since start. */
  delivered = 0;
  /** Failed delivery attempts since start. */
  failedAttempts = 0;

  constructor(
    private readonly store: NodeStore,
    private readonly upstream: StreamSourceClient,
    private readonly opts: OutboxOptions,
    private readonly log: Logger,
  ) {
    this.col = store.collection<StoredUsage>("usage-outbox", { encoding: "json" });
  }

  /** Records stored and not yet acknowledged. */
  get pending(): number {
    return this.pendingCount;
  }

  /** Counts what a previous run left behind and starts delivering. */
  async start(): Promise<void> {
    this.pendingCount = await this.col.count();
    if (this.pendingCount) this.log.info({ pending: this.pendingCount }, "usage records from a previous run to deliver");
    this.loop = this.run();
  }

  /** Stores records durably (atomically), then has them delivered. Resolves after the write. */
  async add(records: StoredUsage[]): Promise<void> {
    if (!records.length) return;
    const b = this.store.batch();
    const fresh: StoredUsage[] = [];
    const known = await this.col.getMany(records.map((r) => r.recordId));
    records.forEach((r, i) => {
      if (known[i] === undefined) fresh.push(r);
      b.put(this.col, r.recordId, r);
    });
    await b.write();
    this.pendingCount += fresh.length;
    this.kick();
  }

  /** Wakes the delivery loop now. */
  kick(): void {
    this.kicked = true;
    this.wake?.();
  }

  /** Stops the loop (records stay stored for the next start). */
  async stop(): Promise<void> {
    this.stopper.abort(new Error("relay stopping"));
    this.wake?.();
    await this.loop;
  }

  private async idle(ms: number): Promise<void> {
    if (this.kicked) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
    this.wake = undefined;
  }

  private async run(): Promise<void> {
    const signal = this.stopper.signal;
    let backoff = this.opts.retryMinMs;
    while (!signal.aborted) {
      this.kicked = false;
      const batch: StoredUsage[] = [];
      for await (const [, v] of this.col.entries({ limit: this.opts.batchSize })) batch.push(v);
      if (batch.length === 0) {
        // Nothing to send: sleep until a record is added (the timer is only a safety net).
        await this.idle(60_000);
        continue;
      }
      try {
        const res = await this.upstream.reportUsage(batch.map(fromStored), { deadline: Date.now() + this.opts.callTimeoutMs, signal });
        const acked = [...res.acceptedRecordIds, ...res.duplicateRecordIds];
        const b = this.store.batch();
        for (const id of acked) b.del(this.col, id);
        await b.write();
        this.pendingCount = Math.max(0, this.pendingCount - acked.length);
        this.delivered += acked.length;
        backoff = this.opts.retryMinMs;
        this.log.debug({ acked: acked.length, duplicates: res.duplicateRecordIds.length }, "usage records delivered");
      } catch (err) {
        if (signal.aborted) break;
        this.failedAttempts++;
        this.log.warn({ pending: this.pendingCount, retryInMs: backoff, error: describeError(err) }, "usage report failed; will retry");
        this.kicked = false;
        await sleep(backoff, signal).catch(() => undefined);
        backoff = Math.min(this.opts.retryMaxMs, backoff * 2);
      }
    }
  }
}
