import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { createCanvas } from "@napi-rs/canvas";
import { BufferFontFace, FontSet } from "../../servers/print/render/font-face.js";
import { PageSurface } from "../../servers/print/render/surface.js";

const fonts = join(dirname(createRequire(import.meta.url).resolve("pdfjs-dist/package.json")), "standard_fonts");
const program = (file: string): Uint8Array => new Uint8Array(readFileSync(join(fonts, file)));

/** Ink (sum of 255 − red) of a string drawn in `font`. */
function ink(font: string): number {
  const c = createCanvas(400, 60);
  const ctx = c.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, 400, 60);
  ctx.fillStyle = "#000";
  ctx.font = font;
  ctx.fillText("Hxgy iiii Wm", 5, 45);
  const d = c.data();
  let s = 0;
  for (let i = 0; i < d.length; i += 4) s += 255 - (d[i] as number);
  return s;
}

describe("render process internals", () => {
  describe("PageSurface", () => {
    it("reads each page's pixels through one view of the surface", () => {
      const s = new PageSurface(300, 200);
      assert.equal(s.reuse, true, "this @napi-rs/canvas no longer plays back on a failed encode: every page pays a new external Buffer");
      const colours: [number, number, number][] = [
        [200, 10, 20],
        [30, 40, 250],
        [0, 128, 0],
      ];
      for (const [r, g, b] of colours) {
        const ctx = s.begin();
        ctx.fillStyle = "#fff";
        ctx.fillRect(0, 0, 300, 200);
        ctx.fillStyle = `rgb(${r}, ${g}, ${b})`;
        ctx.fillRect(100, 50, 10, 10);
        const px = s.pixels();
        const at = (x: number, y: number): number[] => [...px.subarray((y * 300 + x) * 4, (y * 300 + x) * 4 + 3)];
        assert.deepEqual(at(105, 55), [r, g, b]);
        assert.deepEqual(at(5, 5), [255, 255, 255]);
      }
    });
  });

  describe("FontSet", () => {
    it("registers a font program once however many fonts use it", async () => {
      const set = new FontSet(64 * 1024 * 1024);
      const a = new BufferFontFace("t_d0_f1", program("LiberationSans-Regular.ttf"));
      const b = new BufferFontFace("t_d1_f1", program("LiberationSans-Regular.ttf"));
      set.add(a).add(b);
      await Promise.all([a.loaded, b.loaded]);
      assert.equal(set.programCount, 1);
      assert.ok(set.isRegistered("t_d0_f1") && set.isRegistered("t_d1_f1"));
      // Both names draw the program, not the fallback.
      assert.equal(ink('16px "t_d1_f1", serif'), ink('16px "t_d0_f1", serif'));
      assert.notEqual(ink('16px "t_d0_f1", serif'), ink("16px serif"));
      set.delete(a);
      assert.equal(set.isRegistered("t_d0_f1"), false);
    });

    it("refuses programs over its byte budget and data Skia cannot load, so pdf.js draws paths", async () => {
      const set = new FontSet(10);
      const big = new BufferFontFace("t_big", program("LiberationSans-Bold.ttf"));
      const junk = new BufferFontFace("t_junk", new Uint8Array(1000).fill(7));
      set.add(big);
      new FontSet(1e9).add(junk);
      await assert.rejects(big.loaded);
      await assert.rejects(junk.loaded);
      assert.equal(big.status, "error");
      assert.equal(set.programCount, 0);
    });
  });
});
