/**
 * The page comparison the fidelity tests share (thresholds and their reasons are in the
 * headers of fidelity.test.ts and fidelity-real.test.ts).
 */
import sharp from "sharp";

/** An 8-bit grey image. */
export type Grey = { data: Buffer; width: number; height: number };

/** Decodes any image sharp reads into 8-bit grey. */
export async function grey(img: Buffer): Promise<Grey> {
  const { data, info } = await sharp(img).greyscale().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

/** Figures of one page comparison. */
export interface PageDifference {
  /** Mean absolute grey difference (of 255) after a 4× area downscale. */
  global: number;
  /** Lowest ratio ours / reference of the ink in a 0.5 in tile holding ≥ 5 % ink. */
  minTile: number;
  /** Highest such ratio. */
  maxTile: number;
  /** Number of tiles compared. */
  tiles: number;
}

/** Compares one page; returns the figures the assertions use. */
export async function compare(ours: Grey, ref: Grey, dpi: number): Promise<PageDifference> {
  const w = Math.min(ours.width, ref.width);
  const h = Math.min(ours.height, ref.height);
  const small = (g: Grey): Promise<Buffer> =>
    sharp(g.data, { raw: { width: g.width, height: g.height, channels: 1 } }).extract({ left: 0, top: 0, width: w, height: h }).resize(Math.floor(w / 4), Math.floor(h / 4)).raw().toBuffer();
  const [a, b] = await Promise.all([small(ours), small(ref)]);
  let d = 0;
  for (let i = 0; i < a.length; i++) d += Math.abs((a[i] as number) - (b[i] as number));
  const t = Math.round(dpi / 2);
  let minTile = Infinity;
  let maxTile = 0;
  let tiles = 0;
  for (let ty = 0; ty + t <= h; ty += t) {
    for (let tx = 0; tx + t <= w; tx += t) {
      let io = 0;
      let ir = 0;
      for (let y = ty; y < ty + t; y++) {
        for (let x = tx; x < tx + t; x++) {
          io += 255 - (ours.data[y * ours.width + x] as number);
          ir += 255 - (ref.data[y * ref.width + x] as number);
        }
      }
      if (ir / (255 * t * t) < 0.05) continue;
      tiles++;
      minTile = Math.min(minTile, io / ir);
      maxTile = Math.max(maxTile, io / ir);
    }
  }
  return { global: d / a.length, minTile, maxTile, tiles };
}
