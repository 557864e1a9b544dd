/**
 * What a printer does with a page (the seed's Fig. 9, S1407–S1409): decode the JPEG,
 * convert RGB to CMYK (grey for a monochrome device), and binarize each colorant with an
 * ordered (Bayer 8×8) halftone, the screen a simple printer engine uses.
 */
import sharp from "sharp";

/** A binarized page ready for the engine. */
export interface DevicePage {
  width: number;
  height: number;
  dpi: number;
  /**
   * "cmyk": 4 bytes per pixel, 0 or 255 per colorant (255 = ink). "black": 1 bit per
   * pixel, 1 = ink, rows padded to bytes. "sgray": 1 byte per pixel, 0 = black.
   * "srgb": 3 bytes per pixel.
   */
  mode: "cmyk" | "black" | "sgray" | "srgb";
  data: Buffer;
  /** Bytes per row of `data`. */
  bytesPerLine: number;
}

const BAYER8 = [
  0, 32, 8, 40, 2, 34, 10, 42, 48, 16, 56, 24, 50, 18, 58, 26, 12, 44, 4, 36, 14, 46, 6, 38, 60, 28, 52, 20, 62, 30, 54, 22, 3, 35, 11, 43, 1, 33, 9, 41, 51,
  19, 59, 27, 49, 17, 57, 25, 15, 47, 7, 39, 13, 45, 5, 37, 63, 31, 55, 23, 61, 29, 53, 21,
];
/** Thresholds 0..255 of the 8×8 screen. */
const THRESH = BAYER8.map((v) => Math.round(((v + 0.5) * 255) / 64));

/** Converts one RGB pixel to CMYK ink amounts 0..255 (simple grey-component replacement). */
export function rgbToCmyk(r: number, g: number, b: number): [number, number, number, number] {
  const k = 255 - Math.max(r, g, b);
  if (k === 255) return [0, 0, 0, 255];
  const d = 255 - k;
  return [Math.round(((d - r) * 255) / d), Math.round(((d - g) * 255) / d), Math.round(((d - b) * 255) / d), k];
}

/** Halftones 8-bit grey (`ch` bytes per pixel, the first one read) to 1-bit black. */
export function halftoneGrey(data: Buffer, width: number, height: number, ch: number, dpi: number): DevicePage {
  const bpl = Math.ceil(width / 8);
  const out = Buffer.alloc(bpl * height);
  for (let y = 0; y < height; y++) {
    const row = y * width * ch;
    const trow = (y & 7) * 8;
    for (let x = 0; x < width; x++) {
      const ink = 255 - (data[row + x * ch] as number);
      if (ink > (THRESH[trow + (x & 7)] as number)) out[y * bpl + (x >> 3)] = (out[y * bpl + (x >> 3)] as number) | (0x80 >> (x & 7));
    }
  }
  return { width, height, dpi, mode: "black", data: out, bytesPerLine: bpl };
}

/** Decodes, separates and halftones one page. */
export async function toDevicePage(jpeg: Buffer, dpi: number, color: boolean): Promise<DevicePage> {
  if (!color) {
    const { data, info } = await sharp(jpeg).toColourspace("b-w").raw().toBuffer({ resolveWithObject: true });
    return halftoneGrey(data, info.width, info.height, info.channels, dpi);
  }
  const { data, info } = await sharp(jpeg).removeAlpha().toColourspace("srgb").raw().toBuffer({ resolveWithObject: true });
  const { width, height, channels } = info;
  const out = Buffer.alloc(width * height * 4);
  for (let y = 0; y < height; y++) {
    const trow = (y & 7) * 8;
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * channels;
      const t = THRESH[trow + (x & 7)] as number;
      const [c, m, yy, k] = rgbToCmyk(data[i] as number, data[i + 1] as number, data[i + 2] as number);
      const o = (y * width + x) * 4;
      out[o] = c > t ? 255 : 0;
      out[o + 1] = m > t ? 255 : 0;
      out[o + 2] = yy > t ? 255 : 0;
      out[o + 3] = k > t ? 255 : 0;
    }
  }
  return { width, height, dpi, mode: "cmyk", data: out, bytesPerLine: width * 4 };
}
