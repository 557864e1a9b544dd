/**
 * Test helpers: start real nodes on 127.0.0.1:0, in-process or as child processes running
 * the compiled build, and clean them up after each test.
 */
import { fork, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { stringify as toYaml } from "yaml";
import type { z } from "zod";
import { loadNodeConfig } from "../../servers/runtime/config.js";
import { startNode, type RunningNode } from "../../servers/runtime/node.js";
import type { RoleDefinition } from "../../servers/runtime/role.js";
import { nodeEntryPoint } from "../../tools/cluster/launcher.js";
import type { ReadyMessage } from "../../servers/main.js";

const cleanups: (() => Promise<void> | void)[] = [];

/** Registers something to undo after the current test (run by the root afterEach hook). */
export function onCleanup(fn: () => Promise<void> | void): void {
  cleanups.push(fn);
}

/** Runs and clears every registered cleanup, newest first. */
export async function runCleanups(): Promise<void> {
  while (cleanups.length) {
    const fn = cleanups.pop();
    try {
      await fn?.();
    } catch (err) {
      process.stderr.write(`cleanup failed: ${String(err)}\n`);
    }
  }
}

/** A fresh temporary directory, removed after the test. */
export function tempDir(prefix = "switchyard-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A logger that drops everything below `error` unless SWITCHYARD_TEST_LOG is set. */
export function testLogger(): pino.Logger {
  return pino({ level: process.env["SWITCHYARD_TEST_LOG"] ?? "silent" });
}

/** Options of an in-process test node. */
export interface TestNodeOptions {
  id?: string;
  /** Extra config sections merged over the test defaults. */
  config?: Record<string, unknown>;
  /** Role section (keyed by the role's camelCase name). */
  roleConfig?: unknown;
  dataDir?: string;
}

/** Starts a node of `role` in this process on 127.0.0.1:0; stopped after the test. */
export async function startTestNode<C>(role: RoleDefinition<C>, opts: TestNodeOptions = {}): Promise<RunningNode> {
  const id = opts.id ?? `${role.role}-${Math.random().toString(36).slice(2, 8)}`;
  const schemas = new Map<string, z.ZodType>([[role.role, role.configSchema as z.ZodType]]);
  const sectionKey = role.role.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
  const { node: nodeOverrides, ...sections } = opts.config ?? {};
  const raw: Record<string, unknown> = {
    metrics: { listen: "" },
    shutdown: { graceMs: 2000 },
    ...sections,
    node: {
      id,
      role: role.role,
      listen: "127.0.0.1:0",
      dataDir: opts.dataDir ?? join(tempDir(), id),
      ...(nodeOverrides as Record<string, unknown> | undefined),
    },
    ...(opts.roleConfig !== undefined ? { [sectionKey]: opts.roleConfig } : {}),
  };
  const config = loadNodeConfig({ raw }, schemas);
  const node = await startNode(config as never, role as RoleDefinition<never>, { log: testLogger() });
  onCleanup(() => node.stop("test over"));
  return node;
}

/** A node running as a child process of the compiled build. */
export interface SpawnedNode {
  readonly child: ChildProcess;
  readonly address: string;
  readonly ready: ReadyMessage;
  readonly configFile: string;
  /** Resolves with the exit code/signal once the process is gone. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `switchyard node --config` as a child process with this config (port 0 unless
 * given), waits for it to serve, and kills it after the test.
 */
export async function spawnNode(config: Record<string, unknown>, dir = tempDir()): Promise<SpawnedNode> {
  mkdirSync(dir, { recursive: true });
  const node = config["node"] as Record<string, unknown>;
  const full = { metrics: { listen: "" }, ...config, node: { listen: "127.0.0.1:0", dataDir: join(dir, String(node["id"])), ...node } };
  const configFile = join(dir, `${String(node["id"])}.yaml`);
  writeFileSync(configFile, toYaml(full));
  const child = fork(nodeEntryPoint(), ["--config", configFile], { stdio: ["ignore", "pipe", "pipe", "ipc"], execArgv: [] });
  let output = "";
  child.stdout?.on("data", (b: Buffer) => (output += b.toString()));
  child.stderr?.on("data", (b: Buffer) => (output += b.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once("exit", (code, signal) => r({ code, signal })),
  );
  onCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
  });
  const ready = await new Promise<ReadyMessage>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node did not start in 20 s:\n${output}`)), 20_000);
    child.on("message", (m: ReadyMessage) => {
      if (m?.type === "ready") {
        clearTimeout(timer);
        resolve(m);
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`node exited during start (${code ?? signal}):\n${output}`));
    });
  });
  return { child, address: ready.address, ready, configFile, exited };
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function eventually<T>(check: () => Promise<T> | T, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`condition not met in ${timeoutMs} ms${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
