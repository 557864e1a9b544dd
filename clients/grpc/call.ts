/**
 * Promise and AbortSignal wrappers over the callback API of generated grpc-js clients.
 */
import { Metadata, status as Status, type CallOptions, type ClientUnaryCall, type ServiceError } from "@grpc/grpc-js";
import { parseRichError } from "./rich-error.js";

/** Options of one call. */
export interface CallSettings {
  /** Absolute deadline (Date or epoch ms). Unset: the channel's default deadline. */
  deadline?: Date | number;
  /** Cancels the call when aborted. */
  signal?: AbortSignal;
  /** Request metadata. */
  metadata?: Metadata;
}

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (err: ServiceError | null, res: Res) => void,
) => ClientUnaryCall;

/**
 * Calls a unary method of a generated client and returns its response.
 * Usage: `await unary(client, client.getLoad, {})`.
 */
export function unary<Req, Res>(
  client: object,
  method: UnaryMethod<Req, Res>,
  request: Req,
  s: CallSettings = {},
): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    if (s.signal?.aborted) {
      reject(cancelledError(s.signal));
      return;
    }
    const options: Partial<CallOptions> = {};
    if (s.deadline !== undefined) options.deadline = s.deadline;
    const call = method.call(client, request, s.metadata ?? new Metadata(), options, (err, res) => {
      s.signal?.removeEventListener("abort", onAbort);
      if (err) reject(err);
      else resolve(res);
    });
    const onAbort = (): void => call.cancel();
    s.signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The error a call rejects with when its signal was aborted before it started. */
export function cancelledError(signal: AbortSignal): ServiceError {
  const err = new Error(`call cancelled: ${String(signal.reason ?? "aborted")}`) as ServiceError;
  err.code = Status.CANCELLED;
  err.details = err.message;
  err.metadata = new Metadata();
  return err;
}

/** True when the error is a gRPC status with this code. */
export function hasCode(err: unknown, code: Status): boolean {
  return typeof (err as { code?: unknown })?.code === "number" && (err as { code: number }).code === code;
}

/** A one-line description of a gRPC error for CLIs and logs: "NOT_FOUND: ... (REASON)". */
export function describeError(err: unknown): string {
  const st = parseRichError(err);
  const name = Status[st.code] ?? String(st.code);
  let line = `${name}: ${st.message}`;
  if (st.errorInfo?.reason) line += ` (${st.errorInfo.reason})`;
  if (st.fieldViolations?.length) {
    line += "; " + st.fieldViolations.map((v) => `${v.field}: ${v.description}`).join("; ");
  }
  if (st.retryDelayMs !== undefined) line += `; retry in ${(st.retryDelayMs / 1000).toFixed(1)} s`;
  return line;
}
