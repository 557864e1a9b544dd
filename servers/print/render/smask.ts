/**
 * Soft masks with a luminosity subtype (and alpha soft masks with a transfer function) for
 * pdf.js under Node.
 *
 * pdf.js composes a soft mask by drawing the mask group's canvas onto the layer with
 * `destination-in`, after setting `ctx.filter` to an SVG filter that turns luminosity into
 * alpha (or applies the mask's /TR). Under Node its filter factory returns "none" (there
 * is no DOM for the SVG filter), so a luminosity mask — painted over its opaque backdrop —
 * masks nothing: cairo's radial-gradient shadows, Inkscape fades and every other
 * luminosity mask came out as solid shapes (a black ellipse instead of a soft shadow).
 *
 * `SoftMaskFilterFactory` (pdf.js's `FilterFactory` option) remembers which conversion the
 * next mask needs; the patched `drawImage` performs it on the mask's pixels (luminosity
 * with the PDF's grey weights 0.30/0.59/0.11, as poppler, over the black backdrop a
 * transparent mask pixel stands for; then the transfer map) and draws the resulting alpha
 * mask instead. Only the draw that immediately follows the factory call is affected.
 */
import { createCanvas, type Canvas, type SKRSContext2D } from "@napi-rs/canvas";

type Pending = { luminosity: boolean; map: Uint8Array | null };
let pending: Pending | undefined;

/** pdf.js's FilterFactory interface (its BaseFilterFactory), with soft-mask conversions. */
export class SoftMaskFilterFactory {
  addFilter(): string {
    return "none";
  }
  addHCMFilter(): string {
    return "none";
  }
  addAlphaFilter(map: Uint8Array | null): string {
    pending = { luminosity: false, map };
    return "none";
  }
  addLuminosityFilter(map: Uint8Array | null): string {
    pending = { luminosity: true, map };
    return "none";
  }
  addHighlightHCMFilter(): string {
    return "none";
  }
  destroy(): void {
    pending = undefined;
  }
}

/** Turns the RGBA (unpremultiplied) mask pixels into an alpha-only mask, in place. */
export function maskToAlpha(px: Uint8ClampedArray | Uint8Array, p: Pending): void {
  for (let i = 0; i < px.length; i += 4) {
    const a = px[i + 3] as number;
    let v = p.luminosity ? Math.round((((px[i] as number) * 0.3 + (px[i + 1] as number) * 0.59 + (px[i + 2] as number) * 0.11) * a) / 255) : a;
    if (p.map) v = p.map[v] as number;
    px[i] = px[i + 1] = px[i + 2] = 0;
    px[i + 3] = v;
  }
}

let installed = false;

/** Patches @napi-rs/canvas's drawImage once per process (see the module comment). */
export function installSoftMasks(): void {
  if (installed) return;
  installed = true;
  const proto = Object.getPrototypeOf(createCanvas(1, 1).getContext("2d")) as SKRSContext2D;
  const draw = proto.drawImage as (...args: unknown[]) => void;
  proto.drawImage = function (this: SKRSContext2D, ...args: unknown[]): void {
    const p = pending;
    pending = undefined;
    if (!p || args.length !== 9 || this.globalCompositeOperation !== "destination-in") return draw.apply(this, args);
    const [image, sx, sy, sw, sh, dx, dy, dw, dh] = args as [Canvas, number, number, number, number, number, number, number, number];
    const w = Math.max(1, Math.ceil(sw));
    const h = Math.max(1, Math.ceil(sh));
    const tmp = createCanvas(w, h);
    const t = tmp.getContext("2d");
    draw.call(t, image, sx, sy, sw, sh, 0, 0, sw, sh);
    const img = t.getImageData(0, 0, w, h);
    maskToAlpha(img.data, p);
    t.putImageData(img, 0, 0);
    draw.call(this, tmp, 0, 0, sw, sh, dx, dy, dw, dh);
  } as SKRSContext2D["drawImage"];
}
