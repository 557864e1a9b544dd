/**
 * Static checks of a WebAssembly binary before it may run: the module must import its
 * memory from the host (so the host sets the maximum) and define none of its own, and it
 * must use only the host functions of the pass-on ABI and export `alloc` and `handle`.
 */

/** What the load check learned about a module. */
export interface ModuleShape {
  /** Minimum pages of the imported memory. */
  memoryMinPages: number;
  /** Declared maximum of the imported memory, if any. */
  memoryMaxPages: number | undefined;
  /** True when the module exports `selftest`. */
  hasSelftest: boolean;
}

/** The host functions the ABI offers (module "env"). */
export const HOST_FUNCTIONS = ["output", "data_get", "data_put"] as const;

class Reader {
  pos = 0;
  constructor(readonly b: Uint8Array) {}
  byte(): number {
    if (this.pos >= this.b.length) throw new Error("unexpected end of module");
    return this.b[this.pos++] as number;
  }
  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const x = this.byte();
      result |= (x & 0x7f) << shift;
      if ((x & 0x80) === 0) return result >>> 0;
      shift += 7;
      if (shift > 35) throw new Error("bad LEB128");
    }
  }
  name(): string {
    const n = this.u32();
    if (this.pos + n > this.b.length) throw new Error("unexpected end of module");
    const s = Buffer.from(this.b.subarray(this.pos, this.pos + n)).toString("utf8");
    this.pos += n;
    return s;
  }
  limits(): { min: number; max: number | undefined } {
    const flags = this.byte();
    const min = this.u32();
    const max = flags & 1 ? this.u32() : undefined;
    return { min, max };
  }
}

/** Thrown when a module does not follow the ABI; the message says why. */
export class ModuleShapeError extends Error {
  override name = "ModuleShapeError";
}

/** Parses the import/memory/export sections and checks the ABI rules. */
export function inspectModule(bytes: Uint8Array, maxPages: number): ModuleShape {
  const r = new Reader(bytes);
  const magic = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  for (const m of magic) if (r.byte() !== m) throw new ModuleShapeError("not a WebAssembly 1.0 binary");
  let memory: { min: number; max: number | undefined } | undefined;
  const exports = new Set<string>();
  while (r.pos < bytes.length) {
    const id = r.byte();
    const size = r.u32();
    const end = r.pos + size;
    if (end > bytes.length) throw new ModuleShapeError("section runs past the end of the module");
    if (id === 2) {
      const count = r.u32();
      for (let i = 0; i < count; i++) {
        const mod = r.name();
        const field = r.name();
        const kind = r.byte();
        if (mod !== "env") throw new ModuleShapeError(`imports from module "${mod}"; only "env" is offered`);
        if (kind === 0) {
          r.u32();
          if (!(HOST_FUNCTIONS as readonly string[]).includes(field)) throw new ModuleShapeError(`imports unknown host function env.${field}`);
        } else if (kind === 2) {
          if (field !== "memory") throw new ModuleShapeError(`imports a memory named ${field}; it must be env.memory`);
          memory = r.limits();
        } else {
          throw new ModuleShapeError(`imports env.${field} of a kind the host does not offer`);
        }
      }
    } else if (id === 5) {
      throw new ModuleShapeError("defines its own memory; it must import env.memory so the host can limit it");
    } else if (id === 7) {
      const count = r.u32();
      for (let i = 0; i < count; i++) {
        exports.add(r.name());
        r.byte();
        r.u32();
      }
    }
    r.pos = end;
  }
  if (!memory) throw new ModuleShapeError("does not import env.memory");
  if (memory.min > maxPages) throw new ModuleShapeError(`needs ${memory.min} memory pages at start; the limit is ${maxPages}`);
  for (const e of ["alloc", "handle"]) if (!exports.has(e)) throw new ModuleShapeError(`does not export ${e}`);
  return { memoryMinPages: memory.min, memoryMaxPages: memory.max, hasSelftest: exports.has("selftest") };
}
