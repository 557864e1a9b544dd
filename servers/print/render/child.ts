/**
 * A render child process: opens PDFs with pdf.js and renders pages to JPEG with
 * @napi-rs/canvas + sharp. It runs under an OS memory limit (RLIMIT_DATA, set by the
 * pool through prlimit) and is killed by the pool on a per-page timeout, so a hostile
 * page can only take this process down, never the worker.
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { GlobalFonts } from "@napi-rs/canvas";
import sharp from "sharp";
import { installFontFace } from "./font-face.js";
import { PageSurface } from "./surface.js";
import type { ChildRequest, ChildResponse, RenderFailure } from "./protocol.js";
import { installSoftMasks, SoftMaskFilterFactory } from "./smask.js";

type PdfJs = typeof import("pdfjs-dist/legacy/build/pdf.mjs");
type Doc = Awaited<ReturnType<PdfJs["getDocument"]>["promise"]>;

const require = createRequire(import.meta.url);
const base = dirname(require.resolve("pdfjs-dist/package.json"));
const CMAPS = join(base, "cmaps") + "/";
const FONTS = join(base, "standard_fonts") + "/";
const WASM = join(base, "wasm") + "/";
const MAX_OPEN = 2;

// Text is drawn with fillText from real font programs, not glyph paths (see font-face.ts).
const ownerDocument = installFontFace();

sharp.concurrency(1);
sharp.cache(false);
installSoftMasks();

/**
 * Fonts a PDF names but does not embed, and for which pdf.js has no standard font data
 * (CJK CIDFonts such as HeiseiMin-W3 with UniJIS-UCS2-H), are drawn by pdf.js with
 * `fillText` in the CSS generic family ("serif", "sans-serif", "monospace"). In
 * @napi-rs/canvas those generics resolve to a Latin-only font, so CJK text came out as
 * .notdef boxes: point them at a system CJK font (which covers Latin too) when one is
 * installed (Debian: fonts-noto-cjk, fonts-ipafont-gothic).
 */
const CJK_FALLBACKS: [string, string[]][] = [
  ["sans-serif", ["Noto Sans CJK JP", "Source Han Sans JP", "IPAGothic", "IPAexGothic", "WenQuanYi Micro Hei", "Droid Sans Fallback"]],
  ["serif", ["Noto Serif CJK JP", "Source Han Serif JP", "IPAMincho", "IPAexMincho", "Noto Sans CJK JP", "IPAGothic"]],
  // pdf.js calls a font whose glyphs all have one width "monospace": every CJK CIDFont
  // with only a /DW. Only the first face of a .ttc is registered, so no "Mono CJK" here.
  ["monospace", ["Noto Sans CJK JP", "Source Han Sans JP", "IPAGothic", "WenQuanYi Micro Hei", "Droid Sans Fallback"]],
];
for (const [generic, families] of CJK_FALLBACKS) {
  const family = families.find((f) => GlobalFonts.has(f));
  if (family) GlobalFonts.setAlias(family, generic);
}

let pdfjs: PdfJs | undefined;
let surface: PageSurface | undefined;

/**
 * RGBA → RGB, four pixels (four 32-bit words in, three out) per step; little-endian.
 * `px` may be the start of `raw` itself: each step writes only words it has already read.
 */
function toRgb(raw: Buffer, px: Buffer): void {
  const n = raw.length >> 2;
  const s = new Uint32Array(raw.buffer, raw.byteOffset, n);
  const d = new Uint32Array(px.buffer, px.byteOffset, Math.floor(px.length / 4));
  const whole = n & ~3;
  let j = 0;
  for (let i = 0; i < whole; i += 4) {
    const a = s[i] as number;
    const b = s[i + 1] as number;
    const c = s[i + 2] as number;
    const e = s[i + 3] as number;
    d[j++] = (a & 0xffffff) | (b << 24);
    d[j++] = ((b >>> 8) & 0xffff) | (c << 16);
    d[j++] = ((c >>> 16) & 0xff) | (e << 8);
  }
  for (let i = whole; i < n; i++) {
    px[i * 3] = raw[i * 4] as number;
    px[i * 3 + 1] = raw[i * 4 + 1] as number;
    px[i * 3 + 2] = raw[i * 4 + 2] as number;
  }
}

/** RGBA → 8-bit grey (BT.601 weights); `px` may be the start of `raw` itself. */
function toGrey(raw: Buffer, px: Buffer): void {
  for (let i = 0, j = 0; j < px.length; i += 4, j++) px[j] = ((raw[i] as number) * 77 + (raw[i + 1] as number) * 150 + (raw[i + 2] as number) * 29) >> 8;
}
const docs = new Map<string, Doc>();

async function lib(): Promise<PdfJs> {
  pdfjs ??= await import("pdfjs-dist/legacy/build/pdf.mjs");
  return pdfjs;
}

function reply(msg: ChildResponse): void {
  process.send?.(msg);
}

async function open(key: string, data: Uint8Array, password: string): Promise<{ numPages: number } | RenderFailure> {
  const p = await lib();
  const old = docs.get(key);
  if (old) return { numPages: old.numPages };
  while (docs.size >= MAX_OPEN) {
    const [k, d] = docs.entries().next().value as [string, Doc];
    docs.delete(k);
    await d.destroy().catch(() => undefined);
  }
  const task = p.getDocument({
    data: new Uint8Array(data),
    password,
    isEvalSupported: false,
    cMapUrl: CMAPS,
    cMapPacked: true,
    standardFontDataUrl: FONTS,
    wasmUrl: WASM,
    verbosity: 0,
    disableFontFace: false,
    ownerDocument,
    stopAtErrors: false,
    maxImageSize: 100_000_000,
    // Luminosity soft masks (see smask.ts): without it they mask nothing under Node.
    FilterFactory: SoftMaskFilterFactory,
  } as Parameters<PdfJs["getDocument"]>[0]);
  let doc: Doc;
  try {
    doc = await task.promise;
  } catch (err) {
    const e = err as { name?: string; code?: number; message?: string };
    if (e.name === "PasswordException") return e.code === 2 ? { kind: "PASSWORD_INCORRECT" } : { kind: "PASSWORD_REQUIRED" };
    return { kind: "CORRUPT", message: String(e.message ?? err).slice(0, 200) };
  }
  const perms = await doc.getPermissions().catch(() => null);
  if (perms && !password && !perms.includes(p.PermissionFlag.PRINT)) {
    await doc.destroy();
    return { kind: "PRINTING_NOT_ALLOWED" };
  }
  docs.set(key, doc);
  return { numPages: doc.numPages };
}

async function render(
  key: string,
  pageNo: number,
  dpi: number,
  mono: boolean,
  quality: number,
  maxPixels: number,
  out: string | undefined,
): Promise<{ jpeg?: Uint8Array; size: number; width: number; height: number; renderMs: number; encodeMs: number } | RenderFailure> {
  const doc = docs.get(key);
  if (!doc) return { kind: "NOT_OPEN" };
  let page;
  try {
    page = await doc.getPage(pageNo);
  } catch (err) {
    return { kind: "CORRUPT", message: `page ${pageNo}: ${String((err as Error).message ?? err).slice(0, 200)}` };
  }
  const viewport = page.getViewport({ scale: dpi / 72 });
  const width = Math.ceil(viewport.width);
  const height = Math.ceil(viewport.height);
  // Check before allocating: a canvas above 2^31 bytes silently yields no pixels.
  if (width * height > maxPixels || width > 65_000 || height > 65_000) return { kind: "PAGE_TOO_LARGE", pixels: width * height };
  const t0 = performance.now();
  // Pages of a document mostly share a size: reuse the canvas rather than allocating (and
  // fragmenting) tens of MB per page. Its context is handed to pdf.js as the context (not
  // the canvas): given the canvas, pdf.js asks for a context with other attributes on every
  // page, which @napi-rs/canvas answers by setting the surface up again (~18 ms a page at
  // 300 DPI). pdf.js fills the page white itself.
  if (surface?.width !== width || surface.height !== height) surface = new PageSurface(width, height);
  const ctx = surface.begin();
  try {
    await page.render({ canvasContext: ctx as never, viewport, intent: "print" } as never).promise;
  } catch (err) {
    return { kind: "CORRUPT", message: `page ${pageNo}: ${String((err as Error).message ?? err).slice(0, 200)}` };
  } finally {
    page.cleanup();
  }
  const t1 = performance.now();
  // The canvas is opaque, so alpha is dropped here, in one pass over 32-bit words (four
  // RGBA pixels in, three words of RGB out), which costs about half a byte-wise loop and
  // less than a libvips removeAlpha step. Huffman optimisation is off: it doubled the
  // encode time for a few per cent of size.
  // The RGB (or grey) pixels are packed in place into the start of the canvas's own pixel
  // memory rather than into a second buffer: that buffer (25 MB at 300 DPI, touched on
  // every page) was a tenth of a render process's RSS. The canvas's pixels are only read
  // up to the next page's `begin()`, which clears them, and pdf.js paints every page's
  // white background over the whole canvas; a child renders one page at a time.
  const raw = surface.pixels();
  const channels = mono ? 1 : 3;
  const px = raw.subarray(0, width * height * channels);
  if (mono) toGrey(raw, px);
  else toRgb(raw, px);
  const encoder = sharp(px, { raw: { width, height, channels } }).jpeg({ quality, optimiseCoding: false, chromaSubsampling: quality >= 90 ? "4:4:4" : "4:2:0" });
  if (out) {
    // Into the store's spool folder (a worker sharing the store's filesystem): the page's
    // bytes are written once, here, and never copied through IPC, the worker or gRPC.
    const info = await encoder.toFile(out);
    return { size: info.size, width, height, renderMs: t1 - t0, encodeMs: performance.now() - t1 };
  }
  const jpeg = await encoder.toBuffer();
  return { jpeg, size: jpeg.length, width, height, renderMs: t1 - t0, encodeMs: performance.now() - t1 };
}

async function handle(req: ChildRequest): Promise<ChildResponse> {
  try {
    if (req.op === "open") {
      const r = await open(req.key, req.data, req.password);
      return "kind" in r ? { id: req.id, ok: false, failure: r } : { id: req.id, ok: true, numPages: r.numPages };
    }
    if (req.op === "render") {
      const r = await render(req.key, req.page, req.dpi, req.mono, req.quality, req.maxPixels, req.out);
      return "kind" in r ? { id: req.id, ok: false, failure: r } : { id: req.id, ok: true, ...r };
    }
    const d = docs.get(req.key);
    docs.delete(req.key);
    await d?.destroy().catch(() => undefined);
    return { id: req.id, ok: true };
  } catch (err) {
    return { id: req.id, ok: false, failure: { kind: "ERROR", message: String((err as Error).message ?? err).slice(0, 200) } };
  }
}

// One request at a time: the pool never sends a second before the first is answered.
process.on("message", (req: ChildRequest) => {
  void handle(req).then(reply);
});
process.on("disconnect", () => process.exit(0));
