/**
 * Client library of the print subsystem: the load-balanced PrintConversion client the job
 * service uses to reach the stateless workers (grpc-js round_robin, or least-loaded from
 * the workers' load reports), the PrintStore client the workers use, and the PrintJobs
 * client of the CLI and applications.
 */
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import type { ClientReadableStream } from "@grpc/grpc-js";
import {
  PrintConversionServiceClient,
  type CompleteResponse,
  type ConvertResponse,
  type DownloadRequest,
  type DownloadResponse,
  type IssueTokenResponse,
} from "../../gen/switchyard/print/v1/print_conversion_service.js";
import type { PrintSettings, SessionId } from "../../gen/switchyard/print/v1/print_job.js";
import { PrintJobsServiceClient, type SubmitJobRequest, type WatchJobResponse } from "../../gen/switchyard/print/v1/print_jobs_service.js";
import { PrintStoreServiceClient } from "../../gen/switchyard/print/v1/print_store_service.js";
import type { PrintJob } from "../../gen/switchyard/print/v1/print_job.js";
import { dial, type ChannelSettings } from "../grpc/channel.js";
import { unary, type CallSettings } from "../grpc/call.js";
import { NodeClient } from "../node/index.js";

export { PrintStoreServiceClient, PrintJobsServiceClient, PrintConversionServiceClient };
export * from "../../gen/switchyard/print/v1/print_job.js";

/** How the job service spreads worker calls. */
export type WorkerBalancing = "round_robin" | "least_loaded";

/** Options of a WorkerPool client. */
export interface WorkerPoolOptions {
  /** Worker addresses "host:port". */
  addresses: string[];
  balancing: WorkerBalancing;
  channel?: ChannelSettings;
  /** least_loaded: how often each worker reports its load, in ms. Default 500. */
  loadIntervalMs?: number;
}

interface LoadedWorker {
  address: string;
  client: PrintConversionServiceClient;
  node: NodeClient;
  /** Calls this client has in flight on the worker. */
  inFlight: number;
  /** Latest reported busy + queued renders, and utilization 0..1. */
  reported: number;
  healthy: boolean;
}

/** Resolves "host:port" to "ip:port" (grpc-js's static ipv4:/ipv6: targets need IPs). */
async function resolveAddress(a: string): Promise<{ family: 4 | 6; hostPort: string }> {
  const i = a.lastIndexOf(":");
  const host = a.slice(0, i).replace(/^\[|\]$/g, "");
  const port = a.slice(i + 1);
  const ip = isIP(host) ? host : (await lookup(host)).address;
  const family = isIP(ip) === 6 ? 6 : 4;
  return { family, hostPort: family === 6 ? `[${ip}]:${port}` : `${ip}:${port}` };
}

/**
 * The stateless workers behind a client-side load balancer. `round_robin` is grpc-js's
 * own policy over one channel to every worker address: each call goes to the next
 * READY worker. `least_loaded` keeps a channel per worker, follows each worker's
 * NodeService load reports and sends each call to the worker with the least work
 * (reported busy/queued renders plus this client's calls in flight; ties rotate).
 */
export class WorkerPool {
  private rr: PrintConversionServiceClient | undefined;
  private readonly workers: LoadedWorker[] = [];
  private readonly watchers = new AbortController();
  private turn = 0;

  private constructor(private readonly opts: WorkerPoolOptions) {}

  /** Opens the pool (resolves host names once). */
  static async open(opts: WorkerPoolOptions): Promise<WorkerPool> {
    if (opts.addresses.length === 0) throw new Error("no worker addresses");
    const pool = new WorkerPool(opts);
    if (opts.balancing === "round_robin") {
      const resolved = await Promise.all(opts.addresses.map(resolveAddress));
      const fam = resolved.every((r) => r.family === 4) ? "ipv4" : "ipv6";
      const target = `${fam}:${resolved.map((r) => r.hostPort).join(",")}`;
      pool.rr = dial(PrintConversionServiceClient, target, { ...opts.channel, loadBalancing: "round_robin" });
    } else {
      for (const address of opts.addresses) {
        const w: LoadedWorker = {
          address,
          client: dial(PrintConversionServiceClient, address, opts.channel),
          node: new NodeClient(address, opts.channel),
          inFlight: 0,
          reported: 0,
          healthy: true,
        };
        pool.workers.push(w);
        void pool.follow(w);
      }
    }
    return pool;
  }

  private async follow(w: LoadedWorker): Promise<void> {
    const signal = this.watchers.signal;
    while (!signal.aborted) {
      try {
        for await (const load of w.node.watchLoad(this.opts.loadIntervalMs ?? 500, signal)) {
          w.healthy = true;
          const f = load.roleFigures;
          w.reported = (f["renders_busy"] ?? 0) + (f["renders_queued"] ?? 0) + load.utilization;
        }
      } catch {
        // Stream failed: the worker is down or restarting.
      }
      if (signal.aborted) return;
      w.healthy = false;
      await new Promise((r) => setTimeout(r, 500).unref());
    }
  }

  /** The worker a least-loaded call goes to. */
  private pick(): LoadedWorker {
    const n = this.workers.length;
    const candidates = this.workers.some((w) => w.healthy) ? this.workers.filter((w) => w.healthy) : this.workers;
    let best: LoadedWorker | undefined;
    let bestScore = Infinity;
    const start = this.turn++ % n;
    for (let i = 0; i < n; i++) {
      const w = this.workers[(start + i) % n] as LoadedWorker;
      if (!candidates.includes(w)) continue;
      const score = w.inFlight + w.reported;
      if (score < bestScore) {
        best = w;
        bestScore = score;
      }
    }
    return best as LoadedWorker;
  }

  private async withClient<T>(fn: (c: PrintConversionServiceClient) => Promise<T>): Promise<T> {
    if (this.rr) return fn(this.rr);
    const w = this.pick();
    w.inFlight++;
    try {
      return await fn(w.client);
    } finally {
      w.inFlight--;
    }
  }

  /** IssueToken on some worker. */
  issueToken(session: SessionId, s?: CallSettings): Promise<IssueTokenResponse> {
    return this.withClient((c) => unary(c, c.issueToken, { session }, s));
  }

  /** Download on some worker. */
  download(session: SessionId, source: DownloadRequest["source"], s?: CallSettings): Promise<DownloadResponse> {
    return this.withClient((c) => unary(c, c.download, { session, source }, s));
  }

  /** Convert on some worker: yields the stream's events. */
  async *convert(session: SessionId, settings: PrintSettings | undefined, signal?: AbortSignal): AsyncGenerator<ConvertResponse> {
    const w = this.rr ? undefined : this.pick();
    const c = this.rr ?? (w as LoadedWorker).client;
    if (w) w.inFlight++;
    const call: ClientReadableStream<ConvertResponse> = c.convert({ session, ...(settings ? { settings } : {}) });
    const onAbort = (): void => call.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const m of call as AsyncIterable<ConvertResponse>) yield m;
    } finally {
      signal?.removeEventListener("abort", onAbort);
      call.cancel();
      if (w) w.inFlight--;
    }
  }

  /** Complete on some worker. */
  complete(session: SessionId, resultId: string, s?: CallSettings): Promise<CompleteResponse> {
    return this.withClient((c) => unary(c, c.complete, { session, resultId }, s));
  }

  /** Closes every channel and load watch. */
  close(): void {
    this.watchers.abort();
    this.rr?.close();
    for (const w of this.workers) {
      w.client.close();
      w.node.close();
    }
  }
}

/** A connection to the print jobs service. */
export class PrintJobsClient {
  readonly raw: PrintJobsServiceClient;

  constructor(address: string, settings: ChannelSettings = {}) {
    this.raw = dial(PrintJobsServiceClient, address, settings);
  }

  /** Submits a job; returns at once with it. */
  async submit(req: SubmitJobRequest, s?: CallSettings): Promise<PrintJob> {
    const r = await unary(this.raw, this.raw.submitJob, req, s);
    return r.job as PrintJob;
  }

  /** One job by name ("jobs/ID") or id. */
  async get(name: string, s?: CallSettings): Promise<PrintJob> {
    const r = await unary(this.raw, this.raw.getJob, { name: name.startsWith("jobs/") ? name : `jobs/${name}` }, s);
    return r.job as PrintJob;
  }

  /** Every job, newest first (follows page tokens). */
  async list(s?: CallSettings): Promise<PrintJob[]> {
    const out: PrintJob[] = [];
    let pageToken = "";
    do {
      const r = await unary(this.raw, this.raw.listJobs, { pageSize: 200, pageToken }, s);
      out.push(...r.jobs);
      pageToken = r.nextPageToken;
    } while (pageToken);
    return out;
  }

  /** Snapshots of a job until it ends. */
  async *watch(name: string, signal?: AbortSignal): AsyncGenerator<PrintJob> {
    const call: ClientReadableStream<WatchJobResponse> = this.raw.watchJob({ name: name.startsWith("jobs/") ? name : `jobs/${name}` });
    const onAbort = (): void => call.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const m of call as AsyncIterable<WatchJobResponse>) if (m.job) yield m.job;
    } finally {
      signal?.removeEventListener("abort", onAbort);
      call.cancel();
    }
  }

  /** Cancels a job. */
  async cancel(name: string, s?: CallSettings): Promise<PrintJob> {
    const r = await unary(this.raw, this.raw.cancelJob, { name: name.startsWith("jobs/") ? name : `jobs/${name}`, requestId: "" }, s);
    return r.job as PrintJob;
  }

  close(): void {
    this.raw.close();
  }
}

/** Parses "printstore://host:port/results/ID/..." into the store address and result id. */
export function parsePrintStoreUrl(url: string): { address: string; resultId: string; page?: number } {
  const m = /^printstore:\/\/([^/]+)\/results\/([A-Za-z0-9_-]+)\/(metafile|pages\/(\d+))$/.exec(url);
  if (!m?.[1] || !m[2]) throw new Error(`not a print store URL: ${url}`);
  return { address: m[1], resultId: m[2], ...(m[4] ? { page: Number(m[4]) } : {}) };
}
