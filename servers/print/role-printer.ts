/**
 * Role "printer": a printer device driven by the thin printer client. It attaches to the
 * job service, pulls pages with the token, separates RGB→CMYK (grey for a mono device),
 * halftones and writes PWG Raster files; out-of-paper and user-cancel are simulated by
 * config and reported back. With `ipp.uri` set it instead forwards each job as PWG Raster
 * to a real IPP printer and reports the printer's verdict. It serves no services of its
 * own besides the common ones.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { z } from "zod";
import { runPrinter } from "../../clients/printer/index.js";
import type { RoleDefinition } from "../runtime/role.js";
import { duration, hostPort } from "../runtime/units.js";
import { pwgDevice } from "./device/device.js";
import { ippDevice } from "./device/ipp-device.js";
import type { IppTls } from "./device/ipp.js";

const schema = z.strictObject({
  jobs: hostPort().describe("address of the print-jobs node (required)"),
  printerId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/).describe("this printer's id (required)"),
  color: z.boolean().default(true).describe("colour (CMYK) device; false: monochrome; default true"),
  outDir: z.string().optional().describe("folder for the PWG Raster output; default <dataDir>/output"),
  paperSheets: z.number().int().min(0).optional().describe("simulated sheets in the tray (out of paper after them); default endless"),
  userCancelAfterPages: z.number().int().min(0).optional().describe("simulate a user cancel after this many pages; default never"),
  ipp: z
    .strictObject({
      uri: z.string().regex(/^(ipps?|https?):\/\/[^/]+/, "an ipp://, ipps://, http:// or https:// printer URI").describe("the IPP printer to forward jobs to, e.g. ipp://host:631/ipp/print (required)"),
      requestTimeoutMs: duration().default(30_000).describe("time limit of each IPP request; default 30s"),
      jobTimeoutMs: duration().default(600_000).describe("how long to follow a job at the printer until it completes; default 10m"),
      pollMs: duration().default(1_000).describe("Get-Job-Attributes interval while following a job; default 1s"),
      userName: z.string().min(1).default("switchyard").describe("requesting-user-name; default switchyard"),
      media: z.string().optional().describe("PWG media keyword to print on instead of matching the page size, e.g. iso_a4_210x297mm"),
      tls: z
        .strictObject({
          caFile: z.string().optional().describe("PEM file trusted for the printer instead of the system CAs: its CA, or its self-signed certificate itself"),
          certSha256: z
            .string()
            .regex(/^([0-9a-fA-F]{2}:?){31}[0-9a-fA-F]{2}$/, "a SHA-256 fingerprint: 64 hex digits, colons optional")
            .optional()
            .describe("pin the printer's certificate by its SHA-256 fingerprint (as a refused connection reports it): exactly that certificate is accepted"),
          serverName: z.string().optional().describe("name the certificate must carry when the URI's host is not it (printer dialled by IP)"),
        })
        .optional()
        .describe("certificate check for ipps:// printers; default: system CAs and the URI's host name"),
    })
    .optional()
    .describe("forward jobs to a real IPP printer (PWG Raster) instead of writing files; paperSheets/userCancelAfterPages do not apply"),
});

/** Resolved printer options. */
export type PrinterConfig = z.output<typeof schema>;

/** The IPP client's certificate check from the role's `ipp.tls` (the CA file is read once, here). */
function printerTls(t: NonNullable<NonNullable<PrinterConfig["ipp"]>["tls"]>): IppTls {
  return {
    ...(t.caFile ? { ca: readFileSync(resolve(t.caFile)) } : {}),
    ...(t.certSha256 ? { certSha256: t.certSha256 } : {}),
    ...(t.serverName ? { serverName: t.serverName } : {}),
  };
}

/** The printer role. */
export const printerRole: RoleDefinition<PrinterConfig> = {
  role: "printer",
  summary: "a printer: pulls converted pages with a token and writes PWG Raster (or forwards it to an IPP printer)",
  configSchema: schema,
  create: async (ctx) => {
    const cfg = ctx.config.roleConfig;
    const stop = new AbortController();
    let loop: Promise<void> | undefined;
    let printed = 0;
    const device = cfg.ipp
      ? ippDevice({
          uri: cfg.ipp.uri,
          color: cfg.color,
          requestTimeoutMs: cfg.ipp.requestTimeoutMs,
          jobTimeoutMs: cfg.ipp.jobTimeoutMs,
          pollMs: cfg.ipp.pollMs,
          userName: cfg.ipp.userName,
          ...(cfg.ipp.media ? { media: cfg.ipp.media } : {}),
          ...(cfg.ipp.tls ? { tls: printerTls(cfg.ipp.tls) } : {}),
          onPage: () => printed++,
          onJob: (job, ippJobId) => ctx.log.info({ job, ippJobId, printer: cfg.ipp?.uri }, "job accepted by the IPP printer"),
        })
      : pwgDevice({
          outDir: cfg.outDir ? resolve(cfg.outDir) : resolve(ctx.config.dataDir, "output"),
          color: cfg.color,
          ...(cfg.paperSheets !== undefined ? { paperSheets: cfg.paperSheets } : {}),
          ...(cfg.userCancelAfterPages !== undefined ? { userCancelAfterPages: cfg.userCancelAfterPages } : {}),
          onPage: () => printed++,
        });
    return {
      services: [],
      load: () => ({ figures: { pages_printed: printed } }),
      start: () => {
        loop = runPrinter(
          {
            jobs: cfg.jobs,
            printerId: cfg.printerId,
            color: cfg.color,
            channel: ctx.channel,
            signal: stop.signal,
            onDisconnect: (err) => ctx.log.warn({ err: String(err) }, "printer link to the job service failed; reconnecting"),
          },
          async (req, pages, signal) => {
            ctx.log.info({ job: req.jobId, pages: req.pageCount }, "printing");
            const r = await device(req, pages, signal).catch((err: unknown) => {
              ctx.log.warn({ job: req.jobId, err: String(err), reason: (err as { reason?: string }).reason }, "print failed");
              throw err;
            });
            ctx.log.info({ job: req.jobId, outcome: r.outcome, reason: r.reason, pages: r.pagesPrinted }, "print finished");
            return r;
          },
        );
      },
      stop: async () => {
        stop.abort();
        await loop?.catch(() => undefined);
      },
    };
  },
};
