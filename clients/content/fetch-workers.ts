/**
 * Fetch workers of the downloader: worker threads that each own gRPC channels to the
 * nodes and run fetch attempts (stream, decrypt, authenticate: piece-fetch.ts) for the
 * downloader, handing the plaintext back as transferred ArrayBuffers (no copy). The
 * downloader keeps every decision (replica choice, hedging, re-routing, grant renewal,
 * in-order output) in its own thread; the workers only move the per-byte work — HTTP/2,
 * grpc-js, AES-GCM and the garbage those make — off it, so a download can use more than
 * one core. Errors cross back with their gRPC status, details and metadata, so the
 * downloader tells a failed node from an expired grant exactly as for an in-thread fetch.
 */
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { Metadata } from "@grpc/grpc-js";
import type { ChannelSettings } from "../grpc/channel.js";
import { PieceAuthError } from "./crypto.js";
import type { PieceFetchRequest } from "./piece-fetch.js";
import type { PieceTarget, WorkerError, WorkerReply, WorkerRequest } from "./worker-protocol.js";

/** How long a stopped idle worker may take to end its connections before it is terminated. */
const STOP_GRACE_MS = 2000;

export type { PieceTarget, WorkerError, WorkerReply, WorkerRequest } from "./worker-protocol.js";

/** The error again, on the main thread. */
export function decodeWorkerError(w: WorkerError): Error {
  if (w.name === "PieceAuthError") return new PieceAuthError(w.message);
  const err = new Error(w.message) as Error & { code?: number; details?: string; metadata?: Metadata };
  err.name = w.name;
  if (w.code !== undefined) err.code = w.code;
  if (w.details !== undefined) err.details = w.details;
  if (w.metadata) {
    const md = new Metadata();
    for (const [k, vs] of Object.entries(w.metadata)) {
      for (const v of vs) {
        try {
          md.add(k, typeof v === "string" ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength));
        } catch {
          // a key grpc-js does not accept back; not needed to classify the error
        }
      }
    }
    err.metadata = md;
  }
  return err;
}

/** The compiled worker script (also when this module runs from TypeScript sources under tsx). */
function workerUrl(): URL {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith(".js")) return new URL("./piece-worker.js", import.meta.url);
  return pathToFileURL(join(dirname(here), "..", "..", "dist", "clients", "content", "piece-worker.js"));
}

/** A copy of `u` that owns its buffer (a view would clone its whole buffer, e.g. the manifest's). */
function own(u: Uint8Array): Uint8Array {
  return u.byteOffset === 0 && u.byteLength === u.buffer.byteLength ? u : new Uint8Array(u);
}

interface Pending {
  resolve(plain: Buffer[]): void;
  reject(err: Error): void;
  onFallback?: (() => void) | undefined;
}

interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
  /** Sink closes waiting for the worker's answer. */
  closing: Map<number, () => void>;
}

/** A pool of fetch workers; attempts go to the worker with the fewest running. */
export class PieceWorkers {
  private readonly slots: Slot[] = [];
  private nextId = 1;
  private closed = false;

  constructor(
    readonly threads: number,
    private readonly channel: ChannelSettings = {},
  ) {
    for (let i = 0; i < Math.max(1, threads); i++) this.slots.push(this.spawn());
  }

  private spawn(): Slot {
    // The worker keeps the process alive only while it has attempts running (see fetch).
    const worker = new Worker(workerUrl(), { workerData: { channel: this.channel } });
    worker.unref();
    const slot: Slot = { worker, pending: new Map(), closing: new Map() };
    worker.on("message", (msg: WorkerReply) => {
      if (msg.t === "closed") {
        slot.closing.get(msg.id)?.();
        slot.closing.delete(msg.id);
        if (slot.pending.size === 0 && slot.closing.size === 0) slot.worker.unref();
        return;
      }
      const p = slot.pending.get(msg.id);
      if (!p) return; // cancelled meanwhile
      this.settle(slot, msg.id);
      if (msg.fallback) p.onFallback?.();
      if (msg.t === "ok") p.resolve(msg.bufs.map((ab) => Buffer.from(ab)));
      else p.reject(decodeWorkerError(msg.error));
    });
    const died = (why: string): void => {
      const i = this.slots.indexOf(slot);
      if (i < 0) return;
      worker.removeAllListeners();
      worker.on("error", () => undefined);
      void worker.terminate().catch(() => undefined);
      if (this.closed) this.slots.splice(i, 1);
      else this.slots[i] = this.spawn();
      const err = new Error(`fetch worker died: ${why}`);
      for (const p of slot.pending.values()) p.reject(err);
      slot.pending.clear();
      // A dead worker writes nothing more: its sinks are closed.
      for (const done of slot.closing.values()) done();
      slot.closing.clear();
    };
    worker.on("error", (err) => died(err.message));
    worker.on("exit", (code) => died(`exit ${code}`));
    return slot;
  }

  private settle(slot: Slot, id: number): void {
    slot.pending.delete(id);
    if (slot.pending.size === 0 && slot.closing.size === 0) slot.worker.unref();
  }

  /** A new sink id for a file download through these workers. */
  newSink(): number {
    return this.nextId++;
  }

  /**
   * Waits until no worker writes to the sink's file any more (every write started has
   * finished) and has every worker close it; later attempts for it write nothing.
   */
  async closeSink(sink: number): Promise<void> {
    await Promise.all(
      this.slots.map(
        (slot) =>
          new Promise<void>((resolve) => {
            const id = this.nextId++;
            slot.closing.set(id, resolve);
            slot.worker.ref();
            slot.worker.postMessage({ t: "close", id, sink } satisfies WorkerRequest);
          }),
      ),
    );
  }

  /**
   * Runs one attempt in a worker: the piece's authenticated plaintext, or with `out`, an
   * empty list once the worker wrote the plaintext at `out.position` of the sink's file.
   */
  fetch(address: string, req: PieceFetchRequest, signal: AbortSignal, direct = true, onFallback?: () => void, out?: PieceTarget): Promise<Buffer[]> {
    if (this.closed) return Promise.reject(new Error("fetch workers closed"));
    let slot = this.slots[0] as Slot;
    for (const s of this.slots) if (s.pending.size < slot.pending.size) slot = s;
    const id = this.nextId++;
    return new Promise<Buffer[]>((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason instanceof Error ? signal.reason : new Error("attempt cancelled"));
        return;
      }
      const onAbort = (): void => {
        if (!slot.pending.has(id)) return;
        this.settle(slot, id);
        slot.worker.postMessage({ t: "cancel", id } satisfies WorkerRequest);
        reject(signal.reason instanceof Error ? signal.reason : new Error("attempt cancelled"));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      slot.pending.set(id, {
        resolve: (plain) => {
          signal.removeEventListener("abort", onAbort);
          resolve(plain);
        },
        reject: (err) => {
          signal.removeEventListener("abort", onAbort);
          reject(err);
        },
        onFallback,
      });
      if (slot.pending.size === 1) slot.worker.ref();
      const small: PieceFetchRequest = { ...req, key: own(req.key), nonce: own(req.nonce), grant: own(req.grant), accessTag: own(req.accessTag) };
      slot.worker.postMessage({ t: "fetch", id, address, req: small, direct, ...(out ? { out } : {}) } satisfies WorkerRequest);
    });
  }

  /** Stops the workers; attempts still running fail. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const err = new Error("fetch workers closed");
    for (const slot of this.slots) {
      slot.worker.removeAllListeners();
      slot.worker.on("error", () => undefined);
      if (slot.pending.size === 0 && slot.closing.size === 0) {
        // An idle worker ends its connections itself (the nodes see its idle GetPieces
        // lanes end with OK, not cancelled) and exits; terminated if it has not by then.
        slot.worker.postMessage({ t: "stop" } satisfies WorkerRequest);
        setTimeout(() => void slot.worker.terminate().catch(() => undefined), STOP_GRACE_MS).unref();
      } else void slot.worker.terminate().catch(() => undefined);
      for (const p of slot.pending.values()) p.reject(err);
      slot.pending.clear();
      for (const done of slot.closing.values()) done();
      slot.closing.clear();
    }
    this.slots.length = 0;
  }
}
