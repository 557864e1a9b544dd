/**
 * Rendering fidelity against poppler's pdftoppm (-cropbox, same DPI) on varied PDFs.
 *
 * Thresholds, and why:
 * - Global: after a 4× area downscale (which averages away anti-aliasing and the
 *   sub-pixel glyph placement in which any two renderers differ), the mean absolute grey
 *   difference stays ≤ 8 of 255. Measured here: 0.3–5.9 on these pages (text is drawn with
 *   fillText from the font programs pdf.js builds, through Skia's glyph cache; its
 *   anti-aliasing comes out a little lighter than poppler's, most in small text at 150 DPI:
 *   tiles of body text at 0.75–0.86 × the reference's ink; glyph paths were 0.88–0.92 ×
 *   with global 1.4–6.0). A missing line of text or image moves it far more.
 * - Local, per tile of 0.5 × 0.5 in where the reference has ≥ 5 % ink: our ink is at
 *   least 0.3 × the reference (a missing glyph run, image or drawing leaves ≈ 0) and at
 *   most 1.5 × (nothing drawn grossly heavier). Smaller tiles mostly measure where two
 *   renderers put the edge of a glyph, not whether it is there.
 * - Hairlines, in a band of the vector page holding only 0.1 pt and 0.25 pt strokes: our
 *   ink is between 0.3 × (still printed) and 1.3 × the reference (not thickened). pdf.js
 *   widens sub-pixel strokes to one device pixel; on these axis-aligned hairlines poppler
 *   does the same (measured 1.00 × at 150 DPI, 0.87 × at 300 DPI).
 * - CJK: the same thresholds. Without a CJK fallback font for pdf.js, non-embedded CJK
 *   text comes out as .notdef boxes (min tile 0.13 here) and fails the local check.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { convertPdf } from "../../servers/print/convert.js";
import { RenderPool } from "../../servers/print/render/pool.js";
import { ColorMode } from "../../gen/switchyard/print/v1/print_job.js";
import { cjkPdf, embeddedCjkPdf, encryptedPdf, fontStylesPdf, imagePdf, mixedPdf, textPdf, vectorPdf } from "../../tools/fixtures/pdfs.js";
import { tempDir, testLogger } from "../helpers/nodes.js";
import { compare, grey, type Grey } from "./fidelity-compare.js";

describe("rendering fidelity vs pdftoppm", function () {
  this.timeout(180_000);
  let pool: RenderPool;
  before(() => {
    pool = new RenderPool({ size: 1, memoryLimitBytes: 1024 ** 3, pagesPerChild: 100, pageTimeoutMs: 60_000, openTimeoutMs: 30_000, log: testLogger() });
  });
  after(() => pool.stop());

  for (const dpi of [150, 300]) {
    it(`does not draw hairlines heavier than pdftoppm at ${dpi} DPI`, async () => {
      const dir = tempDir();
      const pdf = await vectorPdf();
      writeFileSync(join(dir, "v.pdf"), pdf);
      execFileSync("pdftoppm", ["-cropbox", "-r", String(dpi), "-gray", "-png", join(dir, "v.pdf"), join(dir, "ref")]);
      const ref = await grey(readFileSync(join(dir, readdirSync(dir).find((f) => f.endsWith(".png")) as string)));
      let ours: Grey | undefined;
      await convertPdf(pool, `hair-${dpi}`, pdf, { dpi, colorMode: ColorMode.MONOCHROME, jpegQuality: 95, password: "" }, { maxPages: 1, maxPagePixels: 1e8, pageTimeoutMs: 60_000 }, {
        onStart: async () => undefined,
        onPage: async (_, p) => void (ours = await grey(p.jpeg)),
      }, 1);
      const px = (pt: number): number => Math.round((pt * dpi) / 72);
      const ink = (g: Grey): number => {
        let n = 0;
        for (let y = px(792 - 117); y < px(792 - 102); y++) for (let x = px(35); x < px(560); x++) n += 255 - (g.data[y * g.width + x] as number);
        return n;
      };
      const ratio = ink(ours as Grey) / ink(ref);
      assert.ok(ratio <= 1.3, `hairlines ${ratio.toFixed(2)} × as heavy as pdftoppm's`);
      assert.ok(ratio >= 0.3, `hairlines only ${ratio.toFixed(2)} × pdftoppm's ink: they would not print`);
    });
  }

  const corpus: [string, () => Promise<Uint8Array>, string][] = [
    ["text", () => textPdf(2), ""],
    ["vector hairlines", vectorPdf, ""],
    ["images and a scan", imagePdf, ""],
    ["mixed", () => mixedPdf(3), ""],
    ["encrypted", async () => encryptedPdf("pw", "owner"), "pw"],
    ["CJK with non-embedded CIDFonts and predefined CMaps", async () => cjkPdf(), ""],
    ["CJK in an embedded subset TrueType font", embeddedCjkPdf, ""],
    // Text is drawn with fillText from the font programs pdf.js builds (not glyph paths):
    // italic, bold and embedded programs must come out as their outlines are, never styled
    // a second time.
    ["font styles", fontStylesPdf, ""],
  ];
  for (const dpi of [150, 300]) {
    for (const [name, make, password] of corpus) {
      it(`renders ${name} at ${dpi} DPI within the thresholds on every page`, async () => {
        const dir = tempDir();
        const pdf = await make();
        const file = join(dir, "doc.pdf");
        writeFileSync(file, pdf);
        execFileSync("pdftoppm", ["-cropbox", "-r", String(dpi), "-gray", "-png", ...(password ? ["-upw", password] : []), file, join(dir, "ref")]);
        const refs = readdirSync(dir).filter((f) => f.startsWith("ref") && f.endsWith(".png")).sort();
        const pages: Buffer[] = [];
        await convertPdf(
          pool,
          `fid-${name}-${dpi}`,
          pdf,
          { dpi, colorMode: ColorMode.MONOCHROME, jpegQuality: 95, password },
          { maxPages: 100, maxPagePixels: 100_000_000, pageTimeoutMs: 60_000 },
          { onStart: async () => undefined, onPage: async (_, p) => void pages.push(p.jpeg) },
          1,
        );
        assert.equal(pages.length, refs.length);
        for (let i = 0; i < pages.length; i++) {
          const r = await compare(await grey(pages[i] as Buffer), await grey(readFileSync(join(dir, refs[i] as string))), dpi);
          const where = `${name} page ${i + 1} at ${dpi} DPI: ${JSON.stringify(r)}`;
          assert.ok(r.tiles > 3, `too little ink to compare: ${where}`);
          assert.ok(r.global <= 8, `differs from pdftoppm: ${where}`);
          assert.ok(r.minTile >= 0.3, `content missing: ${where}`);
          assert.ok(r.maxTile <= 1.5, `drawn heavier than pdftoppm: ${where}`);
        }
      });
    }
  }
});
