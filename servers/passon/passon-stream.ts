/**
 * Passing invocations on over one long-lived stream (ControlService.PassOn) instead of one
 * unary call each.
 *
 * Why: on loopback a grpc-js unary call costs ~300–600 µs of CPU (client and server
 * together: a new HTTP/2 stream, header encoding and parsing, a deadline timer, trailers
 * sent in a second write a loop turn after the message, so the caller wakes twice), while
 * a message on an open stream costs ~30–70 µs and one wake-up each way. Every hop paid
 * the unary price twice (the child's call, the parent's server side).
 *
 * Semantics are Invoke's: the parent runs the same checks, serving, billing and passing
 * on for each request and answers with the response or the exact google.rpc.Status Invoke
 * would have returned. The caller's deadline travels as a timeout and is enforced on both
 * sides. A broken stream fails its calls in flight with UNAVAILABLE — like a broken unary
 * call, they may or may not have run (a run is billed by the node that served it either
 * way, exactly once). Cancellation is not propagated (neither is it for unary pass-on
 * now): a cancelled call runs to its end or its deadline above.
 */
import { Metadata, status as Status, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { ControlServiceClient } from "../../gen/switchyard/passon/v1/control_service.js";
import type { PassOnRequest, PassOnResponse } from "../../gen/switchyard/passon/v1/control_service.js";
import type { InvokeRequest, InvokeResponse } from "../../gen/switchyard/passon/v1/app_gateway_service.js";
import { errorFromRpcStatus } from "../../clients/grpc/rich-error.js";
import { msToDuration } from "../../clients/grpc/duration.js";

/** Requests larger than this go as unary calls (a big message would hold up the small ones behind it on the stream). */
export const STREAM_MAX_REQUEST = 64 * 1024;
/** Calls in flight on one stream at most; more go as unary calls. */
const MAX_IN_FLIGHT = 4096;

/** Thrown when the parent does not implement PassOn: the caller falls back to unary Invoke (nothing ran above). */
export class PassOnUnsupportedError extends Error {
  override name = "PassOnUnsupportedError";
}

interface Pending {
  resolve: (r: InvokeResponse) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout | undefined;
}

function streamError(code: Status, message: string): ServiceError {
  const err = new Error(message) as ServiceError;
  err.code = code;
  err.details = message;
  err.metadata = new Metadata();
  return err;
}

/** The child's end: passes invocations to the parent on one stream, reopened when it breaks. */
export class PassOnLink {
  private stream: ClientDuplexStream<PassOnRequest, PassOnResponse> | undefined;
  private pending = new Map<number, Pending>();
  private nextId = 1;
  /** The parent answered UNIMPLEMENTED: use unary Invoke from now on. */
  private unsupported = false;

  constructor(
    private readonly control: ControlServiceClient,
    private readonly log: Logger,
  ) {}

  /** True when `req` should travel on the stream (else: unary Invoke). */
  accepts(req: InvokeRequest): boolean {
    return !this.unsupported && req.request.length <= STREAM_MAX_REQUEST && this.pending.size < MAX_IN_FLIGHT;
  }

  /** Passes `req` on; `deadline` is epoch ms (Infinity: none). Rejects like a unary Invoke would. */
  invoke(req: InvokeRequest, deadline: number): Promise<InvokeResponse> {
    const left = deadline - Date.now();
    if (left <= 0) return Promise.reject(streamError(Status.DEADLINE_EXCEEDED, "deadline exceeded before the call was passed on"));
    const stream = this.stream ?? this.open();
    const id = this.nextId++;
    return new Promise<InvokeResponse>((resolve, reject) => {
      const p: Pending = { resolve, reject, timer: undefined };
      if (Number.isFinite(left)) {
        p.timer = setTimeout(() => {
          if (this.pending.get(id) !== p) return;
          this.pending.delete(id);
          reject(streamError(Status.DEADLINE_EXCEEDED, "deadline exceeded waiting for the parent"));
        }, left);
      }
      this.pending.set(id, p);
      stream.write({ callId: BigInt(id), invoke: req, ...(Number.isFinite(left) ? { timeout: msToDuration(left) } : {}) });
    });
  }

  private open(): ClientDuplexStream<PassOnRequest, PassOnResponse> {
    const stream = this.control.passOn();
    this.stream = stream;
    let answered = false;
    const pending = this.pending;
    const ended = (err: ServiceError | undefined): void => {
      if (this.stream === stream) this.stream = undefined;
      if (this.pending === pending) this.pending = new Map();
      if (err?.code === Status.UNIMPLEMENTED && !answered) {
        if (!this.unsupported) this.log.info("parent does not implement PassOn; passing on with unary Invoke");
        this.unsupported = true;
      }
      const fail =
        err?.code === Status.UNIMPLEMENTED && !answered
          ? new PassOnUnsupportedError("parent does not implement PassOn")
          : streamError(Status.UNAVAILABLE, `pass-on stream to the parent ended${err ? `: ${err.details ?? err.message}` : ""}`);
      for (const p of pending.values()) {
        clearTimeout(p.timer);
        p.reject(fail);
      }
      pending.clear();
    };
    stream.on("data", (m: PassOnResponse) => {
      answered = true;
      const id = Number(m.callId);
      const p = pending.get(id);
      if (!p) return; // timed out meanwhile
      pending.delete(id);
      clearTimeout(p.timer);
      const r = m.result;
      if (r?.$case === "response") p.resolve(r.value);
      else if (r?.$case === "error") p.reject(errorFromRpcStatus(r.value));
      else p.reject(streamError(Status.INTERNAL, "parent answered a pass-on without a result"));
    });
    stream.on("error", (err: ServiceError) => ended(err));
    stream.on("end", () => ended(undefined));
    return stream;
  }

  /** Ends the stream; calls in flight fail with UNAVAILABLE. */
  close(): void {
    const s = this.stream;
    this.stream = undefined;
    s?.cancel();
  }
}
