/**
 * Role "printer": a printer device driven by the thin printer client. It attaches to the
 * job service, pulls pages with the token, separates RGB→CMYK (grey for a mono device),
 * halftones and writes PWG Raster files; out-of-paper and user-cancel are simulated by
 * config and reported back. It serves no services of its own besides the common ones.
 */
import { resolve } from "node:path";
import { z } from "zod";
import { runPrinter } from "../../clients/printer/index.js";
import type { RoleDefinition } from "../runtime/role.js";
import { hostPort } from "../runtime/units.js";
import { pwgDevice } from "./device/device.js";

const schema = z.strictObject({
  jobs: hostPort().describe("address of the print-jobs node (required)"),
  printerId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/).describe("this printer's id (required)"),
  color: z.boolean().default(true).describe("colour (CMYK) device; false: monochrome; default true"),
  outDir: z.string().optional().describe("folder for the PWG Raster output; default <dataDir>/output"),
  paperSheets: z.number().int().min(0).optional().describe("simulated sheets in the tray (out of paper after them); default endless"),
  userCancelAfterPages: z.number().int().min(0).optional().describe("simulate a user cancel after this many pages; default never"),
});

/** Resolved printer options. */
export type PrinterConfig = z.output<typeof schema>;

/** The printer role. */
export const printerRole: RoleDefinition<PrinterConfig> = {
  role: "printer",
  summary: "a printer: pulls converted pages with a token and writes PWG Raster",
  configSchema: schema,
  create: async (ctx) => {
    const cfg = ctx.config.roleConfig;
    const stop = new AbortController();
    let loop: Promise<void> | undefined;
    let printed = 0;
    const device = pwgDevice({
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
            const r = await device(req, pages, signal);
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
