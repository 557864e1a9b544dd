/**
 * Role "print-jobs": takes print jobs (PrintJobsService), drives each one through the
 * stateless workers — IssueToken, Download, Convert — over a client-side load balancer,
 * sends the print request to the printer as soon as the first page can be fetched
 * (PrinterService), and after the printer's report calls Complete (the seed's Fig. 3).
 * Job records live in this node's LevelDB; uploads wait there until Download took them.
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { status as Status } from "@grpc/grpc-js";
import { z } from "zod";
import { PrintJobsServiceService } from "../../gen/switchyard/print/v1/print_jobs_service.js";
import { ColorMode, JobState, type PrintJob, type PrintSettings, type SessionId } from "../../gen/switchyard/print/v1/print_job.js";
import { PrinterServiceService, PrintOutcome, type AttachResponse, type PrintRequest } from "../../gen/switchyard/print/v1/printer_service.js";
import { parseRichError } from "../../clients/grpc/rich-error.js";
import { WorkerPool } from "../../clients/print/index.js";
import { AbortedError, FailedPreconditionError, NotFoundError } from "../runtime/errors.js";
import type { RoleDefinition } from "../runtime/role.js";
import type { StreamSink } from "../runtime/service.js";
import { bytes, duration, hostPort } from "../runtime/units.js";
import { badField, PRINT_DOMAIN } from "./errors.js";
import { resolveSettings, validId } from "./settings.js";

const schema = z.strictObject({
  workers: z.array(hostPort()).min(1).describe("addresses of the print-worker nodes (required)"),
  balancing: z.enum(["round_robin", "least_loaded"]).default("round_robin").describe("how worker calls are spread: round_robin (grpc-js) or least_loaded (from load reports); default round_robin"),
  maxDocumentBytes: bytes().default(32 * 1024 * 1024).describe("largest uploaded document; default 32MiB"),
  stepDeadlineMs: duration().default(120_000).describe("deadline of IssueToken/Download/Complete calls; default 2m"),
  printTimeoutMs: duration().default(3_600_000).describe("time the printer has to report after the request; default 1h"),
  jobRetentionMs: duration().default(7 * 86_400_000).describe("how long finished jobs stay listed; default 7d"),
});

/** Resolved print-jobs options. */
export type PrintJobsConfig = z.output<typeof schema>;

interface JobRecord {
  id: string;
  printerId: string;
  source: string;
  url?: string;
  settings: { dpi: number; colorMode: number; jpegQuality: number };
  password: string;
  state: JobState;
  pageCount: number;
  pagesConverted: number;
  pagesPrinted: number;
  resultId: string;
  createdAt: number;
  updatedAt: number;
  errorCode: string;
  errorReason: string;
  errorMessage: string;
  cancelReason: string;
  stepWorkers: string[];
}

interface Report {
  outcome: PrintOutcome;
  reason: string;
  pagesPrinted: number;
  message: string;
}

/** A job being driven (in memory only while it runs). */
interface Run {
  rec: JobRecord;
  abort: AbortController;
  print?: PrintRequest;
  dispatched: boolean;
  report?: Report;
  reported: Promise<Report>;
  resolveReport: (r: Report) => void;
}

interface Attached {
  sink: StreamSink<AttachResponse>;
  color: boolean;
  replaced: (err: Error) => void;
}

const TERMINAL = new Set([JobState.COMPLETED, JobState.CANCELLED, JobState.FAILED]);

function newJobId(): string {
  // Sorts by creation time, so listing newest first is a reverse key walk.
  return `${Date.now().toString(36).padStart(9, "0")}-${randomBytes(5).toString("hex")}`;
}

function toJob(r: JobRecord): PrintJob {
  const settings: PrintSettings = { dpi: r.settings.dpi, colorMode: r.settings.colorMode as ColorMode, jpegQuality: r.settings.jpegQuality, password: "" };
  return {
    name: `jobs/${r.id}`,
    printerId: r.printerId,
    source: r.source,
    settings,
    state: r.state,
    pageCount: r.pageCount,
    pagesConverted: r.pagesConverted,
    pagesPrinted: r.pagesPrinted,
    resultId: r.resultId,
    createTime: new Date(r.createdAt),
    updateTime: new Date(r.updatedAt),
    errorCode: r.errorCode,
    errorReason: r.errorReason,
    errorMessage: r.errorMessage,
    cancelReason: r.cancelReason,
    stepWorkers: r.stepWorkers,
  };
}

function jobIdOf(name: string): string {
  const id = name.startsWith("jobs/") ? name.slice(5) : "";
  if (!validId(id)) throw badField("name", 'must be "jobs/{job_id}"');
  return id;
}

/** The print-jobs role. */
export const printJobsRole: RoleDefinition<PrintJobsConfig> = {
  role: "print-jobs",
  summary: "print job intake; drives each job through the workers to its printer",
  configSchema: schema,
  create: async (ctx) => {
    const cfg = ctx.config.roleConfig;
    const jobs = ctx.store.collection<JobRecord>("print_jobs", { ttl: true });
    const uploads = ctx.store.collection<Buffer>("print_uploads", { encoding: "buffer" });
    const requests = ctx.store.collection<string>("print_job_requests", { encoding: "utf8", ttl: true });
    const changes = new EventEmitter();
    changes.setMaxListeners(1000);
    const runs = new Map<string, Run>();
    const printers = new Map<string, Attached>();
    let workers: WorkerPool | undefined;
    let stopping = false;

    const save = async (rec: JobRecord): Promise<void> => {
      rec.updatedAt = Date.now();
      await jobs.put(rec.id, rec, TERMINAL.has(rec.state) ? { ttlMs: cfg.jobRetentionMs } : {});
      changes.emit(rec.id, rec);
    };

    const dispatch = (run: Run): void => {
      if (!run.print || run.dispatched) return;
      const p = printers.get(run.rec.printerId);
      if (!p) return;
      run.dispatched = true;
      p.sink.write({ event: { $case: "print", value: run.print } });
      ctx.log.info({ job: run.rec.id, printer: run.rec.printerId }, "print request sent");
    };

    const fail = (rec: JobRecord, err: unknown): void => {
      const st = parseRichError(err);
      rec.state = JobState.FAILED;
      rec.errorCode = Status[st.code] ?? String(st.code);
      rec.errorReason = st.errorInfo?.reason ?? "";
      rec.errorMessage = st.message;
    };

    const applyReport = (rec: JobRecord, report: Report): void => {
      rec.pagesPrinted = report.pagesPrinted;
      if (report.outcome === PrintOutcome.DONE) rec.state = JobState.COMPLETED;
      else if (report.outcome === PrintOutcome.CANCELLED) {
        rec.state = JobState.CANCELLED;
        rec.cancelReason = report.reason || "CANCELLED_BY_PRINTER";
      } else {
        rec.state = JobState.FAILED;
        rec.errorCode = "ABORTED";
        rec.errorReason = report.reason || "PRINT_FAILED";
        rec.errorMessage = `the printer reported failure: ${report.reason || "unknown"}${report.message ? `: ${report.message}` : ""}`;
      }
    };

    /** Fig. 3: token → download → convert → print request → wait → complete. */
    const drive = async (run: Run, content: Buffer | undefined): Promise<void> => {
      const rec = run.rec;
      const session: SessionId = { jobId: rec.id, printerId: rec.printerId };
      const signal = run.abort.signal;
      const pool = workers as WorkerPool;
      const deadline = (): number => Date.now() + cfg.stepDeadlineMs;
      let opened = false;
      try {
        const tok = await pool.issueToken(session, { deadline: deadline(), signal });
        opened = true;
        rec.stepWorkers.push(`issue_token=${tok.workerId}`);
        rec.state = JobState.DOWNLOADING;
        await save(rec);

        const source = rec.url !== undefined ? ({ $case: "url", value: rec.url } as const) : ({ $case: "content", value: content ?? Buffer.alloc(0) } as const);
        const dl = await pool.download(session, source, { deadline: deadline(), signal });
        await uploads.del(rec.id);
        rec.stepWorkers.push(`download=${dl.workerId}`);
        rec.state = JobState.CONVERTING;
        await save(rec);

        const settings: PrintSettings = { ...rec.settings, colorMode: rec.settings.colorMode as ColorMode, password: rec.password };
        for await (const ev of pool.convert(session, settings, signal)) {
          const e = ev.event;
          if (e?.$case === "started") {
            rec.resultId = e.value.resultId;
            rec.pageCount = e.value.pageCount;
            rec.stepWorkers.push(`convert=${e.value.workerId}`);
            run.print = {
              jobId: rec.id,
              printerId: rec.printerId,
              resultId: e.value.resultId,
              metafileUrl: e.value.metafileUrl,
              token: tok.token,
              pageCount: e.value.pageCount,
              colorMode: rec.settings.colorMode as ColorMode,
              dpi: rec.settings.dpi,
            };
            await save(rec);
            // The metafile grows page by page: the printer may start on page 1 now.
            dispatch(run);
          } else if (e?.$case === "page") {
            rec.pagesConverted = e.value.pageNumber;
            await save(rec);
          }
        }
        if (!run.report) {
          rec.state = JobState.PRINTING;
          await save(rec);
        }
        const timeout = new Promise<Report>((resolve) => {
          const t = setTimeout(() => resolve({ outcome: PrintOutcome.FAILED, reason: "PRINTER_TIMEOUT", pagesPrinted: 0, message: `no report within ${cfg.printTimeoutMs} ms` }), cfg.printTimeoutMs);
          t.unref();
          run.reported.then(() => clearTimeout(t), () => clearTimeout(t));
        });
        const aborted = new Promise<never>((_, reject) => {
          if (signal.aborted) reject(signal.reason);
          signal.addEventListener("abort", () => reject(signal.reason), { once: true });
        });
        const report = await Promise.race([run.reported, timeout, aborted]);
        applyReport(rec, report);
      } catch (err) {
        if (stopping) {
          // Left unfinished on purpose: the next start fails it and completes its session.
          runs.delete(rec.id);
          return;
        }
        if (run.report) {
          // The printer ended the job while conversion was still running.
          applyReport(rec, run.report);
        } else if (signal.aborted) {
          rec.state = JobState.CANCELLED;
          rec.cancelReason = rec.cancelReason || "USER_CANCELLED";
        } else {
          fail(rec, err);
          ctx.log.warn({ job: rec.id, reason: rec.errorReason, code: rec.errorCode }, "print job failed");
        }
        if (run.dispatched && !run.report) printers.get(rec.printerId)?.sink.write({ event: { $case: "cancelJobId", value: rec.id } });
      }
      // Fig. 11: the results and the session record go once the job ended, however. Also
      // when IssueToken's outcome is unknown (cancelled in flight): SESSION_NOT_FOUND is fine.
      try {
        const c = await pool.complete(session, rec.resultId, { deadline: deadline() });
        rec.stepWorkers.push(`complete=${c.workerId}`);
      } catch (err) {
        const st = parseRichError(err);
        if (opened || st.errorInfo?.reason !== "SESSION_NOT_FOUND") {
          // The store's sweeper removes the session after its TTL.
          ctx.log.warn({ job: rec.id, err: st.message }, "complete failed; the sweeper will remove the session");
        }
      }
      await uploads.del(rec.id).catch(() => undefined);
      await save(rec);
      runs.delete(rec.id);
    };

    const start = (rec: JobRecord, content: Buffer | undefined): void => {
      let resolveReport!: (r: Report) => void;
      const reported = new Promise<Report>((r) => (resolveReport = r));
      const run: Run = { rec, abort: new AbortController(), dispatched: false, reported, resolveReport };
      runs.set(rec.id, run);
      drive(run, content).catch((err: unknown) => ctx.log.error({ err, job: rec.id }, "job driver crashed"));
    };

    const jobsService = ctx.implement(PrintJobsServiceService, {
      submitJob: async (req) => {
        if (req.requestId.length > 128) throw badField("request_id", "at most 128 characters");
        if (!validId(req.printerId)) throw badField("printer_id", "letters, digits, '.', '_' or '-', at most 63, required");
        const s = resolveSettings(req.settings);
        if (req.requestId) {
          const prior = await requests.get(req.requestId);
          const rec = prior ? await jobs.get(prior) : undefined;
          if (rec) return { job: toJob(rec) };
        }
        const doc = req.document;
        let url: string | undefined;
        let content: Buffer | undefined;
        if (doc?.$case === "url") {
          let u: URL;
          try {
            u = new URL(doc.value);
          } catch {
            throw badField("url", "not a valid absolute URL", "URL_INVALID");
          }
          if (u.protocol !== "http:" && u.protocol !== "https:") throw badField("url", "only http and https URLs are accepted", "URL_SCHEME_NOT_ALLOWED");
          url = doc.value;
        } else if (doc?.$case === "content") {
          if (doc.value.length === 0) throw badField("content", "the document is empty", "DOCUMENT_EMPTY");
          if (doc.value.length > cfg.maxDocumentBytes) throw badField("content", `larger than the limit of ${cfg.maxDocumentBytes} bytes`, "DOCUMENT_TOO_LARGE");
          content = doc.value;
        } else {
          throw badField("document", "a url or the document content is required");
        }
        const now = Date.now();
        const rec: JobRecord = {
          id: newJobId(),
          printerId: req.printerId,
          source: url ?? `upload:${content?.length ?? 0}`,
          ...(url !== undefined ? { url } : {}),
          settings: { dpi: s.dpi, colorMode: s.colorMode, jpegQuality: s.jpegQuality },
          password: s.password,
          state: JobState.QUEUED,
          pageCount: 0,
          pagesConverted: 0,
          pagesPrinted: 0,
          resultId: "",
          createdAt: now,
          updatedAt: now,
          errorCode: "",
          errorReason: "",
          errorMessage: "",
          cancelReason: "",
          stepWorkers: [],
        };
        const batch = ctx.store.batch().put(jobs, rec.id, rec);
        if (content) batch.put(uploads, rec.id, content);
        if (req.requestId) batch.put(requests, req.requestId, rec.id, { ttlMs: cfg.jobRetentionMs });
        await batch.write();
        start(rec, content);
        ctx.log.info({ job: rec.id, printer: rec.printerId, source: url ? "url" : "upload" }, "print job accepted");
        return { job: toJob(rec) };
      },
      getJob: async (req) => {
        const id = jobIdOf(req.name);
        const rec = runs.get(id)?.rec ?? (await jobs.get(id));
        if (!rec) throw new NotFoundError(`no job ${req.name}`, { domain: PRINT_DOMAIN, reason: "JOB_NOT_FOUND" });
        return { job: toJob(rec) };
      },
      listJobs: async (req) => {
        const limit = Math.min(req.pageSize || 50, 500);
        let before: string | undefined;
        if (req.pageToken) {
          before = Buffer.from(req.pageToken, "base64url").toString("utf8");
          if (!validId(before)) throw badField("page_token", "not a token from a previous response");
        }
        const out: PrintJob[] = [];
        let last = "";
        for await (const [k, v] of jobs.entries({ reverse: true, ...(before ? { lt: before } : {}), limit: limit + 1 })) {
          if (out.length === limit) return { jobs: out, nextPageToken: Buffer.from(last).toString("base64url") };
          out.push(toJob(runs.get(k)?.rec ?? v));
          last = k;
        }
        return { jobs: out, nextPageToken: "" };
      },
      watchJob: async (req, sink, call) => {
        const id = jobIdOf(req.name);
        const first = runs.get(id)?.rec ?? (await jobs.get(id));
        if (!first) throw new NotFoundError(`no job ${req.name}`, { domain: PRINT_DOMAIN, reason: "JOB_NOT_FOUND" });
        let latest: JobRecord = first;
        let wake: (() => void) | undefined;
        const on = (r: JobRecord): void => {
          latest = r;
          wake?.();
        };
        const onAbort = (): void => wake?.();
        changes.on(id, on);
        call.signal.addEventListener("abort", onAbort, { once: true });
        try {
          let sent = "";
          for (;;) {
            const stamp = `${latest.state}/${latest.pageCount}/${latest.pagesConverted}/${latest.pagesPrinted}/${latest.resultId}/${latest.updatedAt}`;
            if (stamp !== sent) {
              sent = stamp;
              await sink.send({ job: toJob(latest) });
              continue;
            }
            if (TERMINAL.has(latest.state) || call.signal.aborted) return;
            await new Promise<void>((resolve) => (wake = resolve));
            wake = undefined;
          }
        } finally {
          changes.removeListener(id, on);
          call.signal.removeEventListener("abort", onAbort);
        }
      },
      cancelJob: async (req) => {
        const id = jobIdOf(req.name);
        const run = runs.get(id);
        if (!run) {
          const rec = await jobs.get(id);
          if (!rec) throw new NotFoundError(`no job ${req.name}`, { domain: PRINT_DOMAIN, reason: "JOB_NOT_FOUND" });
          if (rec.state === JobState.CANCELLED) return { job: toJob(rec) };
          throw new FailedPreconditionError(`job ${req.name} already ended (${JobState[rec.state]})`, { domain: PRINT_DOMAIN, reason: "JOB_FINISHED" });
        }
        run.rec.cancelReason = "USER_CANCELLED";
        run.abort.abort(new Error("cancelled by the user"));
        await new Promise<void>((resolve) => {
          const on = (r: JobRecord): void => {
            if (TERMINAL.has(r.state)) {
              changes.removeListener(id, on);
              resolve();
            }
          };
          changes.on(id, on);
        });
        return { job: toJob(run.rec) };
      },
    });

    const printerService = ctx.implement(PrinterServiceService, {
      attach: async (req, sink, call) => {
        if (!validId(req.printerId)) throw badField("printer_id", "letters, digits, '.', '_' or '-', at most 63, required");
        const old = printers.get(req.printerId);
        let replaced!: (err: Error) => void;
        const gone = new Promise<void>((resolve, reject) => {
          replaced = reject;
          call.signal.addEventListener("abort", () => resolve(), { once: true });
        });
        const me: Attached = { sink, color: req.color, replaced };
        printers.set(req.printerId, me);
        old?.replaced(new AbortedError("another Attach for this printer replaced this one", { domain: PRINT_DOMAIN, reason: "PRINTER_REATTACHED" }));
        ctx.log.info({ printer: req.printerId, color: req.color }, "printer attached");
        for (const run of runs.values()) if (run.rec.printerId === req.printerId) dispatch(run);
        try {
          await gone;
        } finally {
          if (printers.get(req.printerId) === me) {
            printers.delete(req.printerId);
            // Requests it had not finished go to its next Attach.
            for (const run of runs.values()) if (run.rec.printerId === req.printerId && !run.report) run.dispatched = false;
          }
        }
      },
      reportPrintResult: async (req) => {
        if (req.outcome !== PrintOutcome.DONE && req.outcome !== PrintOutcome.CANCELLED && req.outcome !== PrintOutcome.FAILED) {
          throw badField("outcome", "DONE, CANCELLED or FAILED required");
        }
        if (!validId(req.jobId)) throw badField("job_id", "required");
        const run = runs.get(req.jobId);
        if (!run) {
          const rec = await jobs.get(req.jobId);
          if (!rec) throw new NotFoundError(`no job jobs/${req.jobId}`, { domain: PRINT_DOMAIN, reason: "JOB_NOT_FOUND" });
          if (TERMINAL.has(rec.state) && rec.printerId === req.printerId) return { state: rec.state };
          throw new FailedPreconditionError(`job ${req.jobId} is not printing`, { domain: PRINT_DOMAIN, reason: "JOB_NOT_PRINTING" });
        }
        if (run.rec.printerId !== req.printerId || !run.print) {
          throw new FailedPreconditionError(`job ${req.jobId} is not waiting for printer ${req.printerId}`, { domain: PRINT_DOMAIN, reason: "JOB_NOT_PRINTING" });
        }
        if (!run.report) {
          run.report = { outcome: req.outcome, reason: req.reason, pagesPrinted: req.pagesPrinted, message: req.message.slice(0, 1024) };
          run.resolveReport(run.report);
          // A printer that stops early also stops the conversion.
          if (req.outcome !== PrintOutcome.DONE) run.abort.abort(new Error(`printer reported ${PrintOutcome[req.outcome]}`));
        }
        return { state: run.rec.state };
      },
    });

    return {
      services: [jobsService, printerService],
      load: () => ({ figures: { jobs_running: runs.size, printers_attached: printers.size } }),
      start: async () => {
        workers = await WorkerPool.open({ addresses: cfg.workers, balancing: cfg.balancing, channel: ctx.channel });
        // Jobs cut off by a restart end as failed; their sessions are completed.
        for await (const [, rec] of jobs.entries()) {
          if (TERMINAL.has(rec.state)) continue;
          rec.state = JobState.FAILED;
          rec.errorCode = "ABORTED";
          rec.errorReason = "JOB_SERVICE_RESTARTED";
          rec.errorMessage = "the job service restarted while the job ran; submit it again";
          await workers.complete({ jobId: rec.id, printerId: rec.printerId }, rec.resultId, { deadline: Date.now() + 5000 }).catch(() => undefined);
          await uploads.del(rec.id);
          await save(rec);
        }
      },
      stop: async () => {
        stopping = true;
        for (const run of runs.values()) run.abort.abort(new Error("node shutting down"));
        workers?.close();
      },
    };
  },
};
