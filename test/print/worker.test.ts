import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status as Status, type ClientReadableStream } from "@grpc/grpc-js";
import { PrintConversionServiceClient, type ConvertResponse } from "../../gen/switchyard/print/v1/print_conversion_service.js";
import { ColorMode, type PrintSettings, type SessionId } from "../../gen/switchyard/print/v1/print_job.js";
import { dial } from "../../clients/grpc/channel.js";
import { unary } from "../../clients/grpc/call.js";
import { parseRichError } from "../../clients/grpc/rich-error.js";
import { corruptPdf, encryptedPdf, hugePagePdf, mixedPdf, pageBombPdf, slowPagePdf, textPdf } from "../../tools/fixtures/pdfs.js";
import { eventually } from "../helpers/nodes.js";
import { startPrintCluster, type PrintCluster } from "./cluster.js";

let seq = 0;
const sid = (): SessionId => ({ jobId: `t${Date.now().toString(36)}${seq++}`, printerId: "p1" });

async function rejects(p: Promise<unknown>, code: Status, reason: string): Promise<void> {
  try {
    await p;
  } catch (err) {
    const st = parseRichError(err);
    assert.equal(Status[st.code], Status[code], st.message);
    assert.equal(st.errorInfo?.reason, reason, st.message);
    assert.equal(st.errorInfo?.domain, "switchyard.print");
    return;
  }
  assert.fail(`expected ${Status[code]} ${reason}`);
}

async function convertAll(c: PrintConversionServiceClient, session: SessionId, settings?: PrintSettings): Promise<ConvertResponse[]> {
  const call: ClientReadableStream<ConvertResponse> = c.convert({ session, ...(settings ? { settings } : {}) });
  const out: ConvertResponse[] = [];
  for await (const m of call as AsyncIterable<ConvertResponse>) out.push(m);
  return out;
}

describe("PrintConversionService", function () {
  this.timeout(120_000);
  let cl: PrintCluster;
  let w: PrintConversionServiceClient;
  let http: Server;
  let base = "";
  const served = new Map<string, Buffer>();
  let spool = "";

  before(async () => {
    // Pages through the store's spool folder: the hostile documents below also check that a
    // failed conversion (a render process killed mid-page included) leaves no file there.
    spool = mkdtempSync(join(tmpdir(), "switchyard-print-spool-"));
    cl = await startPrintCluster({
      workers: 1,
      store: { spoolDir: spool },
      worker: {
        storeSpoolDir: spool,
        render: { processes: 1, pageTimeoutMs: "1500ms", pagesPerProcess: 3 },
        limits: { maxPages: 50, maxPagePixels: 50_000_000, maxDocumentBytes: "12MiB" },
        download: { allowPrivate: ["127.0.0.2/32"], timeoutMs: "2s" },
      },
    });
    w = dial(PrintConversionServiceClient, cl.workers[0]?.address as string);
    served.set("/doc.pdf", Buffer.from(await textPdf(2)));
    served.set("/big.pdf", Buffer.alloc(13 * 1024 * 1024, 32));
    http = createServer((req, res) => {
      if (req.url === "/redirect-loopback") {
        res.writeHead(302, { location: `http://127.0.0.1:${(http.address() as AddressInfo).port}/doc.pdf` }).end();
        return;
      }
      if (req.url === "/redirect-ok") {
        res.writeHead(302, { location: "/doc.pdf" }).end();
        return;
      }
      if (req.url === "/slow") return; // never answers
      const body = served.get(req.url ?? "");
      if (!body) res.writeHead(404).end();
      else res.writeHead(200, { "content-type": "application/pdf" }).end(body);
    });
    await new Promise<void>((r) => http.listen(0, "127.0.0.2", r));
    base = `http://127.0.0.2:${(http.address() as AddressInfo).port}`;
  });
  after(async () => {
    w?.close();
    http?.closeAllConnections();
    http?.close();
    await cl?.stop();
    if (spool) rmSync(spool, { recursive: true, force: true });
  });

  describe("IssueToken", () => {
    it("refuses a second token for a live session with ALREADY_EXISTS", async () => {
      const s = sid();
      const r = await unary(w, w.issueToken, { session: s });
      assert.ok(r.token.length >= 32);
      assert.ok(r.expireTime && r.createTime && r.expireTime > r.createTime);
      await rejects(unary(w, w.issueToken, { session: s }), Status.ALREADY_EXISTS, "SESSION_EXISTS");
      await unary(w, w.complete, { session: s, resultId: "" });
      // Once completed, the session id may be used again.
      await unary(w, w.issueToken, { session: s });
      await unary(w, w.complete, { session: s, resultId: "" });
    });
    it("refuses a malformed session id with INVALID_ARGUMENT", async () => {
      await rejects(unary(w, w.issueToken, { session: { jobId: "../x", printerId: "p" } }), Status.INVALID_ARGUMENT, "INVALID_ARGUMENT");
    });
  });

  describe("Download, Convert and Complete for an unknown session", () => {
    it("fail with FAILED_PRECONDITION and SESSION_NOT_FOUND", async () => {
      const s = sid();
      await rejects(unary(w, w.download, { session: s, source: { $case: "content", value: Buffer.from("%PDF") } }), Status.FAILED_PRECONDITION, "SESSION_NOT_FOUND");
      await rejects(convertAll(w, s), Status.FAILED_PRECONDITION, "SESSION_NOT_FOUND");
      await rejects(unary(w, w.complete, { session: s, resultId: "" }), Status.FAILED_PRECONDITION, "SESSION_NOT_FOUND");
    });
    it("Convert before Download fails with DOCUMENT_NOT_DOWNLOADED", async () => {
      const s = sid();
      await unary(w, w.issueToken, { session: s });
      await rejects(convertAll(w, s), Status.FAILED_PRECONDITION, "DOCUMENT_NOT_DOWNLOADED");
      await unary(w, w.complete, { session: s, resultId: "" });
    });
  });

  describe("Download", () => {
    const dl = async (url: string): Promise<unknown> => {
      const s = sid();
      await unary(w, w.issueToken, { session: s });
      try {
        return await unary(w, w.download, { session: s, source: { $case: "url", value: url } });
      } finally {
        await unary(w, w.complete, { session: s, resultId: "" });
      }
    };
    it("fetches an allow-listed URL, following a redirect to the same host", async () => {
      const r = (await dl(`${base}/redirect-ok`)) as { sizeBytes: bigint; sha256: string };
      assert.equal(Number(r.sizeBytes), served.get("/doc.pdf")?.length);
      assert.match(r.sha256, /^[0-9a-f]{64}$/);
    });
    it("refuses loopback and private addresses that are not allow-listed, also behind a redirect", async () => {
      await rejects(dl(`http://127.0.0.1:1/x.pdf`), Status.PERMISSION_DENIED, "URL_NOT_ALLOWED");
      await rejects(dl(`http://localhost:1/x.pdf`), Status.PERMISSION_DENIED, "URL_NOT_ALLOWED");
      await rejects(dl(`http://[::1]:1/x.pdf`), Status.PERMISSION_DENIED, "URL_NOT_ALLOWED");
      await rejects(dl(`http://169.254.169.254/latest/meta-data`), Status.PERMISSION_DENIED, "URL_NOT_ALLOWED");
      await rejects(dl(`http://[::ffff:10.0.0.1]/x.pdf`), Status.PERMISSION_DENIED, "URL_NOT_ALLOWED");
      await rejects(dl(`${base}/redirect-loopback`), Status.PERMISSION_DENIED, "URL_NOT_ALLOWED");
    });
    it("reports a failed download as such: HTTP errors, size and time limits, bad schemes", async () => {
      await rejects(dl(`${base}/missing.pdf`), Status.FAILED_PRECONDITION, "DOWNLOAD_FAILED");
      await rejects(dl(`${base}/big.pdf`), Status.RESOURCE_EXHAUSTED, "DOCUMENT_TOO_LARGE");
      await rejects(dl(`${base}/slow`), Status.DEADLINE_EXCEEDED, "DOWNLOAD_TIMEOUT");
      await rejects(dl(`file:///etc/passwd`), Status.INVALID_ARGUMENT, "URL_SCHEME_NOT_ALLOWED");
      await rejects(dl(`http://127.0.0.2:1/x.pdf`), Status.UNAVAILABLE, "DOWNLOAD_FAILED");
    });
  });

  describe("Convert", () => {
    const run = async (pdf: Uint8Array, settings?: PrintSettings): Promise<ConvertResponse[]> => {
      const s = sid();
      await unary(w, w.issueToken, { session: s });
      try {
        await unary(w, w.download, { session: s, source: { $case: "content", value: Buffer.from(pdf) } });
        return await convertAll(w, s, settings);
      } finally {
        await unary(w, w.complete, { session: s, resultId: "" });
      }
    };

    it("streams started, every page in order and finished, and deletes the downloaded PDF", async () => {
      const s = sid();
      await unary(w, w.issueToken, { session: s });
      await unary(w, w.download, { session: s, source: { $case: "content", value: Buffer.from(await mixedPdf(5)) } });
      const ev = await convertAll(w, s, { dpi: 72, colorMode: ColorMode.COLOR, jpegQuality: 70, password: "" });
      assert.deepEqual(ev.map((e) => e.event?.$case), ["started", "page", "page", "page", "page", "page", "finished"]);
      const started = ev[0]?.event?.$case === "started" ? ev[0].event.value : undefined;
      assert.equal(started?.pageCount, 5);
      assert.match(started?.metafileUrl ?? "", /^printstore:\/\/127\.0\.0\.1:\d+\/results\/[A-Za-z0-9_-]+\/metafile$/);
      const session = await cl.printStore.getSession(`${s.jobId}/${s.printerId}`);
      assert.equal(session.document, undefined);
      assert.equal((await cl.printStore.counts()).documentChunks, 0);
      await unary(w, w.complete, { session: s, resultId: started?.resultId ?? "" });
    });

    it("ends each hostile document with its own status and reason, and keeps serving", async () => {
      await rejects(run(corruptPdf()), Status.INVALID_ARGUMENT, "DOCUMENT_CORRUPT");
      await rejects(run(encryptedPdf("secret", "owner")), Status.FAILED_PRECONDITION, "PASSWORD_REQUIRED");
      await rejects(run(encryptedPdf("secret", "owner"), { dpi: 0, colorMode: 0, jpegQuality: 0, password: "wrong" }), Status.PERMISSION_DENIED, "PASSWORD_INCORRECT");
      await rejects(run(encryptedPdf("", "owner", false)), Status.PERMISSION_DENIED, "PRINTING_NOT_ALLOWED");
      await rejects(run(await hugePagePdf()), Status.RESOURCE_EXHAUSTED, "PAGE_TOO_LARGE");
      await rejects(run(pageBombPdf()), Status.RESOURCE_EXHAUSTED, "TOO_MANY_PAGES");
      await rejects(run(await mixedPdf(51)), Status.RESOURCE_EXHAUSTED, "TOO_MANY_PAGES");
      await rejects(run(slowPagePdf()), Status.DEADLINE_EXCEEDED, "PAGE_RENDER_TIMEOUT");
      await rejects(run(await textPdf(1), { dpi: 9000, colorMode: 0, jpegQuality: 0, password: "" }), Status.INVALID_ARGUMENT, "SETTINGS_INVALID");
      // The right password opens it, and the worker still converts after all of the above.
      const ok = await run(encryptedPdf("secret", "owner"), { dpi: 72, colorMode: ColorMode.MONOCHROME, jpegQuality: 0, password: "secret" });
      assert.equal(ok.at(-1)?.event?.$case, "finished");
      const after = await run(await textPdf(2));
      assert.equal(after.at(-1)?.event?.$case, "finished");
      // Files of a failed conversion are removed once its renders are over.
      await eventually(async () => {
        assert.deepEqual(await cl.printStore.counts(), { sessions: 0, tokens: 0, documentChunks: 0, results: 0, pages: 0 });
        return true;
      }, 10_000);
    });
  });
});
