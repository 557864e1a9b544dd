/**
 * A simulated printer engine that writes real device output: every job becomes one PWG
 * Raster file (what an IPP Everywhere printer takes) in the output folder. Out-of-paper
 * and user-cancel can be simulated by configuration and are reported back (Fig. 9,
 * S1411–S1414).
 */
import { once } from "node:events";
import { createWriteStream, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { PrintOutcome, type DeviceHandler } from "../../../clients/printer/index.js";
import { pwgHeader, pwgPageData, PWG_SYNC } from "./pwg.js";
import { toDevicePage } from "./raster.js";

/** Options of a simulated device. */
export interface DeviceOptions {
  /** Folder the PWG Raster files are written to. */
  outDir: string;
  /** Colour device (CMYK) or monochrome (black). */
  color: boolean;
  /** Sheets in the tray; printing more reports CANCELLED / OUT_OF_PAPER. Unset: endless. */
  paperSheets?: number;
  /** Simulate the user pressing cancel after this many pages. */
  userCancelAfterPages?: number;
  /** Called after each page is written (tests, progress). */
  onPage?: (jobId: string, page: number) => void;
}

/** A device handler writing `<outDir>/<jobId>.pwg`. */
export function pwgDevice(o: DeviceOptions): DeviceHandler {
  mkdirSync(o.outDir, { recursive: true });
  let paper = o.paperSheets ?? Infinity;
  return async (req, pages, signal) => {
    const file = join(o.outDir, `${req.jobId}.pwg`);
    const out = createWriteStream(file);
    const write = async (b: Buffer): Promise<void> => {
      if (!out.write(b)) await once(out, "drain");
    };
    let printed = 0;
    let result: { outcome: PrintOutcome; reason: string } = { outcome: PrintOutcome.DONE, reason: "" };
    try {
      await write(PWG_SYNC);
      for await (const { page, jpeg } of pages) {
        if (signal.aborted) {
          result = { outcome: PrintOutcome.CANCELLED, reason: "JOB_CANCELLED" };
          break;
        }
        if (paper <= 0) {
          result = { outcome: PrintOutcome.CANCELLED, reason: "OUT_OF_PAPER" };
          break;
        }
        if (o.userCancelAfterPages !== undefined && printed >= o.userCancelAfterPages) {
          result = { outcome: PrintOutcome.CANCELLED, reason: "USER_CANCELLED" };
          break;
        }
        const dp = await toDevicePage(jpeg, page.dpi || req.dpi, o.color);
        await write(pwgHeader(dp, page.pageNumber, req.pageCount));
        await write(pwgPageData(dp));
        paper--;
        printed++;
        o.onPage?.(req.jobId, page.pageNumber);
      }
    } finally {
      out.end();
      await once(out, "close");
    }
    if (result.outcome !== PrintOutcome.DONE && printed === 0) rmSync(file, { force: true });
    return { ...result, pagesPrinted: printed };
  };
}
