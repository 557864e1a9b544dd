/**
 * `switchyard up`: starts every node of a cluster file as its own OS process, each with
 * data under <dataRoot>/<id> and its log in <dataRoot>/<id>/node.log; prints the endpoint
 * table; reports a node that crashes; stops everything on Ctrl-C / SIGTERM.
 */
import { fork, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, closeSync } from "node:fs";
import { join, resolve } from "node:path";
import { stringify as toYaml } from "yaml";
import type { ReadyMessage } from "../../servers/main.js";
import { packageRoot } from "../../servers/runtime/paths.js";
import { roleV8Flags } from "../../servers/roles.js";
import { deepMerge, readClusterFile, referencesOf, resolveReferences, type ClusterFile, type ClusterNode } from "./cluster-file.js";

/** One node as `switchyard status` finds it in <dataRoot>/cluster.json. */
export interface ClusterEntry {
  id: string;
  role: string;
  address: string;
  metricsPort: number | undefined;
  pid: number;
  log: string;
}

/** Options of a cluster launch. */
export interface LaunchOptions {
  clusterFile: string;
  /** Folder for node data, logs and cluster.json. Default ./data. */
  dataRoot?: string;
  /** How long one node may take to report ready, in ms. Default 30 000. */
  readyTimeoutMs?: number;
  /** Where progress lines go. Default stdout. */
  out?: (line: string) => void;
  /** Extra environment for every node. */
  env?: NodeJS.ProcessEnv;
  /** Aborting it during start stops the nodes started so far (Ctrl-C while starting). */
  signal?: AbortSignal;
}

/** A launched cluster. */
export interface Cluster {
  readonly nodes: ReadonlyMap<string, ClusterEntry>;
  readonly file: ClusterFile;
  /** Resolves with the first node that exits while the cluster is meant to be up. */
  readonly crashed: Promise<{ id: string; code: number | null; signal: NodeJS.Signals | null }>;
  /** Stops every node (SIGTERM, then SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<void>;
}

/** The compiled entry point node processes run (`--config FILE`). */
export function nodeEntryPoint(): string {
  const entry = join(packageRoot(), "dist", "servers", "node-entry.js");
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run 'npm run build' first`);
  return entry;
}

/** The compiled `switchyard` CLI. */
export function cliEntryPoint(): string {
  const entry = join(packageRoot(), "dist", "tools", "cli", "main.js");
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run 'npm run build' first`);
  return entry;
}

/** Last `n` lines of a file, for crash reports. */
export function tail(file: string, n: number): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-n).join("\n");
  } catch {
    return "";
  }
}

/** Starts the cluster; resolves once every node serves (or rejects, stopping the rest). */
export async function launchCluster(opts: LaunchOptions): Promise<Cluster> {
  const file = readClusterFile(opts.clusterFile);
  const dataRoot = resolve(opts.dataRoot ?? "data");
  const out = opts.out ?? ((l: string) => process.stdout.write(l + "\n"));
  const entry = nodeEntryPoint();
  mkdirSync(dataRoot, { recursive: true });
  const stateFile = join(dataRoot, "cluster.json");

  const children = new Map<string, ChildProcess>();
  const entries = new Map<string, ClusterEntry>();
  const addresses = new Map<string, string>();
  let stopping = false;
  let reportCrash: (c: { id: string; code: number | null; signal: NodeJS.Signals | null }) => void = () => undefined;
  const crashed = new Promise<{ id: string; code: number | null; signal: NodeJS.Signals | null }>((r) => (reportCrash = r));

  const writeState = (): void => {
    writeFileSync(stateFile, JSON.stringify({ clusterFile: resolve(opts.clusterFile), nodes: [...entries.values()] }, null, 2));
  };

  const startOne = (n: ClusterNode): Promise<ClusterEntry> => {
    const dataDir = join(dataRoot, n.id);
    mkdirSync(dataDir, { recursive: true });
    const config = resolveReferences(
      deepMerge(file.defaults, {
        ...n.config,
        node: { ...((n.config["node"] as object | undefined) ?? {}), id: n.id, role: n.role, dataDir, ...(n.listen ? { listen: n.listen } : {}) },
      }),
      addresses,
    );
    const configFile = join(dataDir, "node.yaml");
    writeFileSync(configFile, `# written by 'switchyard up' from ${opts.clusterFile}\n` + toYaml(config));
    const logFile = join(dataDir, "node.log");
    const logFd = openSync(logFile, "a");
    const child = fork(entry, ["--config", configFile], {
      stdio: ["ignore", logFd, logFd, "ipc"],
      env: { ...process.env, ...opts.env },
      execArgv: roleV8Flags(n.role),
    });
    closeSync(logFd);
    children.set(n.id, child);
    return new Promise<ClusterEntry>((resolveReady, rejectReady) => {
      let ready = false;
      const timer = setTimeout(() => {
        rejectReady(new Error(`node ${n.id} did not report ready within ${(opts.readyTimeoutMs ?? 30_000) / 1000} s; see ${logFile}`));
      }, opts.readyTimeoutMs ?? 30_000);
      child.on("message", (m: ReadyMessage) => {
        if (m?.type !== "ready") return;
        ready = true;
        clearTimeout(timer);
        const e: ClusterEntry = { id: n.id, role: n.role, address: m.address, metricsPort: m.metricsPort, pid: m.pid, log: logFile };
        entries.set(n.id, e);
        addresses.set(n.id, m.address);
        writeState();
        resolveReady(e);
      });
      child.once("exit", (code, signal) => {
        children.delete(n.id);
        entries.delete(n.id);
        if (!stopping) {
          if (existsSync(stateFile)) writeState();
          reportCrash({ id: n.id, code, signal });
        }
        if (!ready) {
          clearTimeout(timer);
          const why = signal ? `signal ${signal}` : `exit code ${code}`;
          rejectReady(new Error(`node ${n.id} exited during start (${why}):\n${tail(logFile, 15)}`));
        }
      });
    });
  };

  const stop = async (graceMs = 15_000): Promise<void> => {
    stopping = true;
    const exits = [...children.values()].map(
      (c) =>
        new Promise<void>((r) => {
          if (c.exitCode !== null || c.signalCode !== null) return r();
          c.once("exit", () => r());
          c.kill("SIGTERM");
        }),
    );
    const killer = setTimeout(() => {
      for (const c of children.values()) c.kill("SIGKILL");
    }, graceMs);
    await Promise.all(exits);
    clearTimeout(killer);
    rmSync(stateFile, { force: true });
  };

  // Each node starts as soon as every node it refers to serves (independent nodes start
  // together); a reference cycle is refused before anything starts.
  const byId = new Map(file.nodes.map((n) => [n.id, n]));
  const visiting = new Set<string>();
  const visited = new Set<string>();
  const visit = (id: string, path: string[]): void => {
    if (visited.has(id)) return;
    if (visiting.has(id)) throw new Error(`cluster file has a reference cycle: ${[...path, id].join(" -> ")}`);
    visiting.add(id);
    for (const ref of referencesOf(byId.get(id)?.config)) visit(ref, [...path, id]);
    visiting.delete(id);
    visited.add(id);
  };
  for (const n of file.nodes) visit(n.id, []);

  const ready = new Map<string, Promise<ClusterEntry>>();
  const startWhenReady = (n: ClusterNode): Promise<ClusterEntry> => {
    let p = ready.get(n.id);
    if (!p) {
      p = Promise.all([...referencesOf(n.config)].map((id) => startWhenReady(byId.get(id) as ClusterNode))).then(() => {
        if (opts.signal?.aborted) throw new Error("start interrupted");
        return startOne(n);
      });
      p.then(
        (e) => out(`  ✓ ${e.id.padEnd(20)} ${e.role.padEnd(16)} ${e.address}`),
        () => undefined,
      );
      ready.set(n.id, p);
    }
    return p;
  };
  try {
    const interrupted = new Promise<never>((_, reject) => {
      if (opts.signal?.aborted) reject(new Error("start interrupted"));
      opts.signal?.addEventListener("abort", () => reject(new Error("start interrupted")), { once: true });
    });
    await Promise.race([Promise.all(file.nodes.map(startWhenReady)), interrupted]);
  } catch (err) {
    await stop(5_000);
    throw err;
  }
  return { nodes: entries, file, crashed, stop };
}
