/**
 * Compiles the demo pass-on applications (servers/passon/apps/*.wat) to WebAssembly with
 * the `wabt` package, into dist/apps/passon/<name>.wasm. Run by `npm run build`.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import wabtInit from "wabt";
import { packageRoot } from "../../servers/runtime/paths.js";

/** Where the sources live and where the modules go. */
export function demoAppDirs(root = packageRoot()): { src: string; out: string } {
  return { src: join(root, "servers", "passon", "apps"), out: join(root, "dist", "apps", "passon") };
}

/** Compiles every demo app; returns the names built. */
export async function buildDemoApps(root = packageRoot()): Promise<string[]> {
  const { src, out } = demoAppDirs(root);
  const wabt = await wabtInit();
  const alloc = readFileSync(join(src, "alloc.wat.inc"), "utf8");
  mkdirSync(out, { recursive: true });
  const built: string[] = [];
  for (const file of readdirSync(src).filter((f) => f.endsWith(".wat")).sort()) {
    const name = file.slice(0, -4);
    const text = readFileSync(join(src, file), "utf8").replace(";;@alloc", alloc);
    const mod = wabt.parseWat(file, text, {});
    try {
      mod.validate();
      const { buffer } = mod.toBinary({});
      writeFileSync(join(out, `${name}.wasm`), buffer);
      built.push(name);
    } finally {
      mod.destroy();
    }
  }
  return built;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const names = await buildDemoApps();
  process.stdout.write(`built ${names.length} demo apps: ${names.join(", ")}\n`);
}
