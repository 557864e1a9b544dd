/**
 * The CSS Font Loading API, as much of it as pdf.js uses, on top of @napi-rs/canvas's
 * font registry, for render child processes.
 *
 * Under Node pdf.js defaults to `disableFontFace`: every glyph is then sent from its worker
 * as a path and drawn with `ctx.fill(path)` — Skia rasterises each glyph's outline from
 * scratch, thousands of times a page. Given a document whose `fonts` set accepts FontFace
 * objects (the `ownerDocument` option) and a global `FontFace`, pdf.js instead hands over
 * the font program it built for each PDF font and draws text with `fillText`, which Skia
 * serves from its glyph cache. A font Skia cannot load is reported as failed, and pdf.js
 * then falls back to paths for that font (its `FontFallback` message), as in a browser.
 *
 * Registering is for the life of the process: `GlobalFonts.remove` in @napi-rs/canvas
 * 0.1.100 leaks about 17 MB each call (it rebuilds its font collection). So each distinct
 * font program is registered once, under a name made from its hash, and each pdf.js font
 * name is an alias of it (`setAlias` costs nothing); the same font in the next document, or
 * the same document in another render process, costs no new registration. Programs over
 * `maxBytes` in total are refused (pdf.js draws those as paths); the pool recycles render
 * processes, which bounds this like any other memory they keep.
 *
 * Only render children install this: it sets a global and registers fonts process-wide.
 */
import { createHash } from "node:crypto";
import { createCanvas, GlobalFonts } from "@napi-rs/canvas";

/** A FontFace made from a font program in memory (the only kind pdf.js creates here; exported for tests). */
export class BufferFontFace {
  readonly family: string;
  readonly data: Uint8Array | undefined;
  status: "unloaded" | "loaded" | "error" = "unloaded";
  loaded: Promise<BufferFontFace>;

  constructor(family: string, source: unknown, _descriptors?: unknown) {
    this.family = family;
    this.data = source instanceof Uint8Array ? source : undefined;
    this.loaded = Promise.resolve(this);
  }

  load(): Promise<BufferFontFace> {
    return this.loaded;
  }
}

/** The `document.fonts` set pdf.js adds faces to and deletes them from. */
export class FontSet {
  private readonly faces = new Set<BufferFontFace>();
  /** Registered family of each font program, by SHA-256 of the program. */
  private readonly programs = new Map<string, string>();
  /** Family names (pdf.js font names) that resolve to a registered program. */
  private readonly families = new Set<string>();
  /** Bytes of font programs registered. */
  registeredBytes = 0;

  constructor(private readonly maxBytes: number) {}

  /** Makes the face's family resolve to its program; a face Skia refuses rejects `loaded`. */
  add(face: BufferFontFace): this {
    if (this.register(face)) {
      face.status = "loaded";
      this.faces.add(face);
      this.families.add(face.family);
    } else {
      face.status = "error";
      face.loaded = Promise.reject(new Error(`font ${face.family} could not be loaded`));
      // pdf.js awaits it; keep an unobserved rejection from being reported meanwhile.
      face.loaded.catch(() => undefined);
    }
    return this;
  }

  private register(face: BufferFontFace): boolean {
    if (!face.data?.length) return false;
    const hash = createHash("sha256").update(face.data).digest("base64url").slice(0, 24);
    let family = this.programs.get(hash);
    if (!family) {
      if (this.registeredBytes + face.data.length > this.maxBytes) return false;
      family = `sy_${hash}`;
      if (!GlobalFonts.register(Buffer.from(face.data), family)) return false;
      this.programs.set(hash, family);
      this.registeredBytes += face.data.length;
    }
    return GlobalFonts.setAlias(family, face.family);
  }

  /** Forgets a face (pdf.js does this when a document is destroyed); the program stays registered. */
  delete(face: BufferFontFace): boolean {
    this.families.delete(face.family);
    return this.faces.delete(face);
  }

  has(face: BufferFontFace): boolean {
    return this.faces.has(face);
  }

  /** Whether a CSS family name is one of the font programs registered here. */
  isRegistered(family: string): boolean {
    return this.families.has(family);
  }

  /** Faces of open documents. */
  get size(): number {
    return this.faces.size;
  }

  /** Distinct font programs registered. */
  get programCount(): number {
    return this.programs.size;
  }
}

const FONT = /^(?:normal|italic) (?:normal|bold|900) (\d[\d.]*px "([^"]+)".*)$/;

/**
 * Keeps Skia from styling a font program a second time. pdf.js writes `ctx.font` as
 * `<italic|normal> <bold|900|normal> <size>px "<font name>", <fallback>` from the PDF's font
 * name and flags, as a browser would need it; but a program registered here has exactly the
 * outlines the PDF embeds (already bold or italic, or not), and a PDF renderer draws those
 * as they are — asked for bold from a regular face, Skia would embolden it. Families not
 * registered here (no program: pdf.js falls back to a system family) keep their style, so
 * the system's bold or italic face is chosen. Patched on the context prototype, so the
 * scratch canvases pdf.js makes for groups and masks behave alike.
 */
function drawProgramsAsTheyAre(fonts: FontSet): void {
  let proto = Object.getPrototypeOf(createCanvas(1, 1).getContext("2d")) as object | null;
  let desc: PropertyDescriptor | undefined;
  while (proto && !(desc = Object.getOwnPropertyDescriptor(proto, "font"))) proto = Object.getPrototypeOf(proto) as object | null;
  const { get, set } = desc ?? {};
  if (!proto || !get || !set) return;
  Object.defineProperty(proto, "font", {
    configurable: true,
    enumerable: desc?.enumerable ?? false,
    get,
    set(value: string): void {
      const m = typeof value === "string" ? FONT.exec(value) : null;
      set.call(this, m && fonts.isRegistered(m[2] as string) ? `normal normal ${m[1] as string}` : value);
    },
  });
}

/** The `fonts` set of the document handed to pdf.js as `ownerDocument`. */
export let fontSet: FontSet | undefined;

/** Installs the global FontFace; returns the `ownerDocument` option for getDocument. */
export function installFontFace(maxBytes = 64 * 1024 * 1024): { fonts: FontSet } {
  (globalThis as { FontFace?: unknown }).FontFace ??= BufferFontFace;
  if (!fontSet) {
    fontSet = new FontSet(maxBytes);
    drawProgramsAsTheyAre(fontSet);
  }
  return { fonts: fontSet };
}
