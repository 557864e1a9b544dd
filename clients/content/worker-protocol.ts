/**
 * Messages between the downloader and its fetch workers (fetch-workers.ts,
 * piece-worker.ts). Imports neither grpc-js nor generated code: a worker loads this, and
 * those are most of a worker's start-up cost.
 */
import type { FileTarget } from "./file-sink.js";
import type { PieceFetchRequest } from "./piece-fetch.js";

/** Main thread → worker. */
export type WorkerRequest =
  | { t: "fetch"; id: number; address: string; req: PieceFetchRequest; direct: boolean; out?: PieceTarget }
  | { t: "cancel"; id: number }
  | { t: "close"; id: number; sink: number }
  /** Nothing runs any more: end the connections gracefully and exit. */
  | { t: "stop" };

/** Worker → main thread. */
export type WorkerReply =
  | { t: "ok"; id: number; bufs: ArrayBuffer[]; fallback: boolean }
  | { t: "err"; id: number; error: WorkerError; fallback: boolean }
  | { t: "closed"; id: number };

/** A file download's piece: written by the worker at `position` of the sink's file. */
export type PieceTarget = FileTarget & { position: number };

/** An error as it crosses from a worker: enough for parseRichError and `instanceof PieceAuthError`. */
export interface WorkerError {
  name: string;
  message: string;
  code?: number;
  details?: string;
  /** grpc-js Metadata.toJSON(): values are strings or (binary keys) Buffers. */
  metadata?: Record<string, (string | Buffer)[]>;
}

/** Serializes an attempt's error (gRPC status, details and metadata kept). */
export function encodeWorkerError(err: unknown): WorkerError {
  const e = err as { code?: unknown; details?: unknown; metadata?: unknown };
  const out: WorkerError = { name: err instanceof Error ? err.name : "Error", message: err instanceof Error ? err.message : String(err) };
  if (typeof e?.code === "number") out.code = e.code;
  if (typeof e?.details === "string") out.details = e.details;
  // grpc-js Metadata, recognized by its toJSON (this module does not load grpc-js).
  const md = e?.metadata as { toJSON?: () => Record<string, (string | Buffer)[]> } | undefined;
  if (md && typeof md.toJSON === "function") out.metadata = md.toJSON();
  return out;
}

