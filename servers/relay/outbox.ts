/**
 * The relay's durable usage outbox: usage records are written to LevelDB when a
 * subscriber leaves (or when a relay below reports them) and deleted only once the
 * upstream acknowledged them. A delivery loop sends them in batches and retries with
 * capped exponential backoff for as long as it takes; after a crash the loop starts over
 * from what is stored. Record ids make the retries safe: the source counts each once.
 */
import type { Logger } from "pino";
import { sleep } from "../../clients/grpc/retry.js";
import { status as Status } from "@grpc/grpc-js";
import { describeError, hasCode } from "../../clients/grpc/call.js";
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
    this.rejectedCol = store.collection<StoredUsage>("usage-rejected", { encoding: "json" });
  }

  private readonly rejectedCol: Collection<StoredUsage>;
  /** Records the upstream refused as invalid (moved aside, kept for operators). */
  rejected = 0;

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
    this.kick();
    await this.loop;
  }

  private async idle(ms: number): Promise<void> {
    if (this.kicked || this.stopper.signal.aborted) return;
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
    // After the upstream refused a batch as invalid, records go one by one until the bad
    // one is found and moved aside, so one bad record cannot hold up every other.
    let limit = this.opts.batchSize;
    while (!signal.aborted) {
      this.kicked = false;
      const batch: StoredUsage[] = [];
      for await (const [, v] of this.col.entries({ limit })) batch.push(v);
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
        if (limit === 1 && batch.length === 1) limit = this.opts.batchSize;
        this.log.debug({ acked: acked.length, duplicates: res.duplicateRecordIds.length }, "usage records delivered");
      } catch (err) {
        if (signal.aborted) break;
        if (hasCode(err, Status.INVALID_ARGUMENT)) {
          if (batch.length > 1) {
            limit = 1;
            continue;
          }
          const bad = batch[0] as StoredUsage;
          await this.store.batch().del(this.col, bad.recordId).put(this.rejectedCol, bad.recordId, bad).write();
          this.pendingCount = Math.max(0, this.pendingCount - 1);
          this.rejected++;
          this.log.error({ recordId: bad.recordId, error: describeError(err) }, "upstream refused a usage record as invalid; moved to usage-rejected");
          continue;
        }
        this.failedAttempts++;
        this.log.warn({ pending: this.pendingCount, retryInMs: backoff, error: describeError(err) }, "usage report failed; will retry");
        this.kicked = false;
        await sleep(backoff, signal).catch(() => undefined);
        backoff = Math.min(this.opts.retryMaxMs, backoff * 2);
      }
    }
  }
}
