/**
 * Named domain errors and the one boundary that turns them into gRPC status +
 * google.rpc details. Subsystems subclass these in their own `errors.ts`; handlers just
 * throw. Anything that is not a SwitchyardError becomes UNKNOWN with a generic message and
 * an error id; the real cause goes to the log, never to the client.
 */
import { randomUUID } from "node:crypto";
import { status as Status, type ServiceError } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { richServiceError, STATUS_DETAILS_KEY, type FieldViolation, type RichErrorDetails } from "../../clients/grpc/rich-error.js";
import { Status as RpcStatus } from "../../gen/google/rpc/status.js";

/** Options every domain error takes. */
export interface ErrorOptions {
  /** Stable UPPER_SNAKE reason for machines (ErrorInfo.reason), e.g. "TICKET_EXPIRED". */
  reason?: string;
  /** ErrorInfo.domain; default "switchyard". */
  domain?: string;
  /** ErrorInfo.metadata: small string facts a client may act on (never secrets). */
  metadata?: Record<string, string>;
  /** Fields that were wrong (BadRequest). */
  fieldViolations?: FieldViolation[];
  /** When a retry after this delay can succeed (RetryInfo), in ms. */
  retryDelayMs?: number;
  /** Failed preconditions (PreconditionFailure). */
  preconditionViolations?: { type: string; subject: string; description: string }[];
  /** The resource concerned (ResourceInfo). */
  resourceInfo?: { resourceType: string; resourceName: string; description?: string };
  /** The underlying error, kept for the log only. */
  cause?: unknown;
}

/** Base class of every error a handler may throw on purpose. */
export abstract class SwitchyardError extends Error {
  /** The gRPC status code this error maps to. */
  abstract readonly code: Status;
  readonly reason: string;
  readonly domain: string;
  readonly details: RichErrorDetails;

  constructor(message: string, opts: ErrorOptions = {}, defaultReason = "ERROR") {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.reason = opts.reason ?? defaultReason;
    this.domain = opts.domain ?? "switchyard";
    this.details = {
      errorInfo: { reason: this.reason, domain: this.domain, metadata: opts.metadata ?? {} },
      ...(opts.fieldViolations ? { fieldViolations: opts.fieldViolations } : {}),
      ...(opts.retryDelayMs !== undefined ? { retryDelayMs: opts.retryDelayMs } : {}),
      ...(opts.preconditionViolations ? { preconditionViolations: opts.preconditionViolations } : {}),
      ...(opts.resourceInfo ? { resourceInfo: opts.resourceInfo } : {}),
    };
  }

  /** The status + details this error is sent as. */
  toServiceError(): ServiceError {
    return richServiceError(this.code, this.message, this.details);
  }
}

/** A request field is invalid (INVALID_ARGUMENT + BadRequest). */
export class InvalidArgumentError extends SwitchyardError {
  readonly code = Status.INVALID_ARGUMENT;
  constructor(message: string, opts: ErrorOptions = {}) {
    super(message, opts, "INVALID_ARGUMENT");
  }
  /** One bad field: message and BadRequest say which and why. */
  static field(field: string, description: string, opts: ErrorOptions = {}): InvalidArgumentError {
    return new InvalidArgumentError(`${field}: ${description}`, {
      ...opts,
      fieldViolations: [...(opts.fieldViolations ?? []), { field, description }],
    });
  }
}
/** The named thing does not exist (NOT_FOUND). */
export class NotFoundError extends SwitchyardError {
  readonly code = Status.NOT_FOUND;
  constructor(message: string, opts: ErrorOptions = {}) {
    super(message, opts, "NOT_FOUND");
  }
}
/** The thing to create exists already (ALREADY_EXISTS). */
export class AlreadyExistsError extends SwitchyardError {
  readonly code = Status.ALREADY_EXISTS;
  constructor(message: string, opts: ErrorOptions = {}) {
    super(message, opts, "ALREADY_EXISTS");
  }
}
/** The system is not in a state for this call; do not retry as is (FAILED_PRECONDITION). */
export class FailedPreconditionError extends SwitchyardError {
  readonly code = Status.FAILED_PRECONDITION;
  constructor(message: string, opts: ErrorOptions = {}) {
    super(message, opts, "FAILED_PRECONDITION");
  }
}
/** The caller may not do this (PERMISSION_DENIED). */
export class PermissionDeniedError extends SwitchyardError {
  readonly code = Status.PERMISSION_DENIED;
  constructor(message: string, opts: ErrorOptions = {}) {
    super(message, opts, "PERMISSION_DENIED");
  }
}
/** The caller's credentials are missing or invalid (UNAUTHENTICATED). */
export class UnauthenticatedError extends SwitchyardError {
  readonly code = Status.UNAUTHENTICATED;
  constructor(message: string, opts: ErrorOptions = {}) {
    super(message, opts, "UNAUTHENTICATED");
  }
}
/** Out of capacity or quota; set retryDelayMs when waiting helps (RESOURCE_EXHAUSTED). */
export class ResourceExhaustedError extends SwitchyardError {
  readonly code = Status.RESOURCE_EXHAUSTED;
  constructor(message: string, opts: ErrorOptions = {}) {
    super(message, opts, "RESOURCE_EXHAUSTED");
  }
}
/** Transient: a dependency is down or the node is shutting down (UNAVAILABLE). */
export class UnavailableError extends SwitchyardError {
  readonly code = Status.UNAVAILABLE;
  constructor(message: string, opts: ErrorOptions = {}) {
    super(message, opts, "UNAVAILABLE");
  }
}
/** A concurrency conflict; retry the whole read-modify-write (ABORTED). */
export class AbortedError extends SwitchyardError {
  readonly code = Status.ABORTED;
  constructor(message: string, opts: ErrorOptions = {}) {
    super(message, opts, "ABORTED");
  }
}
/** A value is past a valid range, e.g. reading beyond the end (OUT_OF_RANGE). */
export class OutOfRangeError extends SwitchyardError {
  readonly code = Status.OUT_OF_RANGE;
  constructor(message: string, opts: ErrorOptions = {}) {
    super(message, opts, "OUT_OF_RANGE");
  }
}
/** The work did not finish in time (DEADLINE_EXCEEDED). */
export class DeadlineExceededError extends SwitchyardError {
  readonly code = Status.DEADLINE_EXCEEDED;
  constructor(message: string, opts: ErrorOptions = {}) {
    super(message, opts, "DEADLINE_EXCEEDED");
  }
}
/** The operation is not supported here (UNIMPLEMENTED). */
export class UnimplementedError extends SwitchyardError {
  readonly code = Status.UNIMPLEMENTED;
  constructor(message: string, opts: ErrorOptions = {}) {
    super(message, opts, "UNIMPLEMENTED");
  }
}
/** Stored or transferred data is lost or corrupt (DATA_LOSS). */
export class DataLossError extends SwitchyardError {
  readonly code = Status.DATA_LOSS;
  constructor(message: string, opts: ErrorOptions = {}) {
    super(message, opts, "DATA_LOSS");
  }
}
/** The call was cancelled, usually by the caller (CANCELLED). */
export class CancelledError extends SwitchyardError {
  readonly code = Status.CANCELLED;
  constructor(message: string, opts: ErrorOptions = {}) {
    super(message, opts, "CANCELLED");
  }
}

/**
 * The error boundary: maps anything a handler threw to the ServiceError sent to the
 * client. Unknown errors are logged with an id and answered UNKNOWN with that id only.
 */
export function toServiceError(err: unknown, log: Logger, method: string): ServiceError {
  if (err instanceof SwitchyardError) {
    if (err.cause !== undefined) log.warn({ err: err.cause, method, reason: err.reason }, err.message);
    return err.toServiceError();
  }
  const errorId = randomUUID();
  log.error({ err, method, errorId }, "unhandled error in handler");
  return richServiceError(Status.UNKNOWN, `internal error (error id ${errorId})`, {
    errorInfo: { reason: "INTERNAL_ERROR", domain: "switchyard", metadata: { errorId } },
  });
}

/**
 * The google.rpc.Status a handler error would have produced as a call's status and
 * details trailer: for answers that carry a status inside a message (an error per
 * request on a stream: PassOn, GetPieces).
 */
export function rpcStatusFromError(err: unknown, log: Logger, method: string): RpcStatus {
  const se = toServiceError(err, log, method);
  const raw = se.metadata?.get(STATUS_DETAILS_KEY)[0];
  let details: RpcStatus["details"] = [];
  if (raw instanceof Buffer) {
    try {
      details = RpcStatus.decode(raw).details;
    } catch {
      details = [];
    }
  }
  return { code: se.code ?? Status.UNKNOWN, message: se.details ?? se.message, details };
}
