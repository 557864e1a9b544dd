/**
 * Real-world PDFs for the fidelity tests: documents that Debian packages ship, and
 * documents that real tools (Ghostscript's ps2pdf, cairo through rsvg-convert, img2pdf)
 * make at test time from files Debian packages ship. Nothing is downloaded or committed;
 * tools/scripts/install-system-deps.sh installs every package named here. A missing file
 * or tool fails the test with the package to install — it never skips.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";

/** One real document and the pages the tests compare. */
export interface RealPdf {
  /** Short name used in test titles. */
  name: string;
  /** What made it and what it exercises. */
  what: string;
  /** Pages compared (1-based). */
  pages: number[];
  /** Writes the PDF into `dir` (making it with real tools if needed); returns its path. */
  make(dir: string): string;
  /**
   * What the compared pages must contain, so the corpus cannot silently stop covering it
   * (a new package version, another tool): font types as `pdffonts` prints them, image
   * encodings as `pdfimages -list` prints them, and raw tokens of the file (for files
   * without object streams).
   */
  expect: { fonts?: string[]; images?: string[]; tokens?: string[] };
}

const DEPS = "tools/scripts/install-system-deps.sh";

/** Returns `path`, or throws naming the Debian package that ships it. */
export function shipped(path: string, pkg: string): string {
  if (!existsSync(path)) {
    throw new Error(
      `${path} is missing: install the Debian package ${pkg} (${DEPS}); on images whose dpkg excludes /usr/share/doc or /usr/share/man (debian:*-slim) remove that path-exclude and reinstall ${pkg}`,
    );
  }
  return path;
}

/** Runs a tool, throwing an error that names the Debian package when it is not installed. */
function run(tool: string, pkg: string, args: string[], input?: Buffer): Buffer {
  try {
    return execFileSync(tool, args, { input, maxBuffer: 256 * 1024 * 1024, stdio: [input ? "pipe" : "ignore", "pipe", "pipe"] });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new Error(`${tool} is missing: install the Debian package ${pkg} (${DEPS})`);
    throw e;
  }
}

const TANGO = "/usr/share/icons/Tango/scalable";
const TASN1 = "/usr/share/doc/libtasn1-doc/libtasn1.pdf";
const GS9 = "/usr/share/doc/ghostscript/GS9_Color_Management.pdf";
const gs = (args: string[]): Buffer => run("gs", "ghostscript", ["-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", ...args]);

/** The corpus, in test order. Every entry says what it covers (also listed in docs/print.md). */
export const realPdfs: RealPdf[] = [
  {
    name: "libtasn1 manual",
    what: "texinfo → pdfTeX 1.40: embedded subset Type 1 fonts (Computer Modern), code listings, rules",
    pages: [1, 13, 15],
    make: () => shipped(TASN1, "libtasn1-doc"),
    expect: { fonts: ["Type 1"] },
  },
  {
    name: "shared-mime-info spec",
    what: "LaTeX + hyperref → pdfTeX 1.40: embedded Type 1 fonts (Nimbus), tables with thin rules, link annotations",
    pages: [1, 4],
    make: () => shipped("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf", "shared-mime-info"),
    expect: { fonts: ["Type 1"] },
  },
  {
    name: "CUPS test page",
    what: "cairo 1.16: embedded TrueType (DejaVu Sans Bold), ~2100 vector paths: colour wheel, grey ramps, thin lines",
    pages: [1],
    make: () => shipped("/usr/share/cups/data/default-testpage.pdf", "cups-filters"),
    expect: { fonts: ["TrueType"] },
  },
  {
    name: "CUPS form (English)",
    what: "LibreOffice 4.0 Writer: embedded subset TrueType, a non-embedded TrueType (ArialMT), a transparency group with constant alpha",
    pages: [1],
    make: () => shipped("/usr/share/cups/data/form_english.pdf", "cups-filters"),
    expect: { fonts: ["TrueType"], tokens: ["/ca 0."] },
  },
  {
    name: "CUPS form (Russian)",
    what: "LibreOffice 4.0 Writer: Cyrillic in embedded TrueType (DejaVu Sans Mono), transparency group",
    pages: [1],
    make: () => shipped("/usr/share/cups/data/form_russian.pdf", "cups-filters"),
    expect: { fonts: ["TrueType"], tokens: ["/ca 0."] },
  },
  {
    name: "Ghostscript colour management guide",
    what: "MiKTeX pdfTeX: a CMYK JPEG photo (p. 18), a full-page ICC-based JPEG (p. 19), a raw CMYK image under vector graphics (p. 21), Type 1, TrueType and CID TrueType (Calibri, p. 39) fonts",
    pages: [18, 19, 21, 39],
    make: () => shipped(GS9, "ghostscript-doc"),
    expect: { fonts: ["Type 1", "TrueType", "CID TrueType"], images: ["jpeg", "image"] },
  },
  {
    name: "gs(1) through groff and ps2pdf",
    what: "groff 1.22 PostScript → Ghostscript 10 pdfwrite: embedded subset CFF (Type 1C) fonts (URW Times)",
    pages: [1, 2],
    make: (dir) => {
      const man = gunzipSync(readFileSync(shipped("/usr/share/man/man1/gs.1.gz", "ghostscript")));
      writeFileSync(join(dir, "gs.ps"), run("groff", "groff-base", ["-man", "-Tps", "-P-pletter"], man));
      const out = join(dir, "gs-man.pdf");
      gs(["-sDEVICE=pdfwrite", "-sPAPERSIZE=letter", `-sOutputFile=${out}`, join(dir, "gs.ps")]);
      return out;
    },
    expect: { fonts: ["Type 1C"] },
  },
  {
    name: "Tango icons through rsvg-convert",
    what: "librsvg → cairo 1.16 from Inkscape SVGs: axial and radial shading patterns, soft masks, constant alpha, transparency groups",
    pages: [1, 2, 3],
    make: (dir) => {
      const out = join(dir, "tango.pdf");
      const icons = ["apps/internet-web-browser.svg", "devices/printer.svg", "status/weather-storm.svg"].map((f) => shipped(join(TANGO, f), "tango-icon-theme"));
      run("rsvg-convert", "librsvg2-bin", ["-f", "pdf", "--page-width", "612pt", "--page-height", "792pt", "--left", "72pt", "--top", "144pt", "-w", "468pt", "-h", "468pt", "-o", out, ...icons]);
      return out;
    },
    expect: { tokens: ["/ShadingType 2", "/ShadingType 3", "/S /Luminosity", "/S /Transparency"] },
  },
  {
    name: "bilevel scan (CCITT G4)",
    what: "a 300 DPI G4 TIFF (Ghostscript tiffg4 of libtasn1 p. 13) wrapped by img2pdf as a CCITTFaxDecode image, as fax/scanner software does",
    pages: [1],
    make: (dir) => {
      const tif = join(dir, "scan.tif");
      gs(["-sDEVICE=tiffg4", "-r300", "-dFirstPage=13", "-dLastPage=13", `-sOutputFile=${tif}`, shipped(TASN1, "libtasn1-doc")]);
      const out = join(dir, "scan-g4.pdf");
      run("img2pdf", "img2pdf", ["-o", out, tif]);
      return out;
    },
    expect: { images: ["ccitt"] },
  },
  {
    name: "colour scan (JPEG)",
    what: "a 200 DPI colour JPEG (Ghostscript jpeg device, quality 75, of the colour guide's p. 18) wrapped by img2pdf as a DCTDecode image with its ICC profile",
    pages: [1],
    make: (dir) => {
      const jpg = join(dir, "scan.jpg");
      gs(["-sDEVICE=jpeg", "-dJPEGQ=75", "-r200", "-dFirstPage=18", "-dLastPage=18", `-sOutputFile=${jpg}`, shipped(GS9, "ghostscript-doc")]);
      const out = join(dir, "scan-jpeg.pdf");
      run("img2pdf", "img2pdf", ["-o", out, jpg]);
      return out;
    },
    expect: { images: ["jpeg"] },
  },
];

/** What of `expect` the compared pages lack (empty when everything is there). */
export function missingFeatures(doc: RealPdf, file: string): string[] {
  const onPages = (tool: string, args: string[]): string[] =>
    doc.pages.flatMap((p) => run(tool, "poppler-utils", [...args, "-f", String(p), "-l", String(p), file]).toString().split("\n"));
  const missing: string[] = [];
  if (doc.expect.fonts) {
    const lines = onPages("pdffonts", []);
    const header = lines[0] ?? "";
    const [from, to] = [header.indexOf("type"), header.indexOf("encoding")];
    const types = new Set(lines.filter((l) => !l.startsWith("name ") && !l.startsWith("-----")).map((l) => l.slice(from, to).trim()).filter(Boolean));
    for (const t of doc.expect.fonts) if (!types.has(t)) missing.push(`font type ${t} (has ${[...types].join(", ")})`);
  }
  if (doc.expect.images) {
    const lines = onPages("pdfimages", ["-list"]).filter((l) => !l.startsWith("page ") && !l.startsWith("-----"));
    const encs = new Set(lines.map((l) => l.trim().split(/\s+/)[8]));
    for (const e of doc.expect.images) if (!encs.has(e)) missing.push(`image encoding ${e}`);
  }
  if (doc.expect.tokens) {
    const raw = readFileSync(file).toString("latin1");
    for (const t of doc.expect.tokens) if (!raw.includes(t)) missing.push(`token ${t}`);
  }
  return missing;
}
