/**
 * PWG Raster (PWG 5102.4), the format IPP Everywhere printers take: the "RaS2" sync word,
 * then per page a 1796-byte big-endian header and the page's lines compressed with the
 * PWG run-length scheme (line repeat count, then pixel runs / literal runs).
 */
import type { DevicePage } from "./raster.js";

/** PWG colour spaces used here. */
export const PWG_COLOR_SPACE = { black: 3, cmyk: 6, sgray: 18, srgb: 19 } as const;

const HEADER_BYTES = 1796;

/** Bits per colour, bits per pixel, colour space and colours of each page mode. */
const MODES = {
  black: { bpc: 1, bpp: 1, space: PWG_COLOR_SPACE.black, colors: 1 },
  sgray: { bpc: 8, bpp: 8, space: PWG_COLOR_SPACE.sgray, colors: 1 },
  srgb: { bpc: 8, bpp: 24, space: PWG_COLOR_SPACE.srgb, colors: 3 },
  cmyk: { bpc: 8, bpp: 32, space: PWG_COLOR_SPACE.cmyk, colors: 4 },
} as const;

/** What a page header says beyond the raster itself. */
export interface PwgPageOptions {
  /** PWG media name (cupsPageSizeName), e.g. "iso_a4_210x297mm". */
  mediaName?: string;
  /** PrintQuality (3 draft, 4 normal, 5 high); 0 = default. */
  printQuality?: number;
}

function putString(b: Buffer, off: number, s: string): void {
  b.write(s.slice(0, 63), off, "ascii");
}

/** The 1796-byte page header. */
export function pwgHeader(p: DevicePage, pageNumber: number, totalPages: number, o: PwgPageOptions = {}): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  const m = MODES[p.mode];
  const bpc = m.bpc;
  const bpp = m.bpp;
  const pts = (px: number): number => Math.round((px * 72) / p.dpi);
  putString(h, 0, "PwgRaster");
  putString(h, 192, ""); // OutputType
  h.writeUInt32BE(p.dpi, 276); // HWResolution x
  h.writeUInt32BE(p.dpi, 280); // HWResolution y
  h.writeUInt32BE(1, 340); // NumCopies
  h.writeUInt32BE(pts(p.width), 352); // PageSize (points)
  h.writeUInt32BE(pts(p.height), 356);
  h.writeUInt32BE(p.width, 372); // cupsWidth
  h.writeUInt32BE(p.height, 376); // cupsHeight
  h.writeUInt32BE(bpc, 384); // cupsBitsPerColor
  h.writeUInt32BE(bpp, 388); // cupsBitsPerPixel
  h.writeUInt32BE(p.bytesPerLine, 392); // cupsBytesPerLine
  h.writeUInt32BE(0, 396); // cupsColorOrder: chunky
  h.writeUInt32BE(m.space, 400); // cupsColorSpace
  h.writeUInt32BE(m.colors, 420); // cupsNumColors
  h.writeUInt32BE(totalPages, 452); // cupsInteger[0]: TotalPageCount
  h.writeInt32BE(1, 456); // CrossFeedTransform
  h.writeInt32BE(1, 460); // FeedTransform
  h.writeUInt32BE(0xffffff, 480); // AlternatePrimary
  h.writeUInt32BE(o.printQuality ?? 0, 484); // PrintQuality
  putString(h, 1732, o.mediaName ?? ""); // cupsPageSizeName
  void pageNumber;
  return h;
}

/** Compresses one line: runs of equal pixels and literal runs, pixel = max(1, bpp/8) bytes. */
function compressLine(line: Buffer, unit: number, out: number[]): void {
  const n = line.length / unit;
  const same = (a: number, b: number): boolean => {
    for (let k = 0; k < unit; k++) if (line[a * unit + k] !== line[b * unit + k]) return false;
    return true;
  };
  let i = 0;
  while (i < n) {
    let run = 1;
    while (i + run < n && run < 128 && same(i, i + run)) run++;
    if (run > 1) {
      out.push(run - 1);
      for (let k = 0; k < unit; k++) out.push(line[i * unit + k] as number);
      i += run;
      continue;
    }
    let lit = 1;
    while (i + lit < n && lit < 128 && !(i + lit + 1 < n && same(i + lit, i + lit + 1))) lit++;
    out.push(257 - lit);
    for (let k = 0; k < lit * unit; k++) out.push(line[i * unit + k] as number);
    i += lit;
  }
}

/** The compressed image data of one page. */
export function pwgPageData(p: DevicePage): Buffer {
  const unit = Math.max(1, MODES[p.mode].bpp / 8);
  const chunks: Buffer[] = [];
  let y = 0;
  while (y < p.height) {
    const line = p.data.subarray(y * p.bytesPerLine, (y + 1) * p.bytesPerLine);
    let repeat = 1;
    while (y + repeat < p.height && repeat < 256 && line.equals(p.data.subarray((y + repeat) * p.bytesPerLine, (y + repeat + 1) * p.bytesPerLine))) repeat++;
    const out: number[] = [repeat - 1];
    compressLine(line, unit, out);
    chunks.push(Buffer.from(out));
    y += repeat;
  }
  return Buffer.concat(chunks);
}

/** The file's sync word. */
export const PWG_SYNC = Buffer.from("RaS2", "ascii");

/** Decodes a PWG raster file back into pages (tests check what the device wrote). */
export function readPwg(file: Buffer): { header: Buffer; width: number; height: number; bitsPerPixel: number; colorSpace: number; dpi: number; data: Buffer }[] {
  if (!file.subarray(0, 4).equals(PWG_SYNC)) throw new Error("not a PWG raster file (no RaS2 sync word)");
  const pages = [];
  let off = 4;
  while (off < file.length) {
    const header = file.subarray(off, off + HEADER_BYTES);
    off += HEADER_BYTES;
    const width = header.readUInt32BE(372);
    const height = header.readUInt32BE(376);
    const bpp = header.readUInt32BE(388);
    const bpl = header.readUInt32BE(392);
    const unit = Math.max(1, bpp / 8);
    const data = Buffer.alloc(bpl * height);
    let y = 0;
    while (y < height) {
      const repeat = (file[off++] as number) + 1;
      const line = Buffer.alloc(bpl);
      let x = 0;
      while (x < bpl) {
        const c = file[off++] as number;
        if (c < 128) {
          const px = file.subarray(off, off + unit);
          off += unit;
          for (let r = 0; r <= c; r++) px.copy(line, x + r * unit);
          x += (c + 1) * unit;
        } else if (c === 128) {
          line.fill(0, x);
          x = bpl;
        } else {
          const len = (257 - c) * unit;
          file.copy(line, x, off, off + len);
          off += len;
          x += len;
        }
      }
      for (let r = 0; r < repeat && y < height; r++, y++) line.copy(data, y * bpl);
    }
    pages.push({ header, width, height, bitsPerPixel: bpp, colorSpace: header.readUInt32BE(400), dpi: header.readUInt32BE(276), data });
  }
  return pages;
}
