import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PrintJobsClient, JobState, ColorMode, type PrintJob } from "../../clients/print/index.js";
import { printerRole } from "../../servers/print/role-printer.js";
import { readPwg } from "../../servers/print/device/pwg.js";
import { mediaSize, planForPage, planJob, planPage, type IppCapabilities } from "../../servers/print/device/ipp-device.js";
import { decodeResponse, encodeRequest, IppOp, Tag } from "../../servers/print/device/ipp.js";
import { PDFDocument, StandardFonts } from "pdf-lib";
import sharp from "sharp";
import { imagePdf, textPdf } from "../../tools/fixtures/pdfs.js";
import { eventually, onCleanup, tempDir } from "../helpers/nodes.js";
import { startPrintCluster, type PrintCluster } from "./cluster.js";
import { startIppEvePrinter, type IppEvePrinter } from "./ippeve.js";

/**
 * The job once it ended. Gives up after `withinMs` naming the job's last state and the
 * end of `printer`'s log, so a job that never ends fails its test with a reason instead
 * of the suite's timeout.
 */
async function finished(jobs: PrintJobsClient, name: string, printer?: IppEvePrinter, withinMs = 75_000): Promise<PrintJob> {
  let last: PrintJob | undefined;
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), withinMs);
  try {
    for await (const j of jobs.watch(name, stop.signal)) last = j;
  } catch (err) {
    if (!stop.signal.aborted) throw err;
  } finally {
    clearTimeout(timer);
  }
  const seen = last ? `${JobState[last.state]}, ${last.pagesPrinted} pages printed, ${last.errorReason} ${last.errorMessage}` : "no update";
  assert.ok(!stop.signal.aborted, `job ${name} did not end within ${withinMs} ms; last seen: ${seen}${printer ? `\nippeveprinter:\n${printer.log().slice(-3000)}` : ""}`);
  assert.ok(last, "watch returned nothing");
  return last;
}

/** The printer's completed jobs, asked with CUPS's own ipptool (not our IPP client). */
function ipptoolJobs(printer: IppEvePrinter): Record<string, string>[] {
  const file = join(tempDir(), "get-jobs.test");
  writeFileSync(
    file,
    `{
  NAME "Get-Jobs"
  OPERATION Get-Jobs
  GROUP operation-attributes-tag
  ATTR charset attributes-charset utf-8
  ATTR naturalLanguage attributes-natural-language en
  ATTR uri printer-uri $uri
  ATTR keyword which-jobs all
  ATTR keyword requested-attributes job-id,job-name,job-state,job-impressions,media,print-color-mode,document-format
  STATUS successful-ok
}
`,
  );
  const out = execFileSync("ipptool", ["-tv", printer.uri, file], { encoding: "utf8" });
  // The response's attributes follow "status-code = ..."; a name seen again starts the next job.
  const jobs: Record<string, string>[] = [];
  let cur: Record<string, string> | undefined;
  const response = out.slice(out.indexOf("status-code ="));
  for (const line of response.split("\n")) {
    const m = /^\s+([a-z-]+) \([^)]*\) = (.*)$/.exec(line);
    if (!m) continue;
    const [, name, value] = m as unknown as [string, string, string];
    if (name.startsWith("attributes-")) continue;
    if (!cur || name in cur) jobs.push((cur = {}));
    cur[name] = value;
  }
  return jobs;
}

describe("printer forwarding to an IPP printer (ippeveprinter)", function () {
  this.timeout(120_000);
  let c: PrintCluster;
  let jobs: PrintJobsClient;
  before(async () => {
    c = await startPrintCluster({ workers: 1 });
    jobs = new PrintJobsClient(c.jobs.address);
  });
  after(async () => {
    jobs?.close();
    await c?.stop();
  });

  async function printerFor(id: string, uri: string, color: boolean, tls?: Record<string, string>): Promise<void> {
    const node = await c.add(printerRole, `printer-${id}`, { jobs: c.jobs.address, printerId: id, color, ipp: { uri, pollMs: "200ms", jobTimeoutMs: "60s", ...(tls ? { tls } : {}) } });
    onCleanup(() => node.stop());
  }

  describe("a monochrome IPP Everywhere printer", () => {
    it("receives the job as PWG Raster it can read, and the job completes with the pages the printer counted", async () => {
      const printer = await startIppEvePrinter({ command: "/usr/sbin/ippevepcl" });
      await printerFor("ipp-mono", printer.uri, false);
      const job = await jobs.submit({ requestId: "", printerId: "ipp-mono", document: { $case: "content", value: Buffer.from(await textPdf(3)) }, settings: { dpi: 150, colorMode: ColorMode.MONOCHROME, jpegQuality: 85, password: "" } });
      const done = await finished(jobs, job.name, printer);
      assert.equal(JobState[done.state], "COMPLETED", `${done.errorReason} ${done.errorMessage}\n${printer.log().slice(-3000)}`);
      // ippevepcl read the raster with libcups and reported job-impressions=3.
      assert.equal(done.pagesPrinted, 3);
      const seen = ipptoolJobs(printer);
      assert.equal(seen.length, 1, JSON.stringify(seen));
      assert.equal(seen[0]?.["job-state"], "completed");
      assert.equal(seen[0]?.["job-name"], `switchyard ${job.name.slice(5)}`);
      assert.equal(seen[0]?.["job-impressions"], "3");
      assert.equal(seen[0]?.["media"], "na_letter_8.5x11in");
      // The document as the printer spooled it (-k): sGray 8-bit at a resolution it lists (300 of 300/600), on Letter.
      const files = printer.files();
      const pwg = files.find((f) => f.endsWith(".pwg"));
      assert.ok(pwg, `no .pwg in the spool: ${files.join(", ")}`);
      const pages = readPwg(readFileSync(join(printer.spool, pwg)));
      assert.equal(pages.length, 3);
      for (const p of pages) {
        assert.equal(p.colorSpace, 18);
        assert.equal(p.bitsPerPixel, 8);
        assert.equal(p.dpi, 300);
        assert.equal(p.width, 2550);
        assert.equal(p.height, 3300);
        assert.equal(p.header.toString("ascii", 1732, 1732 + 18), "na_letter_8.5x11in");
        assert.ok(p.data.some((b) => b < 64), "no dark pixels: text missing");
      }
      // And ippevepcl turned it into PCL for the engine.
      const prn = files.find((f) => f.endsWith(".prn"));
      assert.ok(prn && readFileSync(join(printer.spool, prn)).length > 1000, `no PCL output: ${files.join(", ")}`);
    });
  });

  describe("a document of mixed page sizes", () => {
    it("sends each page on the media that fits it, named in its own page header", async () => {
      const printer = await startIppEvePrinter({ command: "/usr/sbin/ippevepcl" });
      await printerFor("ipp-mixed", printer.uri, false);
      const doc = await PDFDocument.create();
      const font = await doc.embedFont(StandardFonts.Helvetica);
      for (const [w, h] of [[612, 792], [612, 1008], [595.28, 841.89]] as const) doc.addPage([w, h]).drawText(`${w} x ${h}`, { x: 72, y: h - 100, size: 24, font });
      const job = await jobs.submit({ requestId: "", printerId: "ipp-mixed", document: { $case: "content", value: Buffer.from(await doc.save()) }, settings: { dpi: 150, colorMode: ColorMode.MONOCHROME, jpegQuality: 85, password: "" } });
      const done = await finished(jobs, job.name, printer);
      assert.equal(JobState[done.state], "COMPLETED", `${done.errorReason} ${done.errorMessage}\n${printer.log().slice(-3000)}`);
      assert.equal(done.pagesPrinted, 3);
      const pages = readPwg(readFileSync(join(printer.spool, printer.files().find((f) => f.endsWith(".pwg")) as string)));
      assert.deepEqual(
        pages.map((p) => [p.width, p.height, p.header.toString("ascii", 1732, 1732 + 64).replace(/\0+$/, "")]),
        [
          [2550, 3300, "na_letter_8.5x11in"],
          [2550, 4200, "na_legal_8.5x14in"],
          [2480, 3508, "iso_a4_210x297mm"],
        ],
      );
    });
  });

  describe("a colour IPP Everywhere printer", () => {
    it("gets colour jobs as sRGB raster with print-color-mode=color", async () => {
      const printer = await startIppEvePrinter({ color: true, command: "/usr/sbin/ippeveps" });
      await printerFor("ipp-color", printer.uri, true);
      const job = await jobs.submit({ requestId: "", printerId: "ipp-color", document: { $case: "content", value: Buffer.from(await imagePdf()) }, settings: { dpi: 100, colorMode: ColorMode.COLOR, jpegQuality: 85, password: "" } });
      const done = await finished(jobs, job.name, printer);
      assert.equal(JobState[done.state], "COMPLETED", `${done.errorReason} ${done.errorMessage}\n${printer.log().slice(-3000)}`);
      assert.equal(done.pagesPrinted, 2);
      const seen = ipptoolJobs(printer);
      assert.equal(seen[0]?.["print-color-mode"], "color");
      const pages = readPwg(readFileSync(join(printer.spool, printer.files().find((f) => f.endsWith(".pwg")) as string)));
      assert.equal(pages.length, 2);
      assert.equal(pages[0]?.colorSpace, 19);
      assert.equal(pages[0]?.bitsPerPixel, 24);
      // The gradient photo is in colour: some pixel has red far from blue.
      const d = pages[0]?.data as Buffer;
      let coloured = false;
      for (let i = 0; i < d.length && !coloured; i += 3) coloured = Math.abs((d[i] as number) - (d[i + 2] as number)) > 80;
      assert.ok(coloured, "no colour in the raster");
    });
  });

  describe("cancel", () => {
    it("cancels the job at the printer (Cancel-Job) when the user cancels it", async () => {
      // No print command: ippeveprinter "prints" by sleeping 5–15 s, time enough to cancel.
      const printer = await startIppEvePrinter();
      await printerFor("ipp-slow", printer.uri, false);
      const job = await jobs.submit({ requestId: "", printerId: "ipp-slow", document: { $case: "content", value: Buffer.from(await textPdf(1)) }, settings: { dpi: 72, colorMode: ColorMode.MONOCHROME, jpegQuality: 80, password: "" } });
      await eventually(() => ipptoolJobs(printer)[0]?.["job-state"] === "processing", 30_000, 200);
      await jobs.cancel(job.name);
      const done = await finished(jobs, job.name, printer);
      assert.equal(JobState[done.state], "CANCELLED");
      await eventually(() => ipptoolJobs(printer)[0]?.["job-state"] === "canceled", 30_000, 300);
    });
  });

  describe("an ipps:// printer with a self-signed certificate", () => {
    const onePage = async (printerId: string): Promise<PrintJob> => {
      const job = await jobs.submit({ requestId: "", printerId, document: { $case: "content", value: Buffer.from(await textPdf(1)) }, settings: { dpi: 72, colorMode: ColorMode.MONOCHROME, jpegQuality: 80, password: "" } });
      return finished(jobs, job.name);
    };

    it("refuses it unless trusted, naming its fingerprint, and sends the printer no job", async () => {
      const printer = await startIppEvePrinter({ command: "/usr/sbin/ippevepcl" });
      const cert = await printer.certificate();
      await printerFor("ipps-untrusted", printer.ippsUri, false);
      const done = await onePage("ipps-untrusted");
      assert.equal(JobState[done.state], "FAILED");
      assert.equal(done.errorReason, "IPP_CERTIFICATE_UNTRUSTED");
      assert.match(done.errorMessage, /DEPTH_ZERO_SELF_SIGNED_CERT/);
      assert.ok(done.errorMessage.includes(cert.sha256), done.errorMessage);
      assert.deepEqual(ipptoolJobs(printer), []);
    });

    it("prints over TLS when its certificate is trusted with tls.caFile (by IP: with serverName) or pinned with tls.certSha256, and refuses another pin", async () => {
      const printer = await startIppEvePrinter({ command: "/usr/sbin/ippevepcl" });
      const cert = await printer.certificate();
      const caFile = join(tempDir(), "printer.pem");
      writeFileSync(caFile, cert.pem);
      await printerFor("ipps-ca", printer.ippsUri, false, { caFile });
      await printerFor("ipps-pinned", printer.ippsUri, false, { certSha256: cert.sha256.replace(/:/g, "").toLowerCase() });
      // Dialled by IP, the certificate (CN=localhost) must be checked against its name.
      const byIp = printer.ippsUri.replace("//localhost:", "//127.0.0.1:");
      await printerFor("ipps-by-ip", byIp, false, { caFile, serverName: "localhost" });
      await printerFor("ipps-by-ip-unnamed", byIp, false, { caFile });
      const otherPin = `${cert.sha256.startsWith("00") ? "11" : "00"}${cert.sha256.slice(2)}`;
      await printerFor("ipps-other-pin", printer.ippsUri, false, { certSha256: otherPin });
      for (const id of ["ipps-ca", "ipps-pinned", "ipps-by-ip"]) {
        const done = await onePage(id);
        assert.equal(JobState[done.state], "COMPLETED", `${id}: ${done.errorReason} ${done.errorMessage}\n${printer.log().slice(-2000)}`);
        assert.equal(done.pagesPrinted, 1);
      }
      const refused = await onePage("ipps-other-pin");
      assert.equal(JobState[refused.state], "FAILED");
      assert.equal(refused.errorReason, "IPP_CERTIFICATE_MISMATCH");
      const unnamed = await onePage("ipps-by-ip-unnamed");
      assert.equal(unnamed.errorReason, "IPP_CERTIFICATE_UNTRUSTED");
      assert.match(unnamed.errorMessage, /ERR_TLS_CERT_ALTNAME_INVALID/);
      // Three jobs reached the printer (over TLS: its log shows the encrypted sessions).
      assert.equal(ipptoolJobs(printer).filter((j) => j["job-state"] === "completed").length, 3);
      assert.match(printer.log(), /Connection now encrypted/);
    });
  });

  describe("failures", () => {
    it("ends the job FAILED with IPP_FORMAT_NOT_SUPPORTED when the printer does not take PWG Raster", async () => {
      const printer = await startIppEvePrinter({ formats: "image/jpeg" });
      await printerFor("ipp-jpeg-only", printer.uri, false);
      const job = await jobs.submit({ requestId: "", printerId: "ipp-jpeg-only", document: { $case: "content", value: Buffer.from(await textPdf(1)) }, settings: { dpi: 72, colorMode: ColorMode.MONOCHROME, jpegQuality: 80, password: "" } });
      const done = await finished(jobs, job.name, printer);
      assert.equal(JobState[done.state], "FAILED");
      assert.equal(done.errorReason, "IPP_FORMAT_NOT_SUPPORTED");
      assert.match(done.errorMessage, /takes .*image\/jpeg, not image\/pwg-raster/);
      assert.deepEqual(ipptoolJobs(printer), []);
    });

    it("ends the job FAILED with IPP_JOB_ABORTED when the printer aborts it", async () => {
      const printer = await startIppEvePrinter({ command: "/bin/false" });
      await printerFor("ipp-aborts", printer.uri, false);
      const job = await jobs.submit({ requestId: "", printerId: "ipp-aborts", document: { $case: "content", value: Buffer.from(await textPdf(1)) }, settings: { dpi: 72, colorMode: ColorMode.MONOCHROME, jpegQuality: 80, password: "" } });
      const done = await finished(jobs, job.name, printer);
      assert.equal(JobState[done.state], "FAILED");
      assert.equal(done.errorReason, "IPP_JOB_ABORTED");
      assert.equal(ipptoolJobs(printer)[0]?.["job-state"], "aborted");
    });

    it("ends the job FAILED with IPP_PRINTER_UNREACHABLE when nothing listens at the printer URI", async () => {
      const printer = await startIppEvePrinter();
      await printer.stop();
      await printerFor("ipp-gone", printer.uri, false);
      const job = await jobs.submit({ requestId: "", printerId: "ipp-gone", document: { $case: "content", value: Buffer.from(await textPdf(1)) }, settings: { dpi: 72, colorMode: ColorMode.MONOCHROME, jpegQuality: 80, password: "" } });
      const done = await finished(jobs, job.name, printer);
      assert.equal(JobState[done.state], "FAILED");
      assert.equal(done.errorReason, "IPP_PRINTER_UNREACHABLE");
    });
  });
});

describe("IPP encoding", () => {
  it("round-trips a request with several values, a resolution and a boolean", () => {
    const b = encodeRequest(IppOp.CREATE_JOB, 7, [{ tag: Tag.URI, name: "printer-uri", values: ["ipp://h/ipp/print"] }], [
      { tag: Tag.KEYWORD, name: "media", values: ["iso_a4_210x297mm"] },
      { tag: Tag.RESOLUTION, name: "printer-resolution", values: [{ x: 300, y: 300, units: 3 }] },
      { tag: Tag.KEYWORD, name: "finishings-keywords", values: ["staple", "punch"] },
      { tag: Tag.BOOLEAN, name: "last-document", values: [true] },
    ]);
    const r = decodeResponse(b);
    assert.equal(r.status, IppOp.CREATE_JOB);
    assert.equal(r.requestId, 7);
    assert.deepEqual(r.operation.get("attributes-charset"), ["utf-8"]);
    const job = r.groups[0]?.attrs;
    assert.deepEqual(job?.get("printer-resolution"), [{ x: 300, y: 300, units: 3 }]);
    assert.deepEqual(job?.get("finishings-keywords"), ["staple", "punch"]);
    assert.deepEqual(job?.get("last-document"), [true]);
  });

  it("reads media sizes from self-describing PWG names", () => {
    assert.deepEqual(mediaSize("iso_a4_210x297mm"), { widthMm: 210, heightMm: 297 });
    assert.deepEqual(mediaSize("na_letter_8.5x11in"), { widthMm: 215.89999999999998, heightMm: 279.4 });
    assert.equal(mediaSize("roll_max"), undefined);
  });
});

describe("IPP job planning", () => {
  const caps: IppCapabilities = {
    formats: ["image/pwg-raster"],
    resolutions: [300, 600],
    rasterTypes: ["black_1", "sgray_8", "srgb_8"],
    media: [
      { name: "na_letter_8.5x11in", widthMm: 215.9, heightMm: 279.4 },
      { name: "iso_a4_210x297mm", widthMm: 210, heightMm: 297 },
    ],
    mediaDefault: "iso_a4_210x297mm",
    colorModes: ["monochrome", "color"],
    printerResolutions: [],
    operations: [],
    accepting: true,
    state: 3,
    stateReasons: [],
  };
  const a4 = { widthMm: 210, heightMm: 297 };

  it("keeps a listed resolution, else takes the next higher one, else the highest", () => {
    assert.equal(planJob(caps, false, 600, a4).dpi, 600);
    assert.equal(planJob(caps, false, 150, a4).dpi, 300);
    assert.equal(planJob(caps, false, 1200, a4).dpi, 600);
  });

  it("sends colour only for a colour job on a printer taking srgb_8, and black_1 only when nothing else is taken", () => {
    assert.equal(planJob(caps, true, 300, a4).mode, "srgb");
    assert.equal(planJob(caps, false, 300, a4).mode, "sgray");
    assert.equal(planJob({ ...caps, colorModes: ["monochrome"] }, true, 300, a4).mode, "sgray");
    assert.equal(planJob({ ...caps, rasterTypes: ["black_1"] }, true, 300, a4).mode, "black");
    assert.throws(() => planJob({ ...caps, rasterTypes: ["cmyk_8"] }, false, 300, a4), /IPP|raster types/);
  });

  it("matches the page to a listed media in either orientation, else uses media-default", () => {
    assert.equal(planJob(caps, false, 300, { widthMm: 279.4, heightMm: 215.9 }).media, "na_letter_8.5x11in");
    assert.equal(planJob(caps, false, 300, { widthMm: 100, heightMm: 150 }).media, "iso_a4_210x297mm");
  });

  it("puts a page of another size on the listed media that fits it, else on the job's media", () => {
    const letterJob = planJob(caps, false, 300, { widthMm: 215.9, heightMm: 279.4 });
    assert.equal(planForPage(letterJob, caps, { widthMm: 216, heightMm: 279 }), letterJob);
    assert.deepEqual(planForPage(letterJob, caps, { widthMm: 297, heightMm: 210 }), { ...letterJob, media: "iso_a4_210x297mm", widthMm: 210, heightMm: 297 });
    assert.equal(planForPage(letterJob, caps, { widthMm: 420, heightMm: 297 }), letterJob, "A3: nothing listed fits");
    assert.equal(planForPage(letterJob, caps, { widthMm: 210, heightMm: 297 }, "na_letter_8.5x11in"), letterJob, "an override holds for every page");
  });

  it("fits a landscape page onto portrait media, turned and centred", async () => {
    // 4 × 2 in at 100 DPI, black, onto A4 at 300 DPI.
    const jpeg = await sharp({ create: { width: 400, height: 200, channels: 3, background: "#000000" } }).jpeg().toBuffer();
    const plan = planJob(caps, false, 100, { widthMm: 101.6, heightMm: 50.8 });
    const p = await planPage(jpeg, 100, plan);
    assert.deepEqual([p.width, p.height, p.mode], [2480, 3508, "sgray"]);
    // Turned: 600 px wide (2 in) and 1200 px tall (4 in), centred.
    const at = (x: number, y: number): number => p.data[y * p.width + x] as number;
    assert.ok(at(1240, 1754) < 30 && at(1240 - 290, 1754 - 590) < 30, "page not at the centre");
    assert.ok(at(1240 - 320, 1754) > 225 && at(1240, 1754 - 620) > 225, "page larger than 2 × 4 in");
  });
});
