/**
 * The sandbox: a pool of worker threads that run pass-on apps (WebAssembly) one job at a
 * time each. A job past its time limit gets its worker terminated and replaced; a worker
 * that dies takes only its own job with it. Memory is bounded by the host-owned
 * WebAssembly.Memory maximum (and the worker's V8 heap by resourceLimits).
 */
import { extname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import type { Logger } from "pino";
import { packageRoot } from "../runtime/paths.js";

/** One invocation handed to a worker. */
export interface SandboxJob {
  module: WebAssembly.Module;
  /** Pages the memory starts with (the module's declared minimum). */
  minPages: number;
  /** Memory limit in pages. */
  maxPages: number;
  /** "handle" for a request, "selftest" for the load check. */
  entry: "handle" | "selftest";
  request: Uint8Array;
  /** The user's data (the app may read and change it; changes come back in `writes`). */
  data: Map<string, Uint8Array>;
}

/** What came out of a job. */
export type SandboxReply =
  | { kind: "ok"; code: number; response: Uint8Array; writes: Map<string, Uint8Array | null>; execMicros: number }
  | { kind: "trap"; message: string; execMicros: number }
  | { kind: "memory"; message: string; execMicros: number }
  | { kind: "timeout"; message: string; execMicros: number }
  | { kind: "crash"; message: string; execMicros: number };

interface Pending {
  id: number;
  job: SandboxJob;
  timeLimitMs: number;
  resolve: (r: SandboxReply) => void;
  reject: (e: Error) => void;
  started?: number;
  timer?: NodeJS.Timeout;
}

interface Slot {
  worker: Worker;
  /** Ids of the modules this worker holds, oldest first (see moduleId()). */
  modules: Set<number>;
  current: Pending | undefined;
  /** The worker finished starting (jobs go only to ready workers, so start-up never counts against a time limit). */
  ready: boolean;
}

/** Modules a worker keeps at most (the oldest is dropped first). */
const WORKER_MODULES = 64;

/** What the main thread posts to a worker: a job (with its module the first time), or a module to forget. */
export type WorkerMessage =
  | { id: number; moduleId: number; module?: WebAssembly.Module; job: Omit<SandboxJob, "module"> }
  | { drop: number };

/** Thrown by run() when the queue is full. */
export class SandboxBusyError extends Error {
  override name = "SandboxBusyError";
}

/** Options of the sandbox pool. */
export interface SandboxOptions {
  /** Worker threads. */
  workers: number;
  /** Jobs that may wait for a worker; more are refused. */
  maxQueue: number;
  log: Logger;
}

/** The compiled worker script (also when this module runs from TypeScript sources under tsx). */
function workerUrl(): URL {
  if (extname(fileURLToPath(import.meta.url)) === ".js") return new URL("./sandbox-worker.js", import.meta.url);
  return pathToFileURL(join(packageRoot(), "dist", "servers", "passon", "sandbox-worker.js"));
}

/** A pool of sandbox workers. */
export class Sandbox {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private closed = false;

  constructor(private readonly opts: SandboxOptions) {
    for (let i = 0; i < Math.max(1, opts.workers); i++) {
      const slot: Slot = { worker: undefined as unknown as Worker, modules: new Set(), current: undefined, ready: false };
      slot.worker = this.spawn(slot);
      this.slots.push(slot);
    }
  }

  /** Starts a worker serving `slot`. */
  private spawn(slot: Slot): Worker {
    const worker = new Worker(workerUrl(), {
      resourceLimits: { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 16, stackSizeMb: 4 },
    });
    worker.unref();
    slot.ready = false;
    slot.modules = new Set();
    worker.on("message", (msg: { id: number; reply: SandboxReply } | { ready: true }) => {
      if (slot.worker !== worker) return;
      if ("ready" in msg) {
        slot.ready = true;
        this.pump();
      } else if (slot.current?.id === msg.id) this.finish(slot, msg.reply);
    });
    const died = (why: string): void => {
      if (slot.worker !== worker) return;
      const p = slot.current;
      this.opts.log.warn({ why }, "sandbox worker died; replacing it");
      this.replace(slot);
      if (p) {
        clearTimeout(p.timer);
        p.resolve({ kind: "crash", message: `sandbox worker died: ${why}`, execMicros: elapsedMicros(p) });
      }
      this.pump();
    };
    worker.on("error", (err) => died(err.message));
    worker.on("exit", (code) => died(`exit ${code}`));
    return worker;
  }

  /** Terminates the slot's worker (whatever it runs) and starts a fresh one. */
  private replace(slot: Slot): void {
    const old = slot.worker;
    slot.current = undefined;
    old.removeAllListeners();
    old.on("error", () => undefined);
    void old.terminate().catch(() => undefined);
    if (!this.closed) slot.worker = this.spawn(slot);
  }

  private finish(slot: Slot, reply: SandboxReply): void {
    const p = slot.current;
    if (!p) return;
    clearTimeout(p.timer);
    slot.current = undefined;
    p.resolve(reply);
    this.pump();
  }

  private pump(): void {
    for (const slot of this.slots) {
      if (slot.current || !slot.ready) continue;
      const p = this.queue.shift();
      if (!p) return;
      slot.current = p;
      p.started = performance.now();
      p.timer = setTimeout(() => {
        if (slot.current !== p) return;
        this.replace(slot);
        p.resolve({ kind: "timeout", message: `ran past its time limit of ${p.timeLimitMs} ms`, execMicros: elapsedMicros(p) });
        this.pump();
      }, p.timeLimitMs);
      // A worker gets each module once and keeps it by id: posting a WebAssembly.Module
      // with every job was a tenth of the main thread's time under load.
      const mid = this.moduleId(p.job.module);
      const { module, ...rest } = p.job;
      if (slot.modules.has(mid)) {
        slot.worker.postMessage({ id: p.id, moduleId: mid, job: rest });
      } else {
        if (slot.modules.size >= WORKER_MODULES) {
          const oldest = slot.modules.values().next().value as number;
          slot.modules.delete(oldest);
          slot.worker.postMessage({ drop: oldest });
        }
        slot.modules.add(mid);
        slot.worker.postMessage({ id: p.id, moduleId: mid, module, job: rest });
      }
    }
  }

  private readonly moduleIds = new WeakMap<WebAssembly.Module, number>();
  private nextModuleId = 1;

  /** A stable id for a compiled module (the same object is the same module). */
  private moduleId(m: WebAssembly.Module): number {
    let id = this.moduleIds.get(m);
    if (id === undefined) {
      id = this.nextModuleId++;
      this.moduleIds.set(m, id);
    }
    return id;
  }

  /** Runs a job; resolves with its reply (never rejects for app failures). */
  run(job: SandboxJob, timeLimitMs: number): Promise<SandboxReply> {
    if (this.closed) return Promise.reject(new Error("sandbox is closed"));
    if (this.queue.length >= this.opts.maxQueue) return Promise.reject(new SandboxBusyError(`sandbox queue is full (${this.opts.maxQueue} jobs waiting)`));
    // postMessage clones a typed array's whole backing buffer: a small Buffer is a view on
    // Node's shared 8 KiB pool, so hand the worker exact-size copies instead.
    let data = job.data;
    for (const v of job.data.values()) {
      if (!isExact(v)) {
        data = new Map([...job.data].map(([k, x]) => [k, exact(x)]));
        break;
      }
    }
    const sent: SandboxJob = { ...job, request: exact(job.request), data };
    return new Promise<SandboxReply>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, job: sent, timeLimitMs, resolve, reject });
      this.pump();
    });
  }

  /** Jobs running or waiting. */
  get load(): { running: number; queued: number; workers: number } {
    return { running: this.slots.filter((s) => s.current).length, queued: this.queue.length, workers: this.slots.length };
  }

  /** Terminates every worker; pending jobs fail. */
  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.queue.splice(0)) p.reject(new Error("sandbox closed"));
    await Promise.all(
      this.slots.map(async (s) => {
        s.worker.removeAllListeners();
        s.worker.on("error", () => undefined);
        const p = s.current;
        s.current = undefined;
        if (p) {
          clearTimeout(p.timer);
          p.reject(new Error("sandbox closed"));
        }
        await s.worker.terminate().catch(() => undefined);
      }),
    );
  }
}

function isExact(a: Uint8Array): boolean {
  return a.byteOffset === 0 && a.byteLength === a.buffer.byteLength;
}

/** The bytes in an array of their own (the array itself when it already is). */
export function exact(a: Uint8Array): Uint8Array {
  return isExact(a) ? a : Uint8Array.prototype.slice.call(a);
}

function elapsedMicros(p: Pending): number {
  return p.started === undefined ? 0 : Math.round((performance.now() - p.started) * 1000);
}
