/**
 * The printer's thin client: the generated stubs plus a small loop. It attaches to the
 * job service, and for every print request pulls the pages from the print store with the
 * request's token (following the metafile as it grows, so page 1 prints while later pages
 * are still converting), hands them to the device, and reports done / cancelled / failed.
 */
import type { ClientReadableStream } from "@grpc/grpc-js";
import { PrintResultServiceClient, type WatchMetafileResponse } from "../../gen/switchyard/print/v1/print_result_service.js";
import type { MetafilePage } from "../../gen/switchyard/print/v1/print_store.js";
import { PrinterServiceClient, PrintOutcome, type AttachResponse, type PrintRequest } from "../../gen/switchyard/print/v1/printer_service.js";
import { dial, type ChannelSettings } from "../grpc/channel.js";
import { unary } from "../grpc/call.js";
import { errorReason } from "../grpc/rich-error.js";
import { sleep } from "../grpc/retry.js";
import { parsePrintStoreUrl } from "../print/index.js";

export { PrintOutcome, type PrintRequest };

/** One fetched page. */
export interface FetchedPage {
  page: MetafilePage;
  jpeg: Buffer;
}

/** How a device ended a job. */
export interface DeviceResult {
  outcome: PrintOutcome;
  reason: string;
  pagesPrinted: number;
  /** For operators: what went wrong, in words. */
  message?: string;
}

/** What drives the device: prints the pages of one request. Throwing reports FAILED. */
export type DeviceHandler = (req: PrintRequest, pages: AsyncIterable<FetchedPage>, signal: AbortSignal) => Promise<DeviceResult>;

/** Options of runPrinter. */
export interface PrinterOptions {
  /** Address of the print-jobs node. */
  jobs: string;
  printerId: string;
  color: boolean;
  description?: string;
  channel?: ChannelSettings;
  /** Stops the loop. */
  signal: AbortSignal;
  /** Called when the attach stream fails (before reconnecting). */
  onDisconnect?: (err: unknown) => void;
}

const stores = new Map<string, PrintResultServiceClient>();

function storeClient(address: string, s?: ChannelSettings): PrintResultServiceClient {
  let c = stores.get(address);
  if (!c) {
    c = dial(PrintResultServiceClient, address, s);
    stores.set(address, c);
  }
  return c;
}

/** The pages of a print request, in order, as the metafile grows (token checked by the store). */
export async function* fetchPages(req: PrintRequest, signal: AbortSignal, s?: ChannelSettings): AsyncGenerator<FetchedPage> {
  const { address, resultId } = parsePrintStoreUrl(req.metafileUrl);
  const c = storeClient(address, s);
  const call: ClientReadableStream<WatchMetafileResponse> = c.watchMetafile({ resultId, token: req.token });
  const onAbort = (): void => call.cancel();
  signal.addEventListener("abort", onAbort, { once: true });
  let next = 1;
  try {
    for await (const m of call as AsyncIterable<WatchMetafileResponse>) {
      const meta = m.metafile;
      if (!meta) continue;
      while (next <= meta.pages.length) {
        const r = await unary(c, c.getPage, { resultId, token: req.token, pageNumber: next }, { signal });
        yield { page: r.page as MetafilePage, jpeg: r.jpeg };
        next++;
      }
      if (meta.failed) throw Object.assign(new Error("the conversion failed"), { reason: "CONVERSION_FAILED" });
      if (meta.complete) return;
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    call.cancel();
  }
}

/** Attaches as `printerId` and prints requests one after another until `signal` aborts. */
export async function runPrinter(opts: PrinterOptions, device: DeviceHandler): Promise<void> {
  const client = dial(PrinterServiceClient, opts.jobs, opts.channel);
  const cancels = new Map<string, AbortController>();
  let queue = Promise.resolve();
  try {
    while (!opts.signal.aborted) {
      const call: ClientReadableStream<AttachResponse> = client.attach({ printerId: opts.printerId, color: opts.color, description: opts.description ?? "" });
      const onAbort = (): void => call.cancel();
      opts.signal.addEventListener("abort", onAbort, { once: true });
      try {
        for await (const ev of call as AsyncIterable<AttachResponse>) {
          const e = ev.event;
          if (e?.$case === "cancelJobId") cancels.get(e.value)?.abort(new Error("cancelled by the job service"));
          if (e?.$case !== "print") continue;
          const req = e.value;
          const ac = new AbortController();
          cancels.set(req.jobId, ac);
          queue = queue.then(async () => {
            let result: DeviceResult;
            const signal = AbortSignal.any([ac.signal, opts.signal]);
            try {
              result = await device(req, fetchPages(req, signal, opts.channel), signal);
            } catch (err) {
              result = {
                outcome: ac.signal.aborted ? PrintOutcome.CANCELLED : PrintOutcome.FAILED,
                reason: ac.signal.aborted ? "JOB_CANCELLED" : (errorReason(err) ?? (err as { reason?: string }).reason ?? "PRINT_ERROR"),
                pagesPrinted: 0,
                message: String((err as Error)?.message ?? err),
              };
            }
            cancels.delete(req.jobId);
            if (opts.signal.aborted) return;
            await unary(client, client.reportPrintResult, { jobId: req.jobId, printerId: req.printerId, outcome: result.outcome, reason: result.reason, pagesPrinted: result.pagesPrinted, message: result.message ?? "" }).catch((err: unknown) => opts.onDisconnect?.(err));
          });
        }
      } catch (err) {
        if (!opts.signal.aborted) opts.onDisconnect?.(err);
      } finally {
        opts.signal.removeEventListener("abort", onAbort);
      }
      if (!opts.signal.aborted) await sleep(500, opts.signal).catch(() => undefined);
    }
    await queue;
  } finally {
    client.close();
  }
}
