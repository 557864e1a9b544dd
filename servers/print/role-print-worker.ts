/**
 * Role "print-worker": a stateless PrintConversion worker. It keeps no job state of its
 * own — every step looks the session up in the shared print store by the SessionId the
 * request carries, so the steps of one job can each land on a different worker.
 * Rendering runs in a pool of memory-limited child processes.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { cpus } from "node:os";
import { basename, join, resolve } from "node:path";
import type { ClientReadableStream, ClientWritableStream } from "@grpc/grpc-js";
import { z } from "zod";
import { PrintConversionServiceService } from "../../gen/switchyard/print/v1/print_conversion_service.js";
import {
  type GetDocumentResponse,
  type PutDocumentRequest,
  type PutDocumentResponse,
} from "../../gen/switchyard/print/v1/print_store_service.js";
import type { SessionId } from "../../gen/switchyard/print/v1/print_job.js";
import { dial } from "../../clients/grpc/channel.js";
import { unary } from "../../clients/grpc/call.js";
import type { RoleDefinition } from "../runtime/role.js";
import { bytes, duration, hostPort } from "../runtime/units.js";
import { convertPdf } from "./convert.js";
import { compileAllowList, download } from "./download.js";
import { badField, DocumentNotDownloadedError, DownloadErrors, fromStoreError } from "./errors.js";
import { relaxOldGenerationLimit } from "./heap.js";
import { PrintStoreClientWithPageCodec } from "./page-codec.js";
import { RenderPool } from "./render/pool.js";
import { resolveSettings, sessionKey } from "./settings.js";

const schema = z.strictObject({
  store: hostPort().describe("address of the print-store node (required)"),
  storeSpoolDir: z.string().min(1).optional().describe("the store's spool folder (printStore.spoolDir) when this worker shares the store's filesystem: render processes write each page there and PutPage names the file instead of carrying its bytes; default: none, pages go to the store as bytes"),
  heapGrowingPercent: z.number().int().min(0).max(1000).default(150).describe("V8 heap growing factor in percent for this node's process: the old generation may grow this far above the live heap before a full GC (pages pass through the heap as short-lived buffers); 0 keeps V8's default; default 150"),
  render: z
    .strictObject({
      processes: z.number().int().min(1).max(64).optional().describe("render child processes; default: the number of CPU cores"),
      memoryLimitBytes: bytes().default(1024 ** 3).describe("OS memory limit (RLIMIT_DATA) of each render process; default 1GiB; 0 disables"),
      pagesPerProcess: z.number().int().min(1).default(1000).describe("pages a render process renders before it is replaced; default 1000"),
      pageTimeoutMs: duration().default(60_000).describe("time one page may take before its process is killed; default 60s"),
      openTimeoutMs: duration().default(30_000).describe("time opening a document may take; default 30s"),
    })
    .prefault({}),
  limits: z
    .strictObject({
      maxPages: z.number().int().min(1).default(2000).describe("most pages a document may have; default 2000"),
      maxPagePixels: z.number().int().min(1).default(100_000_000).describe("most pixels a rendered page may have; default 100 million"),
      maxDocumentBytes: bytes().default(64 * 1024 * 1024).describe("largest document; default 64MiB"),
    })
    .prefault({}),
  download: z
    .strictObject({
      timeoutMs: duration().default(30_000).describe("whole-download time limit; default 30s"),
      maxRedirects: z.number().int().min(0).max(20).default(5).describe("redirects followed at most; default 5"),
      allowPrivate: z.array(z.string()).default([]).describe('CIDRs allowed although private/loopback, e.g. ["127.0.0.1/32"]; default none'),
    })
    .prefault({}),
});

/** Resolved print-worker options. */
export type PrintWorkerConfig = z.output<typeof schema>;

const CHUNK = 1024 * 1024;

/** The print-worker role. */
export const printWorkerRole: RoleDefinition<PrintWorkerConfig> = {
  role: "print-worker",
  summary: "stateless PDF→JPEG conversion worker (token, download, convert, complete)",
  configSchema: schema,
  create: async (ctx) => {
    const cfg = ctx.config.roleConfig;
    let allow;
    try {
      allow = compileAllowList(cfg.download.allowPrivate);
    } catch (err) {
      throw new Error(`printWorker.download.allowPrivate: ${(err as Error).message}`);
    }
    const workerId = ctx.config.node.id;
    const size = cfg.render.processes ?? cpus().length;
    relaxOldGenerationLimit(cfg.heapGrowingPercent);
    const pool = new RenderPool({
      size,
      memoryLimitBytes: cfg.render.memoryLimitBytes,
      pagesPerChild: cfg.render.pagesPerProcess,
      pageTimeoutMs: cfg.render.pageTimeoutMs,
      openTimeoutMs: cfg.render.openTimeoutMs,
      log: ctx.log,
    });
    // PutPage's request is encoded with one copy of the page, not four (page-codec.ts).
    const store = dial(PrintStoreClientWithPageCodec, cfg.store, ctx.channel);
    const spoolDir = cfg.storeSpoolDir ? resolve(cfg.storeSpoolDir) : undefined;
    if (spoolDir) mkdirSync(spoolDir, { recursive: true });
    const limits = { maxPages: cfg.limits.maxPages, maxPagePixels: cfg.limits.maxPagePixels, pageTimeoutMs: cfg.render.pageTimeoutMs };

    /** Runs a store call for `step`, mapping its errors (the seed's error branches). */
    const st = async <T>(step: string, key: string, fn: () => Promise<T>): Promise<T> => {
      try {
        return await fn();
      } catch (err) {
        throw fromStoreError(err, step, key);
      }
    };
    const getSession = (step: string, key: string, session: SessionId) =>
      st(step, key, async () => (await unary(store, store.getSession, { session })).session);

    const putDocument = (session: SessionId, data: Buffer): Promise<PutDocumentResponse> =>
      new Promise((resolve, reject) => {
        const call: ClientWritableStream<PutDocumentRequest> = store.putDocument((err, res) => (err ? reject(err) : resolve(res)));
        call.write({ part: { $case: "session", value: session } });
        for (let i = 0; i < data.length; i += CHUNK) call.write({ part: { $case: "chunk", value: data.subarray(i, i + CHUNK) } });
        call.end();
      });

    const readDocument = async (session: SessionId, signal: AbortSignal): Promise<Buffer> => {
      const call: ClientReadableStream<GetDocumentResponse> = store.getDocument({ session });
      const onAbort = (): void => call.cancel();
      signal.addEventListener("abort", onAbort, { once: true });
      const parts: Buffer[] = [];
      let size = 0;
      try {
        for await (const m of call as AsyncIterable<GetDocumentResponse>) {
          size += m.chunk.length;
          if (size > cfg.limits.maxDocumentBytes) throw DownloadErrors.tooLarge(cfg.limits.maxDocumentBytes);
          parts.push(m.chunk);
        }
      } finally {
        signal.removeEventListener("abort", onAbort);
      }
      return Buffer.concat(parts);
    };

    const service = ctx.implement(PrintConversionServiceService, {
      // Fig. 6: refuse a duplicate, create the record, issue the token with its time.
      issueToken: async (req) => {
        const key = sessionKey(req.session);
        const session = req.session as SessionId;
        const token = randomBytes(32).toString("base64url");
        const created = Date.now();
        const r = await st("IssueToken", key, () => unary(store, store.createSession, { session, token, tokenCreateTime: new Date(created) }));
        ctx.log.info({ session: key }, "session opened");
        return { token, createTime: new Date(created), ...(r.tokenExpireTime ? { expireTime: r.tokenExpireTime } : {}), workerId };
      },
      // Fig. 7: session must exist; download (or take the upload); store; record where.
      download: async (req, call) => {
        const key = sessionKey(req.session);
        const session = req.session as SessionId;
        await getSession("Download", key, session);
        let data: Buffer;
        if (req.source?.$case === "url") {
          data = await download(req.source.value, { maxBytes: cfg.limits.maxDocumentBytes, timeoutMs: cfg.download.timeoutMs, maxRedirects: cfg.download.maxRedirects, allowPrivate: cfg.download.allowPrivate }, allow, call.signal);
        } else if (req.source?.$case === "content") {
          data = req.source.value;
          if (data.length > cfg.limits.maxDocumentBytes) throw DownloadErrors.tooLarge(cfg.limits.maxDocumentBytes);
        } else {
          throw badField("source", "a url or the document content is required");
        }
        if (data.length === 0) throw badField("source", "the document is empty", "DOCUMENT_EMPTY");
        const r = await st("Download", key, () => putDocument(session, data));
        ctx.log.info({ session: key, bytes: data.length }, "document stored");
        return { sizeBytes: BigInt(data.length), sha256: r.document?.sha256 ?? createHash("sha256").update(data).digest("hex"), workerId };
      },
      // Fig. 8: session → file path → document; convert; result record with token;
      // pages + metafile; delete the downloaded document; return id and URL.
      convert: async (req, sink, call) => {
        const key = sessionKey(req.session);
        const session = req.session as SessionId;
        const settings = resolveSettings(req.settings);
        const s = await getSession("Convert", key, session);
        if (!s?.document) throw new DocumentNotDownloadedError(key);
        const data = await st("Convert", key, () => readDocument(session, call.signal));
        const resultId = randomBytes(16).toString("base64url");
        let metafileUrl = "";
        let started = false;
        const t0 = Date.now();
        try {
          const n = await convertPdf(
            pool,
            resultId,
            data,
            settings,
            limits,
            {
              signal: call.signal,
              // Sharing the store's filesystem: pages go to its spool folder, not through
              // this process (page bytes were most of a worker's own CPU: IPC, protobuf,
              // gRPC, and the garbage collections their buffers set off).
              ...(spoolDir ? { pageFile: (p: number) => join(spoolDir, `${resultId}-${p}-${randomBytes(6).toString("hex")}.jpg`) } : {}),
              onStart: async (pageCount) => {
                const r = await st("Convert", key, () => unary(store, store.createResult, { session, resultId, pageCount, colorMode: settings.colorMode }));
                metafileUrl = r.metafileUrl;
                started = true;
                await sink.send({ event: { $case: "started", value: { resultId, metafileUrl, pageCount, workerId } } });
              },
              onPage: async (pageNumber, page) => {
                const spoolFile = page.file ? basename(page.file) : "";
                const r = await st("Convert", key, () =>
                  unary(store, store.putPage, { resultId, pageNumber, jpeg: page.jpeg, widthPx: page.width, heightPx: page.height, dpi: settings.dpi, spoolFile }),
                ).catch((err: unknown) => {
                  if (page.file) rmSync(page.file, { force: true });
                  throw err;
                });
                await sink.send({
                  event: {
                    $case: "page",
                    value: { pageNumber, url: r.page?.url ?? "", widthPx: page.width, heightPx: page.height, sizeBytes: BigInt(page.size) },
                  },
                });
              },
            },
            size,
          );
          await st("Convert", key, () => unary(store, store.finishResult, { resultId, failed: false }));
          await st("Convert", key, () => unary(store, store.deleteDocument, { session }));
          ctx.log.info({ session: key, pages: n, ms: Date.now() - t0 }, "document converted");
          await sink.send({ event: { $case: "finished", value: { resultId, metafileUrl, pageCount: n } } });
        } catch (err) {
          if (started) await unary(store, store.finishResult, { resultId, failed: true }).catch(() => undefined);
          throw err;
        }
      },
      // Fig. 11: session must exist; delete the results and the session record.
      complete: async (req) => {
        const key = sessionKey(req.session);
        const session = req.session as SessionId;
        const r = await st("Complete", key, () => unary(store, store.deleteSession, { session }));
        ctx.log.info({ session: key, records: r.recordsDeleted }, "session completed");
        return { recordsDeleted: r.recordsDeleted, workerId };
      },
    });

    return {
      services: [service],
      load: () => ({
        figures: { renders_busy: pool.busy, renders_queued: pool.queued, pages_rendered: pool.pagesRendered, render_processes_started: pool.childrenStarted },
        utilization: Math.min(1, (pool.busy + pool.queued) / size),
      }),
      stop: async () => {
        pool.stop();
        store.close();
      },
    };
  },
};
