/**
 * `switchyard print submit|jobs|convert|cancel` and `switchyard printer`: submit print
 * jobs and follow them page by page, list jobs, convert a PDF locally with the workers'
 * code path, and run a printer that writes PWG Raster.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join, resolve } from "node:path";
import cliProgress from "cli-progress";
import Table from "cli-table3";
import type { Command } from "commander";
import { pino } from "pino";
import { describeError } from "../../../clients/grpc/call.js";
import { ColorMode, JobState, PrintJobsClient, type PrintJob } from "../../../clients/print/index.js";
import { PrintOutcome, runPrinter } from "../../../clients/printer/index.js";
import { convertPdf } from "../../../servers/print/convert.js";
import { ippDevice } from "../../../servers/print/device/ipp-device.js";
import { pwgDevice } from "../../../servers/print/device/device.js";
import { RenderPool } from "../../../servers/print/render/pool.js";
import { resolveSettings } from "../../../servers/print/settings.js";
import { clientSettings } from "../settings.js";

const DEFAULT_JOBS = "127.0.0.1:7450";
const TERMINAL = new Set([JobState.COMPLETED, JobState.CANCELLED, JobState.FAILED]);

function stateName(s: JobState): string {
  return JobState[s] ?? String(s);
}

function outcome(j: PrintJob): string {
  if (j.state === JobState.FAILED) return `${j.errorCode} ${j.errorReason}: ${j.errorMessage}`;
  if (j.state === JobState.CANCELLED) return j.cancelReason;
  return "";
}

async function fail(err: unknown): Promise<never> {
  process.stderr.write(`error: ${describeError(err)}\n`);
  process.exit(1);
}

/** Registers `print` and `printer`. */
export function registerPrint(program: Command): void {
  const print = program.command("print").description("print jobs: submit, list, cancel, convert locally");

  print
    .command("submit")
    .description("submit a PDF (file or http(s) URL) and follow it page by page")
    .argument("<source>", "PDF file or URL")
    .requiredOption("--printer <id>", "printer id")
    .option("--jobs <host:port>", "print-jobs node", DEFAULT_JOBS)
    .option("--dpi <n>", "resolution", "150")
    .option("--mono", "monochrome")
    .option("--quality <n>", "JPEG quality 1-100", "85")
    .option("--password <pw>", "password of an encrypted PDF")
    .option("--no-wait", "return once the job is accepted")
    .action(async (source: string, o: { printer: string; jobs: string; dpi: string; mono?: boolean; quality: string; password?: string; wait: boolean }) => {
      const client = new PrintJobsClient(o.jobs, clientSettings());
      try {
        const document = /^https?:\/\//.test(source) ? ({ $case: "url", value: source } as const) : ({ $case: "content", value: readFileSync(source) } as const);
        const job = await client.submit({
          requestId: "",
          printerId: o.printer,
          document,
          settings: { dpi: Number(o.dpi), colorMode: o.mono ? ColorMode.MONOCHROME : ColorMode.COLOR, jpegQuality: Number(o.quality), password: o.password ?? "" },
        });
        process.stdout.write(`${job.name} accepted for printer ${job.printerId}\n`);
        if (!o.wait) return;
        const bar = new cliProgress.SingleBar({ format: "{state} |{bar}| {value}/{total} pages converted, {printed} printed" }, cliProgress.Presets.shades_classic);
        let started = false;
        let last: PrintJob = job;
        for await (const j of client.watch(job.name)) {
          last = j;
          if (j.pageCount && !started) {
            bar.start(j.pageCount, 0, { state: stateName(j.state), printed: 0 });
            started = true;
          }
          if (started) bar.update(j.pagesConverted, { state: stateName(j.state), printed: j.pagesPrinted });
          if (TERMINAL.has(j.state)) break;
        }
        if (started) bar.stop();
        process.stdout.write(`${last.name}: ${stateName(last.state)} ${outcome(last)}\n`);
        if (last.state !== JobState.COMPLETED) process.exitCode = 1;
      } catch (err) {
        await fail(err);
      } finally {
        client.close();
      }
    });

  print
    .command("jobs")
    .description("list print jobs, newest first")
    .option("--jobs <host:port>", "print-jobs node", DEFAULT_JOBS)
    .option("--json", "print JSON")
    .action(async (o: { jobs: string; json?: boolean }) => {
      const client = new PrintJobsClient(o.jobs, clientSettings());
      try {
        const list = await client.list();
        if (o.json) {
          process.stdout.write(JSON.stringify(list, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v), 2) + "\n");
          return;
        }
        const table = new Table({ head: ["job", "printer", "state", "pages", "converted", "printed", "created", "outcome"] });
        for (const j of list) {
          table.push([j.name.slice(5), j.printerId, stateName(j.state), j.pageCount, j.pagesConverted, j.pagesPrinted, j.createTime?.toISOString() ?? "", outcome(j)]);
        }
        process.stdout.write(table.toString() + "\n");
      } catch (err) {
        await fail(err);
      } finally {
        client.close();
      }
    });

  print
    .command("cancel")
    .description("cancel a print job")
    .argument("<job>", "job id or jobs/ID")
    .option("--jobs <host:port>", "print-jobs node", DEFAULT_JOBS)
    .action(async (name: string, o: { jobs: string }) => {
      const client = new PrintJobsClient(o.jobs, clientSettings());
      try {
        const j = await client.cancel(name);
        process.stdout.write(`${j.name}: ${stateName(j.state)} ${outcome(j)}\n`);
      } catch (err) {
        await fail(err);
      } finally {
        client.close();
      }
    });

  print
    .command("convert")
    .description("convert a PDF to per-page JPEGs locally, with the workers' code path (no cluster)")
    .argument("<file>", "PDF file")
    .requiredOption("--out <dir>", "output folder")
    .option("--dpi <n>", "resolution", "150")
    .option("--mono", "monochrome")
    .option("--quality <n>", "JPEG quality 1-100", "85")
    .option("--password <pw>", "password of an encrypted PDF")
    .option("--processes <n>", "render processes", String(cpus().length))
    .action(async (file: string, o: { out: string; dpi: string; mono?: boolean; quality: string; password?: string; processes: string }) => {
      const pool = new RenderPool({ size: Number(o.processes), memoryLimitBytes: 1024 ** 3, pagesPerChild: 100, pageTimeoutMs: 60_000, openTimeoutMs: 30_000, log: pino({ level: "warn" }) });
      const bar = new cliProgress.SingleBar({ format: "converting |{bar}| {value}/{total} pages" }, cliProgress.Presets.shades_classic);
      try {
        const settings = resolveSettings({ dpi: Number(o.dpi), colorMode: o.mono ? ColorMode.MONOCHROME : ColorMode.COLOR, jpegQuality: Number(o.quality), password: o.password ?? "" });
        const out = resolve(o.out);
        mkdirSync(out, { recursive: true });
        const t0 = Date.now();
        const n = await convertPdf(
          pool,
          "cli",
          readFileSync(file),
          settings,
          { maxPages: 100_000, maxPagePixels: 200_000_000, pageTimeoutMs: 60_000 },
          {
            onStart: async (total) => bar.start(total, 0),
            onPage: async (p, page) => {
              writeFileSync(join(out, `page-${String(p).padStart(4, "0")}.jpg`), page.jpeg);
              bar.increment();
            },
          },
          Number(o.processes),
        );
        bar.stop();
        process.stdout.write(`${n} pages in ${((Date.now() - t0) / 1000).toFixed(1)} s → ${out}\n`);
      } catch (err) {
        bar.stop();
        await fail(err);
      } finally {
        pool.stop();
      }
    });

  program
    .command("printer")
    .description("run a printer: attach to the job service, pull pages with the token, write PWG Raster (or forward it to an IPP printer)")
    .requiredOption("--id <id>", "printer id")
    .option("--out <dir>", "folder for the PWG Raster files (required unless --ipp)")
    .option("--ipp <uri>", "forward jobs as PWG Raster to this IPP printer, e.g. ipp://host:631/ipp/print")
    .option("--ipp-ca <file>", "ipps://: PEM trusted for the printer (its CA, or its self-signed certificate)")
    .option("--ipp-cert-sha256 <fingerprint>", "ipps://: accept exactly the printer certificate with this SHA-256 fingerprint")
    .option("--jobs <host:port>", "print-jobs node", DEFAULT_JOBS)
    .option("--mono", "monochrome device")
    .option("--paper <sheets>", "simulate a tray with this many sheets (file output only)")
    .action(async (o: { id: string; out?: string; ipp?: string; ippCa?: string; ippCertSha256?: string; jobs: string; mono?: boolean; paper?: string }) => {
      if (!o.out && !o.ipp) {
        process.stderr.write("switchyard printer: give --out DIR or --ipp URI\n");
        process.exitCode = 2;
        return;
      }
      const stop = new AbortController();
      process.once("SIGINT", () => stop.abort());
      process.once("SIGTERM", () => stop.abort());
      const out = resolve(o.out ?? ".");
      const device = o.ipp
        ? ippDevice({
            uri: o.ipp,
            color: !o.mono,
            requestTimeoutMs: 30_000,
            jobTimeoutMs: 600_000,
            pollMs: 1000,
            userName: "switchyard",
            tls: { ...(o.ippCa ? { ca: readFileSync(resolve(o.ippCa)) } : {}), ...(o.ippCertSha256 ? { certSha256: o.ippCertSha256 } : {}) },
          })
        : pwgDevice({ outDir: out, color: !o.mono, ...(o.paper ? { paperSheets: Number(o.paper) } : {}) });
      process.stdout.write(`printer ${o.id} attached to ${o.jobs}; ${o.ipp ? `forwarding to ${o.ipp}` : `writing PWG Raster to ${out}`} (Ctrl-C stops)\n`);
      await runPrinter(
        { jobs: o.jobs, printerId: o.id, color: !o.mono, channel: clientSettings(), signal: stop.signal, onDisconnect: (err) => process.stderr.write(`link failed: ${describeError(err)}; reconnecting\n`) },
        async (req, pages, signal) => {
          process.stdout.write(`job ${req.jobId}: ${req.pageCount} pages\n`);
          try {
            const r = await device(req, pages, signal);
            process.stdout.write(`job ${req.jobId}: ${PrintOutcome[r.outcome]} ${r.reason} (${r.pagesPrinted} pages) → ${o.ipp ?? join(out, `${req.jobId}.pwg`)}\n`);
            return r;
          } catch (err) {
            process.stdout.write(`job ${req.jobId}: FAILED ${(err as { reason?: string }).reason ?? ""} ${String((err as Error).message ?? err)}\n`);
            throw err;
          }
        },
      );
    });
}
