import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PrintJobsClient, JobState, ColorMode } from "../../clients/print/index.js";
import { printerRole } from "../../servers/print/role-printer.js";
import { readPwg } from "../../servers/print/device/pwg.js";
import { mixedPdf, textPdf } from "../../tools/fixtures/pdfs.js";
import { eventually, onCleanup } from "../helpers/nodes.js";
import { startPrintCluster, type PrintCluster } from "./cluster.js";

async function finished(jobs: PrintJobsClient, name: string): Promise<import("../../clients/print/index.js").PrintJob> {
  let last;
  for await (const j of jobs.watch(name)) last = j;
  assert.ok(last, "watch returned nothing");
  return last;
}

async function storeEmpty(c: PrintCluster): Promise<void> {
  assert.deepEqual(await c.printStore.counts(), { sessions: 0, tokens: 0, documentChunks: 0, results: 0, pages: 0 });
}

// The least-loaded cluster's workers share the store's filesystem: pages go through the
// store's spool folder (printStore.spoolDir) rather than as PutPage bytes.
for (const balancing of ["round_robin", "least_loaded"] as const) {
  const spooled = balancing === "least_loaded";
  describe(`PrintJobsService (${balancing} over two workers${spooled ? ", pages through the store's spool folder" : ""})`, function () {
    this.timeout(90_000);
    let c: PrintCluster;
    let jobs: PrintJobsClient;
    let spool: string | undefined;
    before(async () => {
      spool = spooled ? mkdtempSync(join(tmpdir(), "switchyard-print-spool-")) : undefined;
      c = await startPrintCluster({ balancing, ...(spool ? { store: { spoolDir: spool }, worker: { storeSpoolDir: spool } } : {}) });
      jobs = new PrintJobsClient(c.jobs.address);
    });
    after(async () => {
      jobs?.close();
      await c?.stop();
      if (spool) rmSync(spool, { recursive: true, force: true });
    });

    describe("SubmitJob", () => {
      it("runs the steps of one job on different workers, prints PWG raster and leaves nothing in the store", async () => {
        const out = join(c.dir, "out-color");
        const printer = await c.add(printerRole, `printer-${balancing}`, { jobs: c.jobs.address, printerId: "lobby", color: true, outDir: out });
        onCleanup(() => printer.stop());
        const job = await jobs.submit({ requestId: "", printerId: "lobby", document: { $case: "content", value: Buffer.from(await textPdf(3)) }, settings: { dpi: 100, colorMode: ColorMode.COLOR, jpegQuality: 80, password: "" } });
        assert.match(job.name, /^jobs\//);
        assert.equal(job.state, JobState.QUEUED);
        const done = await finished(jobs, job.name);
        assert.equal(JobState[done.state], "COMPLETED", `${done.errorReason} ${done.errorMessage}`);
        assert.equal(done.pageCount, 3);
        assert.equal(done.pagesPrinted, 3);
        const steps = done.stepWorkers.map((s) => s.split("="));
        assert.deepEqual(steps.map((s) => s[0]), ["issue_token", "download", "convert", "complete"]);
        assert.equal(new Set(steps.map((s) => s[1])).size, 2, `steps all on one worker: ${done.stepWorkers.join(", ")}`);
        const pages = readPwg(readFileSync(join(out, `${job.name.slice(5)}.pwg`)));
        assert.equal(pages.length, 3);
        assert.equal(pages[0]?.colorSpace, 6);
        assert.equal(pages[0]?.bitsPerPixel, 32);
        assert.equal(pages[0]?.width, Math.ceil((612 * 100) / 72));
        // Halftoned CMYK: every colorant byte is 0 or 255, and some black ink is there.
        const data = pages[0]?.data as Buffer;
        assert.ok(data.every((b) => b === 0 || b === 255));
        assert.ok(data.some((b, i) => i % 4 === 3 && b === 255));
        await storeEmpty(c);
      });

      it("prints a monochrome job as 1-bit black and the printer can start before the last page is converted", async () => {
        const out = join(c.dir, "out-mono");
        const first: number[] = [];
        const printer = await c.add(printerRole, `mono-${balancing}`, { jobs: c.jobs.address, printerId: "mono", color: false, outDir: out });
        onCleanup(() => printer.stop());
        const job = await jobs.submit({ requestId: "", printerId: "mono", document: { $case: "content", value: Buffer.from(await mixedPdf(6)) }, settings: { dpi: 72, colorMode: ColorMode.MONOCHROME, jpegQuality: 0, password: "" } });
        for await (const j of jobs.watch(job.name)) {
          if (j.state === JobState.CONVERTING && j.pageCount > 0) first.push(j.pagesConverted);
          if (j.state === JobState.COMPLETED || j.state === JobState.FAILED) {
            assert.equal(JobState[j.state], "COMPLETED", j.errorMessage);
          }
        }
        // The print request went out with the first ConvertStarted, before page 6 existed.
        assert.ok(first.some((n) => n < 6), `no progress seen while converting: ${first.join(",")}`);
        const pages = readPwg(readFileSync(join(out, `${job.name.slice(5)}.pwg`)));
        assert.equal(pages.length, 6);
        assert.equal(pages[0]?.colorSpace, 3);
        assert.equal(pages[0]?.bitsPerPixel, 1);
        await storeEmpty(c);
      });

      it("is idempotent per request_id", async () => {
        const doc = { $case: "content" as const, value: Buffer.from(await textPdf(1)) };
        const a = await jobs.submit({ requestId: `r-${balancing}`, printerId: "nobody", document: doc });
        const b = await jobs.submit({ requestId: `r-${balancing}`, printerId: "nobody", document: doc });
        assert.equal(a.name, b.name);
        await jobs.cancel(a.name);
      });
    });

    describe("CancelJob", () => {
      it("cancels a job waiting for its printer and completes the session", async () => {
        const job = await jobs.submit({ requestId: "", printerId: "offline", document: { $case: "content", value: Buffer.from(await textPdf(2)) } });
        await eventually(async () => (await jobs.get(job.name)).state === JobState.PRINTING, 30_000);
        const cancelled = await jobs.cancel(job.name);
        assert.equal(JobState[cancelled.state], "CANCELLED");
        assert.equal(cancelled.cancelReason, "USER_CANCELLED");
        await storeEmpty(c);
      });
    });
  });
}

describe("printer role", function () {
  this.timeout(90_000);
  let c: PrintCluster;
  let jobs: PrintJobsClient;
  before(async () => {
    c = await startPrintCluster({ workers: 1, store: { tokenTtlMs: "1h" } });
    jobs = new PrintJobsClient(c.jobs.address);
  });
  after(async () => {
    jobs?.close();
    await c?.stop();
  });

  it("reports out of paper; the job ends CANCELLED with that reason and nothing stays in the store", async () => {
    const out = join(c.dir, "out-paper");
    const printer = await c.add(printerRole, "paper", { jobs: c.jobs.address, printerId: "tray", color: false, outDir: out, paperSheets: 2 });
    onCleanup(() => printer.stop());
    const job = await jobs.submit({ requestId: "", printerId: "tray", document: { $case: "content", value: Buffer.from(await textPdf(4)) }, settings: { dpi: 72, colorMode: ColorMode.MONOCHROME, jpegQuality: 0, password: "" } });
    const done = await finished(jobs, job.name);
    assert.equal(JobState[done.state], "CANCELLED");
    assert.equal(done.cancelReason, "OUT_OF_PAPER");
    assert.equal(done.pagesPrinted, 2);
    assert.equal(readPwg(readFileSync(join(out, `${job.name.slice(5)}.pwg`))).length, 2);
    await storeEmpty(c);
  });

  it("reports a user cancel", async () => {
    const out = join(c.dir, "out-user");
    const printer = await c.add(printerRole, "user", { jobs: c.jobs.address, printerId: "desk", color: true, outDir: out, userCancelAfterPages: 0 });
    onCleanup(() => printer.stop());
    const job = await jobs.submit({ requestId: "", printerId: "desk", document: { $case: "content", value: Buffer.from(await textPdf(1)) }, settings: { dpi: 72, colorMode: ColorMode.COLOR, jpegQuality: 0, password: "" } });
    const done = await finished(jobs, job.name);
    assert.equal(done.cancelReason, "USER_CANCELLED");
    assert.equal(existsSync(join(out, `${job.name.slice(5)}.pwg`)), false);
    await storeEmpty(c);
  });
});

describe("print store tokens", function () {
  this.timeout(90_000);
  it("refuses an expired token: the printer reports TOKEN_EXPIRED and the job fails with it", async () => {
    const c = await startPrintCluster({ workers: 1, store: { tokenTtlMs: "1ms" } });
    onCleanup(() => c.stop());
    const jobs = new PrintJobsClient(c.jobs.address);
    onCleanup(() => jobs.close());
    const printer = await c.add(printerRole, "late", { jobs: c.jobs.address, printerId: "late", color: true, outDir: join(c.dir, "late") });
    onCleanup(() => printer.stop());
    const job = await jobs.submit({ requestId: "", printerId: "late", document: { $case: "content", value: Buffer.from(await textPdf(1)) } });
    const done = await finished(jobs, job.name);
    assert.equal(JobState[done.state], "FAILED");
    assert.equal(done.errorReason, "TOKEN_EXPIRED");
    await storeEmpty(c);
  });
});
