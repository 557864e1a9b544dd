/**
 * Rendering fidelity on real-world PDFs (test/print/real-pdfs.ts: TeX, LibreOffice, cairo,
 * Ghostscript, scans) against poppler's pdftoppm (-cropbox, same DPI), selected pages at
 * 150 DPI and the CUPS test page (thin lines) also at 300 DPI. Each page is rendered by the
 * render pool exactly as the worker's Convert renders it (monochrome, JPEG quality 95).
 *
 * Thresholds: the ones of fidelity.test.ts (mean grey difference ≤ 8 of 255 after a 4×
 * downscale; per 0.5 in tile with ≥ 5 % ink, our ink between 0.3 × — nothing missing —
 * and 1.5 × — nothing drawn heavier — the reference's).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { RenderPool } from "../../servers/print/render/pool.js";
import { tempDir, testLogger } from "../helpers/nodes.js";
import { compare, grey } from "./fidelity-compare.js";
import { missingFeatures, realPdfs } from "./real-pdfs.js";

describe("rendering fidelity vs pdftoppm on real-world PDFs", function () {
  this.timeout(180_000);
  let pool: RenderPool;
  before(() => {
    pool = new RenderPool({ size: 1, memoryLimitBytes: 1024 ** 3, pagesPerChild: 100, pageTimeoutMs: 60_000, openTimeoutMs: 30_000, log: testLogger() });
  });
  after(() => pool.stop());

  const cases = realPdfs.flatMap((doc) => [{ doc, dpi: 150, pages: doc.pages }, ...(doc.name === "CUPS test page" ? [{ doc, dpi: 300, pages: doc.pages }] : [])]);
  for (const { doc, dpi, pages } of cases) {
    it(`renders the ${doc.name} (pages ${pages.join(", ")}) at ${dpi} DPI within the thresholds`, async () => {
      const dir = tempDir();
      const file = doc.make(dir);
      assert.deepEqual(missingFeatures(doc, file), [], `${doc.name} no longer has what it stands for (${doc.what})`);
      const data = new Uint8Array(readFileSync(file));
      const key = `real-${doc.name}-${dpi}`;
      try {
        for (const p of pages) {
          const ref = join(dir, `ref-${p}`);
          execFileSync("pdftoppm", ["-cropbox", "-r", String(dpi), "-gray", "-png", "-f", String(p), "-l", String(p), "-singlefile", file, ref]);
          const r = await pool.render(key, data, "", p, { dpi, mono: true, quality: 95, maxPixels: 100_000_000 });
          assert.ok(!("kind" in r), `${doc.name} page ${p} did not render: ${JSON.stringify(r)}`);
          const d = await compare(await grey(r.jpeg), await grey(readFileSync(`${ref}.png`)), dpi);
          const where = `${doc.name} page ${p} at ${dpi} DPI: ${JSON.stringify(d)}`;
          if (process.env.FIDELITY_LOG) console.log(where);
          assert.ok(d.tiles > 3, `too little ink to compare: ${where}`);
          assert.ok(d.global <= 8, `differs from pdftoppm: ${where}`);
          assert.ok(d.minTile >= 0.3, `content missing: ${where}`);
          assert.ok(d.maxTile <= 1.5, `drawn heavier than pdftoppm: ${where}`);
        }
      } finally {
        pool.close(key);
      }
    });
  }
});
