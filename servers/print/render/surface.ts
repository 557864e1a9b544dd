/**
 * The page canvas of a render child, reused from page to page, and a cheap way to read its
 * pixels.
 *
 * @napi-rs/canvas (0.1.89+) records drawing and plays it back onto its pixel surface when
 * the pixels are read. Two costs follow for a renderer that reads a whole page each time:
 * - After each read it keeps a snapshot of the surface; the first draw of the next page then
 *   copies the whole surface (copy on write, ~15 ms at 300 DPI). `ctx.reset()` before a page
 *   drops the recording and the snapshot first, so the surface is drawn in place.
 * - `canvas.data()` hands out the surface's pixels as a new external Buffer on every call:
 *   V8 counts each as fresh external memory (33 MB at 300 DPI), which forces a full garbage
 *   collection about once a page. The surface keeps its pixel memory for the canvas's
 *   lifetime (it only moves on copy on write, which the reset above rules out), so the
 *   Buffer from the first `data()` stays a view of the live pixels; later pages only need
 *   the recorded drawing played back, which every encode call does first. `encodeSync` with
 *   no valid format plays it back and then fails before encoding anything.
 * A self-test on each new canvas checks both assumptions (playback happens, the first
 * Buffer sees it); if either fails — another @napi-rs/canvas version — every read falls
 * back to `data()`.
 */
import { createCanvas, ImageData, type Canvas, type SKRSContext2D } from "@napi-rs/canvas";

/** A page canvas of one size and the view of its pixels. */
export class PageSurface {
  readonly canvas: Canvas;
  readonly ctx: SKRSContext2D;
  private readonly view: Buffer;
  /** Whether flush-and-reuse works (decided by the self-test). */
  readonly reuse: boolean;

  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.canvas = createCanvas(width, height);
    // Opaque: pdf.js fills the page white itself; no alpha to blend.
    this.ctx = this.canvas.getContext("2d", { alpha: false });
    this.view = this.canvas.data();
    this.reuse = this.selfTest();
  }

  /** Plays the recorded drawing back onto the pixels without a new Buffer. */
  private flush(): void {
    try {
      this.canvas.encodeSync("flush" as never);
    } catch {
      // Expected: not a format. The playback happened before the format was checked.
    }
  }

  private selfTest(): boolean {
    const probe = (r: number, putPixels: boolean): boolean => {
      this.begin();
      this.ctx.fillStyle = `rgb(${r}, 7, 9)`;
      this.ctx.fillRect(0, 0, 1, 1);
      // putImageData adds a second recorded layer, so this playback also takes the
      // snapshot the next page must not copy.
      if (putPixels) this.ctx.putImageData(new ImageData(new Uint8ClampedArray([r, 3, 5, 255]), 1, 1), 1, 0);
      this.flush();
      const first = this.view[0] === r && this.view[1] === 7 && this.view[2] === 9;
      return first && (!putPixels || (this.view[4] === r && this.view[5] === 3 && this.view[6] === 5));
    };
    const ok = probe(200, false) && probe(100, true) && probe(50, false);
    this.begin();
    return ok;
  }

  /** Starts a page: drops the previous recording and state, clears the pixels. */
  begin(): SKRSContext2D {
    this.ctx.reset();
    return this.ctx;
  }

  /** The page's RGBA pixels (valid until the next `begin`). */
  pixels(): Buffer {
    if (!this.reuse) return this.canvas.data();
    this.flush();
    return this.view;
  }
}
