/**
 * PDF → per-page JPEG conversion on a RenderPool: opens the document, enforces the page
 * and pixel caps, renders pages in parallel on the pool's children and hands them over
 * in page order. Used by the worker's Convert and by `switchyard print convert` alike.
 */
import { rm } from "node:fs/promises";
import type { SwitchyardError } from "../runtime/errors.js";
import { ColorMode } from "../../gen/switchyard/print/v1/print_job.js";
import { ConvertErrors } from "./errors.js";
import type { PoolFailure, RenderedPage, RenderPool } from "./render/pool.js";
import type { ResolvedSettings } from "./settings.js";

/** Limits a conversion enforces. */
export interface ConvertLimits {
  /** Most pages a document may have. */
  maxPages: number;
  /** Most pixels (width × height) a rendered page may have. */
  maxPagePixels: number;
  /** Per-page render time limit (enforced by the pool). */
  pageTimeoutMs: number;
}

/** Callbacks of a conversion. */
export interface ConvertHooks {
  /** Called once with the page count before any page is rendered. */
  onStart(pageCount: number): Promise<void>;
  /** Called for each page, in page order, one at a time. */
  onPage(pageNumber: number, page: RenderedPage): Promise<void>;
  /** Stops the conversion when aborted. */
  signal?: AbortSignal;
  /**
   * A file for page `pageNumber`'s JPEG: the render process writes it there and the page
   * handed to onPage names the file (empty bytes). Unset: pages come as bytes.
   */
  pageFile?(pageNumber: number): string;
}

function failureToError(f: PoolFailure, page: number, limits: ConvertLimits, maxPixels: number): SwitchyardError {
  switch (f.kind) {
    case "CORRUPT":
      return ConvertErrors.corrupt(f.message);
    case "PASSWORD_REQUIRED":
      return ConvertErrors.passwordRequired();
    case "PASSWORD_INCORRECT":
      return ConvertErrors.passwordIncorrect();
    case "PRINTING_NOT_ALLOWED":
      return ConvertErrors.printingNotAllowed();
    case "PAGE_TOO_LARGE":
      return ConvertErrors.pageTooLarge(page, f.pixels, maxPixels);
    case "TIMEOUT":
      return ConvertErrors.timeout(page, limits.pageTimeoutMs);
    case "CRASHED":
      return ConvertErrors.memory(page);
    case "STOPPED":
    case "NOT_OPEN":
      return ConvertErrors.busy();
    default:
      return ConvertErrors.corrupt(f.message);
  }
}

/** Converts `data` (a PDF) page by page; throws a ConvertErrors error on failure. */
export async function convertPdf(
  pool: RenderPool,
  key: string,
  data: Uint8Array,
  settings: ResolvedSettings,
  limits: ConvertLimits,
  hooks: ConvertHooks,
  parallel: number,
): Promise<number> {
  const opened = await pool.inspect(key, data, settings.password);
  if ("kind" in opened) throw failureToError(opened, 0, limits, limits.maxPagePixels);
  const n = opened.numPages;
  const results = new Map<number, Promise<RenderedPage | PoolFailure>>();
  // Files pages are rendered into (hooks.pageFile) until onPage takes them over.
  const files = new Map<number, string>();
  try {
    if (n < 1) throw ConvertErrors.corrupt("the document has no pages");
    if (n > limits.maxPages) throw ConvertErrors.tooManyPages(n, limits.maxPages);
    await hooks.onStart(n);
    const o = { dpi: settings.dpi, mono: settings.colorMode === ColorMode.MONOCHROME, quality: settings.jpegQuality, maxPixels: limits.maxPagePixels };
    let next = 1;
    const launch = (): void => {
      while (next <= n && results.size < parallel && !hooks.signal?.aborted) {
        const p = next++;
        const out = hooks.pageFile?.(p);
        if (out) files.set(p, out);
        results.set(p, pool.render(key, data, settings.password, p, out ? { ...o, out } : o));
      }
    };
    launch();
    for (let p = 1; p <= n; p++) {
      if (hooks.signal?.aborted) throw ConvertErrors.busy();
      const r = await (results.get(p) as Promise<RenderedPage | PoolFailure>);
      results.delete(p);
      if ("kind" in r) {
        // Let pages already running finish before the caller cleans up.
        await Promise.allSettled(results.values());
        throw failureToError(r, p, limits, limits.maxPagePixels);
      }
      launch();
      files.delete(p);
      await hooks.onPage(p, r);
    }
    return n;
  } finally {
    // Files of pages no onPage took (the conversion failed or was cancelled, or a render
    // process died writing one), once their render is over.
    for (const [p, file] of files) {
      void Promise.resolve(results.get(p))
        .then(() => rm(file, { force: true }))
        .catch(() => undefined);
    }
    pool.close(key);
  }
}
