/**
 * A pool of render child processes. Each child runs under an OS memory limit
 * (RLIMIT_DATA through `prlimit`, which bounds canvas and other native memory that V8's
 * heap limits do not), is recycled after a number of pages, and is killed when a page
 * takes longer than the per-page timeout. A child that dies takes only its current page
 * with it; the pool starts a fresh one for the next request.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import type { ChildRequest, ChildResponse, RenderFailure } from "./protocol.js";

/** Options of a RenderPool. */
export interface RenderPoolOptions {
  /** Number of child processes. */
  size: number;
  /** RLIMIT_DATA of each child, in bytes (0: no limit). */
  memoryLimitBytes: number;
  /** Pages a child renders before it is replaced. */
  pagesPerChild: number;
  /** Time one page may take before its child is killed, in ms. */
  pageTimeoutMs: number;
  /** Time opening a document may take, in ms. */
  openTimeoutMs: number;
  log: Logger;
}

/** Outcome of a pool call that did not succeed. */
export type PoolFailure = RenderFailure | { kind: "TIMEOUT" } | { kind: "CRASHED"; signal: string | null; code: number | null } | { kind: "STOPPED" };

/** A rendered page. */
export interface RenderedPage {
  /** The JPEG (empty when it was written to `file`). */
  jpeg: Buffer;
  /** The file the JPEG was written to, when the request named one. */
  file?: string;
  /** Bytes of the JPEG. */
  size: number;
  width: number;
  height: number;
}

interface Child {
  proc: ChildProcess;
  pages: number;
  open: Set<string>;
  pending?: { id: number; resolve: (r: ChildResponse | PoolFailure) => void; timer: NodeJS.Timeout };
  dead: boolean;
}

type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;

const PRLIMIT = ["/usr/bin/prlimit", "/bin/prlimit"].find((p) => existsSync(p));

function childScript(): { script: string; execArgv: string[] } {
  const js = fileURLToPath(new URL("./child.js", import.meta.url));
  if (existsSync(js)) return { script: js, execArgv: [] };
  // Running from sources under tsx (tests): the child needs the same loader.
  return { script: fileURLToPath(new URL("./child.ts", import.meta.url)), execArgv: ["--import", "tsx"] };
}

/** A fixed-size pool of render processes shared by every conversion on a worker. */
export class RenderPool {
  private readonly idle: Child[] = [];
  private readonly all = new Set<Child>();
  private readonly waiting: ((c: Child | undefined) => void)[] = [];
  private nextId = 1;
  private stopped = false;
  /** Pages rendered since start (for load reports and tests). */
  pagesRendered = 0;
  /** Children started since start (recycling and crashes included). */
  childrenStarted = 0;

  constructor(private readonly opts: RenderPoolOptions) {}

  /** Children currently rendering. */
  get busy(): number {
    return this.all.size - this.idle.length;
  }

  /** Requests waiting for a child. */
  get queued(): number {
    return this.waiting.length;
  }

  /** PIDs of the live children (benchmarks sample their memory). */
  pids(): number[] {
    return [...this.all].map((c) => c.proc.pid).filter((p): p is number => p !== undefined);
  }

  private spawnChild(): Child {
    const { script, execArgv } = childScript();
    // A small V8 heap (pdf.js objects are short-lived) and few malloc arenas (Skia and
    // libvips allocate from many threads; glibc's default of 8 arenas per core keeps freed
    // canvas memory mapped) keep a render process's RSS down.
    const node = [process.execPath, "--max-old-space-size=256", "--max-semi-space-size=8", ...execArgv, script];
    const useLimit = PRLIMIT && this.opts.memoryLimitBytes > 0;
    const [cmd, ...args] = useLimit ? [PRLIMIT, `--data=${this.opts.memoryLimitBytes}`, "--", ...node] : node;
    const proc = spawn(cmd as string, args, {
      stdio: ["ignore", "ignore", "pipe", "ipc"],
      serialization: "advanced",
      env: { ...process.env, MALLOC_ARENA_MAX: "1" },
    });
    this.childrenStarted++;
    let stderr = "";
    proc.stderr?.on("data", (b: Buffer) => {
      if (stderr.length < 4000) stderr += b.toString();
    });
    const child: Child = { proc, pages: 0, open: new Set(), dead: false };
    proc.on("message", (msg: ChildResponse) => {
      const p = child.pending;
      if (!p || p.id !== msg.id) return;
      clearTimeout(p.timer);
      child.pending = undefined;
      p.resolve(msg);
    });
    proc.on("exit", (code, signal) => {
      child.dead = true;
      this.all.delete(child);
      const i = this.idle.indexOf(child);
      if (i >= 0) this.idle.splice(i, 1);
      const p = child.pending;
      if (p) {
        clearTimeout(p.timer);
        child.pending = undefined;
        if (stderr) this.opts.log.warn({ code, signal, stderr: stderr.slice(-1000) }, "render child died");
        p.resolve({ kind: "CRASHED", signal, code });
      }
    });
    proc.on("error", (err) => this.opts.log.error({ err }, "render child failed to start"));
    this.all.add(child);
    return child;
  }

  private acquire(): Promise<Child | undefined> {
    if (this.stopped) return Promise.resolve(undefined);
    const c = this.idle.pop();
    if (c) return Promise.resolve(c);
    if (this.all.size < this.opts.size) return Promise.resolve(this.spawnChild());
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(c: Child): void {
    if (!c.dead && c.pages >= this.opts.pagesPerChild) {
      // Recycle: a fresh process returns memory fragmented by earlier pages.
      c.dead = true;
      this.all.delete(c);
      c.proc.kill("SIGKILL");
    }
    const next = this.waiting.shift();
    if (next) {
      if (this.stopped) next(undefined);
      else if (!c.dead) next(c);
      else next(this.spawnChild());
      return;
    }
    if (!c.dead && !this.stopped) this.idle.push(c);
  }

  private call(c: Child, req: WithoutId<ChildRequest>, timeoutMs: number): Promise<ChildResponse | PoolFailure> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        c.pending = undefined;
        c.dead = true;
        this.all.delete(c);
        c.proc.kill("SIGKILL");
        resolve({ kind: "TIMEOUT" });
      }, timeoutMs);
      c.pending = { id, resolve, timer };
      c.proc.send({ ...req, id } as ChildRequest, (err) => {
        if (err && c.pending?.id === id) {
          clearTimeout(timer);
          c.pending = undefined;
          resolve({ kind: "CRASHED", signal: null, code: null });
        }
      });
    });
  }

  private async ensureOpen(c: Child, key: string, data: Uint8Array, password: string): Promise<{ numPages: number } | PoolFailure> {
    const r = await this.call(c, { op: "open", key, data, password }, this.opts.openTimeoutMs);
    if ("kind" in r) return r;
    if (!r.ok) return r.failure;
    c.open.add(key);
    return { numPages: r.numPages ?? 0 };
  }

  /** Opens a document in one child to learn its page count (and validate it). */
  async inspect(key: string, data: Uint8Array, password: string): Promise<{ numPages: number } | PoolFailure> {
    const c = await this.acquire();
    if (!c) return { kind: "STOPPED" };
    try {
      return await this.ensureOpen(c, key, data, password);
    } finally {
      this.release(c);
    }
  }

  /** Renders one page on the next free child (opening the document there if needed). */
  async render(
    key: string,
    data: Uint8Array,
    password: string,
    page: number,
    o: { dpi: number; mono: boolean; quality: number; maxPixels: number; out?: string },
  ): Promise<RenderedPage | PoolFailure> {
    const c = await this.acquire();
    if (!c) return { kind: "STOPPED" };
    try {
      if (!c.open.has(key)) {
        const opened = await this.ensureOpen(c, key, data, password);
        if ("kind" in opened) return opened;
      }
      c.pages++;
      let r = await this.call(c, { op: "render", key, page, ...o }, this.opts.pageTimeoutMs);
      if (!("kind" in r) && !r.ok && r.failure.kind === "NOT_OPEN") {
        // The child evicted the document to open others (it keeps a few): open it again.
        c.open.delete(key);
        const opened = await this.ensureOpen(c, key, data, password);
        if ("kind" in opened) return opened;
        r = await this.call(c, { op: "render", key, page, ...o }, this.opts.pageTimeoutMs);
      }
      if ("kind" in r) return r;
      if (!r.ok) return r.failure;
      this.pagesRendered++;
      // A view, not a copy: the IPC message already gave this process its own bytes.
      const j = r.jpeg ?? new Uint8Array();
      return { jpeg: Buffer.from(j.buffer, j.byteOffset, j.byteLength), ...(o.out ? { file: o.out } : {}), size: r.size ?? j.byteLength, width: r.width ?? 0, height: r.height ?? 0 };
    } finally {
      this.release(c);
    }
  }

  /** Forgets a document in every child that has it open (best effort). */
  close(key: string): void {
    for (const c of this.idle) {
      if (!c.open.has(key)) continue;
      c.open.delete(key);
      c.proc.send({ id: 0, op: "close", key } satisfies ChildRequest, () => undefined);
    }
  }

  /** Kills every child; waiting and later requests fail with STOPPED. */
  stop(): void {
    this.stopped = true;
    for (const w of this.waiting.splice(0)) w(undefined);
    for (const c of this.all) {
      c.dead = true;
      c.proc.kill("SIGKILL");
    }
    this.all.clear();
    this.idle.length = 0;
  }
}
