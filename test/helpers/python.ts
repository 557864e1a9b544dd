/**
 * Runs the independent Python client (test/polyglot/switchyard_check.py) with stubs that
 * Debian's protoc generates from proto/ once per test run.
 */
import { execFile } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { packageRoot } from "../../servers/runtime/paths.js";

const run = promisify(execFile);
let stubs: Promise<string> | undefined;

/** Generates the Python stubs (memoized for the whole run). */
export function pythonStubs(): Promise<string> {
  stubs ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), "switchyard-pystubs-"));
    await run("bash", [join(packageRoot(), "test", "polyglot", "gen_stubs.sh"), dir]);
    return dir;
  })();
  return stubs;
}

/** Runs `switchyard_check.py STUBS CHECK ARGS...` with Debian's python3 and parses its JSON. */
export async function runPythonCheck(check: string, args: string[], timeoutMs = 60_000): Promise<unknown> {
  const dir = await pythonStubs();
  const script = join(packageRoot(), "test", "polyglot", "switchyard_check.py");
  try {
    const { stdout } = await run("/usr/bin/python3", [script, dir, check, ...args], { timeout: timeoutMs });
    return JSON.parse(stdout.trim().split("\n").pop() ?? "null");
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`python check ${check} failed: ${e.message}\n${e.stderr ?? ""}`);
  }
}
