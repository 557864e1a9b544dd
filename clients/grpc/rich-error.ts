/**
 * The google.rpc rich-error codec, shared by servers (encoding) and clients (parsing).
 *
 * A rich error travels as the standard gRPC status plus a serialized `google.rpc.Status`
 * in the `grpc-status-details-bin` trailer, whose `details` are `Any`-packed
 * `google.rpc.*` messages. Any gRPC client (grpcurl, Python, Go) can read it.
 */
import { Metadata, status as Status, type ServiceError } from "@grpc/grpc-js";
import { Status as RpcStatus } from "../../gen/google/rpc/status.js";
import {
  BadRequest,
  ErrorInfo,
  PreconditionFailure,
  QuotaFailure,
  ResourceInfo,
  RetryInfo,
  type BadRequest_FieldViolation,
  type PreconditionFailure_Violation,
} from "../../gen/google/rpc/error_details.js";

/** Trailer key that carries the serialized google.rpc.Status. */
export const STATUS_DETAILS_KEY = "grpc-status-details-bin";

const TYPE_PREFIX = "type.googleapis.com/google.rpc.";

/** One field that failed validation (google.rpc.BadRequest.FieldViolation). */
export interface FieldViolation {
  /** Path to the field, e.g. "interval" or "pieces[3].hash". */
  field: string;
  /** What is wrong with it, for a human. */
  description: string;
  /** Stable machine-readable reason, e.g. "OUT_OF_RANGE". Optional. */
  reason?: string;
}

/** Everything a Switchyard error can carry besides code and message. */
export interface RichErrorDetails {
  /** google.rpc.ErrorInfo: stable reason (UPPER_SNAKE), domain and metadata. */
  errorInfo?: { reason: string; domain: string; metadata?: Record<string, string> };
  /** google.rpc.BadRequest: the fields that were wrong. */
  fieldViolations?: FieldViolation[];
  /** google.rpc.RetryInfo: how long to wait before a retry can succeed, in ms. */
  retryDelayMs?: number;
  /** google.rpc.PreconditionFailure: which preconditions failed. */
  preconditionViolations?: { type: string; subject: string; description: string }[];
  /** google.rpc.ResourceInfo: the resource the error is about. */
  resourceInfo?: { resourceType: string; resourceName: string; owner?: string; description?: string };
  /** google.rpc.QuotaFailure: which quotas were exceeded. */
  quotaViolations?: { subject: string; description: string }[];
}

/** A gRPC status with its parsed google.rpc details. */
export interface RichStatus extends RichErrorDetails {
  code: Status;
  message: string;
}

/** Encodes the details into the bytes of a google.rpc.Status for the details trailer. */
export function encodeStatusDetails(code: Status, message: string, d: RichErrorDetails): Buffer {
  const details: { typeUrl: string; value: Buffer }[] = [];
  const add = (type: string, bytes: Uint8Array): void => {
    details.push({ typeUrl: TYPE_PREFIX + type, value: Buffer.from(bytes) });
  };
  if (d.errorInfo) {
    const { reason, domain, metadata } = d.errorInfo;
    add("ErrorInfo", ErrorInfo.encode({ reason, domain, metadata: metadata ?? {} }).finish());
  }
  if (d.fieldViolations?.length) {
    const fieldViolations: BadRequest_FieldViolation[] = d.fieldViolations.map((v) => ({
      field: v.field,
      description: v.description,
      reason: v.reason ?? "",
      localizedMessage: undefined,
    }));
    add("BadRequest", BadRequest.encode({ fieldViolations }).finish());
  }
  if (d.retryDelayMs !== undefined) {
    const ms = Math.max(0, Math.round(d.retryDelayMs));
    const retryDelay = { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
    add("RetryInfo", RetryInfo.encode({ retryDelay }).finish());
  }
  if (d.preconditionViolations?.length) {
    const violations: PreconditionFailure_Violation[] = d.preconditionViolations;
    add("PreconditionFailure", PreconditionFailure.encode({ violations }).finish());
  }
  if (d.resourceInfo) {
    const r = d.resourceInfo;
    add(
      "ResourceInfo",
      ResourceInfo.encode({
        resourceType: r.resourceType,
        resourceName: r.resourceName,
        owner: r.owner ?? "",
        description: r.description ?? "",
      }).finish(),
    );
  }
  if (d.quotaViolations?.length) {
    const violations = d.quotaViolations.map((v) => ({
      subject: v.subject,
      description: v.description,
      apiService: "",
      quotaMetric: "",
      quotaId: "",
      quotaDimensions: {},
      quotaValue: 0n,
      futureQuotaValue: undefined,
    }));
    add("QuotaFailure", QuotaFailure.encode({ violations }).finish());
  }
  return Buffer.from(RpcStatus.encode({ code, message, details }).finish());
}

/** Builds the ServiceError that grpc-js sends as status + details trailer. */
export function richServiceError(code: Status, message: string, d: RichErrorDetails = {}): ServiceError {
  const metadata = new Metadata();
  metadata.set(STATUS_DETAILS_KEY, encodeStatusDetails(code, message, d));
  const err = new Error(message) as ServiceError;
  err.code = code;
  err.details = message;
  err.metadata = metadata;
  return err;
}

/** Parses the google.rpc details of an error a grpc-js client received. Never throws. */
export function parseRichError(err: unknown): RichStatus {
  const e = err as Partial<ServiceError> | undefined;
  const code = typeof e?.code === "number" ? (e.code as Status) : Status.UNKNOWN;
  const message = typeof e?.details === "string" ? e.details : e instanceof Error ? e.message : String(err);
  const out: RichStatus = { code, message };
  const raw = e?.metadata instanceof Metadata ? e.metadata.get(STATUS_DETAILS_KEY)[0] : undefined;
  if (!(raw instanceof Buffer)) return out;
  let status: RpcStatus;
  try {
    status = RpcStatus.decode(raw);
  } catch {
    return out;
  }
  for (const any of status.details) {
    try {
      switch (any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1)) {
        case "google.rpc.ErrorInfo": {
          const info = ErrorInfo.decode(any.value);
          out.errorInfo = { reason: info.reason, domain: info.domain, metadata: info.metadata };
          break;
        }
        case "google.rpc.BadRequest":
          out.fieldViolations = BadRequest.decode(any.value).fieldViolations.map((v) => ({
            field: v.field,
            description: v.description,
            ...(v.reason ? { reason: v.reason } : {}),
          }));
          break;
        case "google.rpc.RetryInfo": {
          const d = RetryInfo.decode(any.value).retryDelay;
          out.retryDelayMs = d ? Number(d.seconds) * 1000 + Math.round(d.nanos / 1_000_000) : 0;
          break;
        }
        case "google.rpc.PreconditionFailure":
          out.preconditionViolations = PreconditionFailure.decode(any.value).violations;
          break;
        case "google.rpc.ResourceInfo": {
          const r = ResourceInfo.decode(any.value);
          out.resourceInfo = r;
          break;
        }
        case "google.rpc.QuotaFailure":
          out.quotaViolations = QuotaFailure.decode(any.value).violations.map((v) => ({
            subject: v.subject,
            description: v.description,
          }));
          break;
        default:
          break; // Unknown detail types are skipped, as the AIP-193 asks of clients.
      }
    } catch {
      // A malformed detail is skipped; the code and message still stand.
    }
  }
  return out;
}

/** The ErrorInfo reason of an error, or undefined when it has none. */
export function errorReason(err: unknown): string | undefined {
  return parseRichError(err).errorInfo?.reason;
}

/** A gRPC-style error (what a call would have failed with) from a google.rpc.Status
 * carried in a message (an error per request on a stream: PassOn, GetPieces). */
export function errorFromRpcStatus(st: RpcStatus): ServiceError {
  const metadata = new Metadata();
  metadata.set(STATUS_DETAILS_KEY, Buffer.from(RpcStatus.encode(st).finish()));
  const err = new Error(`${st.code} ${Status[st.code] ?? ""}: ${st.message}`) as ServiceError;
  err.code = st.code;
  err.details = st.message;
  err.metadata = metadata;
  return err;
}
