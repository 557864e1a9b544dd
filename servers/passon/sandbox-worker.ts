/**
 * Sandbox worker thread: instantiates one pass-on app per job with a host-owned memory
 * whose maximum is the app's memory limit, runs `handle` (or `selftest`) and posts the
 * response, the user-data writes and the time spent. The main thread terminates the whole
 * worker when a job passes its time limit, so a looping module cannot hold a thread.
 */
import { parentPort } from "node:worker_threads";
import type { SandboxJob, SandboxReply, WorkerMessage } from "./sandbox.js";

const PAGE = 65536;
/** Largest response an app may produce, in bytes. */
const MAX_OUTPUT = 4 * 1024 * 1024;
/** Largest key, value and number of writes per invocation. */
const MAX_KEY = 256;
const MAX_VALUE = 64 * 1024;
const MAX_WRITES = 256;

/** A violation of the ABI by the module (reported as a trap with this message). */
class AbiViolation extends Error {}

const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Spare memories by "initial/maximum" pages. Creating a WebAssembly.Memory costs far more
 * than the rest of an invocation (address-space reservation, then GC of the old one), so a
 * memory that ended a successful call at its initial size is zeroed and handed to the next
 * call with the same limits: the app sees exactly what a new memory holds (all zeroes at
 * the initial size, its data segments written by the fresh instance). A memory that grew,
 * or whose call failed, is dropped.
 */
const spare = new Map<string, WebAssembly.Memory>();
const MAX_SPARE = 8;
/** Memories above this size are not kept (zeroing them would cost more than a new one). */
const MAX_SPARE_BYTES = 4 * 1024 * 1024;

function takeMemory(initial: number, maximum: number): WebAssembly.Memory {
  const key = `${initial}/${maximum}`;
  const m = spare.get(key);
  if (m) {
    spare.delete(key);
    return m;
  }
  return new WebAssembly.Memory({ initial, maximum });
}

function giveBack(memory: WebAssembly.Memory, initial: number, maximum: number): void {
  const bytes = memory.buffer.byteLength;
  if (bytes !== initial * PAGE || bytes > MAX_SPARE_BYTES) return;
  new Uint8Array(memory.buffer).fill(0);
  if (spare.size >= MAX_SPARE) spare.delete(spare.keys().next().value as string);
  spare.set(`${initial}/${maximum}`, memory);
}

function run(job: SandboxJob): SandboxReply {
  const memory = takeMemory(job.minPages, job.maxPages);
  const reply = execute(job, memory);
  if (reply.kind === "ok") giveBack(memory, job.minPages, job.maxPages);
  return reply;
}

function execute(job: SandboxJob, memory: WebAssembly.Memory): SandboxReply {
  const data = job.data;
  const writes = new Map<string, Uint8Array | null>();
  let output: Uint8Array = new Uint8Array(0);
  const bytesAt = (p: number, n: number): Uint8Array => {
    if (p < 0 || n < 0 || p + n > memory.buffer.byteLength) throw new AbiViolation(`host call outside memory (${p}+${n})`);
    return new Uint8Array(memory.buffer, p, n);
  };
  const keyAt = (p: number, n: number): string => {
    if (n <= 0 || n > MAX_KEY) throw new AbiViolation(`data key of ${n} bytes; 1 to ${MAX_KEY} allowed`);
    try {
      return decoder.decode(bytesAt(p, n));
    } catch (err) {
      if (err instanceof AbiViolation) throw err;
      throw new AbiViolation("data key is not UTF-8");
    }
  };
  const env = {
    memory,
    output: (p: number, n: number): void => {
      if (n > MAX_OUTPUT) throw new AbiViolation(`response of ${n} bytes exceeds ${MAX_OUTPUT}`);
      output = bytesAt(p, n).slice();
    },
    data_get: (kp: number, kn: number, vp: number, cap: number): number => {
      const v = data.get(keyAt(kp, kn));
      if (!v) return -1;
      const n = Math.min(v.length, Math.max(0, cap));
      bytesAt(vp, n).set(v.subarray(0, n));
      return v.length;
    },
    data_put: (kp: number, kn: number, vp: number, vn: number): void => {
      const key = keyAt(kp, kn);
      if (!writes.has(key) && writes.size >= MAX_WRITES) throw new AbiViolation(`more than ${MAX_WRITES} keys written in one call`);
      if (vn === -1) {
        data.delete(key);
        writes.set(key, null);
        return;
      }
      if (vn > MAX_VALUE) throw new AbiViolation(`value of ${vn} bytes exceeds ${MAX_VALUE}`);
      const v = bytesAt(vp, vn).slice();
      data.set(key, v);
      writes.set(key, v);
    },
  };
  const started = performance.now();
  try {
    const instance = new WebAssembly.Instance(job.module, { env });
    const ex = instance.exports as Record<string, unknown>;
    if (job.entry === "selftest") {
      const code = typeof ex["selftest"] === "function" ? (ex["selftest"] as () => number)() : 0;
      return { kind: "ok", code, response: new Uint8Array(0), writes: new Map(), execMicros: micros(started) };
    }
    const alloc = ex["alloc"] as (n: number) => number;
    const handle = ex["handle"] as (p: number, n: number) => number;
    const p = alloc(job.request.length);
    if (p < 0) return { kind: "memory", message: "no room for the request within the memory limit", execMicros: micros(started) };
    bytesAt(p, job.request.length).set(job.request);
    const code = handle(p, job.request.length);
    return { kind: "ok", code, response: output, writes, execMicros: micros(started) };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof AbiViolation) return { kind: "trap", message, execMicros: micros(started) };
    if (memory.buffer.byteLength >= job.maxPages * PAGE) {
      return { kind: "memory", message: `trapped at the memory limit (${job.maxPages} pages): ${message}`, execMicros: micros(started) };
    }
    return { kind: "trap", message, execMicros: micros(started) };
  }
}

function micros(started: number): number {
  return Math.max(1, Math.round((performance.now() - started) * 1000));
}

/** Modules by id, sent once each by the main thread (which decides what is dropped). */
const modules = new Map<number, WebAssembly.Module>();

parentPort?.on("message", (msg: WorkerMessage) => {
  if ("drop" in msg) {
    modules.delete(msg.drop);
    return;
  }
  if (msg.module) modules.set(msg.moduleId, msg.module);
  const module = modules.get(msg.moduleId);
  const reply: SandboxReply = module ? run({ ...msg.job, module }) : { kind: "crash", message: `module ${msg.moduleId} was never sent to this worker`, execMicros: 0 };
  parentPort?.postMessage({ id: msg.id, reply });
});
parentPort?.postMessage({ ready: true });
