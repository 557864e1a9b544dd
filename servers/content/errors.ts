/** Named errors of the content subsystem (ErrorInfo domain "switchyard.content"). */
import {
  DataLossError as BaseDataLoss,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  UnavailableError,
  type ErrorOptions,
} from "../runtime/errors.js";

/** ErrorInfo domain of every content error. */
export const DOMAIN = "switchyard.content";

const d = (opts: ErrorOptions): ErrorOptions => ({ domain: DOMAIN, ...opts });

/** A request field is invalid. */
export function badField(field: string, description: string, reason = "INVALID_FIELD"): InvalidArgumentError {
  return InvalidArgumentError.field(field, description, d({ reason }));
}

/** No token, unknown token, or a grant that does not verify. */
export class ContentAuthError extends UnauthenticatedError {
  constructor(message: string, reason: string) {
    super(message, d({ reason }));
  }
}

/** The caller is known but may not do this. */
export class ContentPermissionError extends PermissionDeniedError {
  constructor(message: string, reason: string) {
    super(message, d({ reason }));
  }
}

/** A content, piece or node that does not exist. */
export class ContentNotFoundError extends NotFoundError {
  constructor(kind: "content" | "piece" | "node", name: string, reason = `${kind.toUpperCase()}_NOT_FOUND`) {
    super(`${kind} ${name} not found`, d({ reason, resourceInfo: { resourceType: `switchyard.content.v1.${kind}`, resourceName: name } }));
  }
}

/** Not enough nodes with room and rank for a piece. */
export class NoPlacementError extends ResourceExhaustedError {
  constructor(message: string, retryDelayMs?: number) {
    super(message, d({ reason: "NO_PLACEMENT", ...(retryDelayMs !== undefined ? { retryDelayMs } : {}) }));
  }
}

/** A distribution node is out of space. */
export class NodeFullError extends ResourceExhaustedError {
  constructor(message: string) {
    super(message, d({ reason: "NODE_FULL" }));
  }
}

/** A node or peer could not be reached; retrying later can succeed. */
export class NodeUnavailableError extends UnavailableError {
  constructor(message: string, cause?: unknown) {
    super(message, d({ reason: "NODE_UNAVAILABLE", retryDelayMs: 1000, cause }));
  }
}

/** Removing a node would leave pieces under their minimum replica count. */
export class WouldUnderReplicateError extends FailedPreconditionError {
  constructor(message: string, pieces: string[]) {
    super(
      message,
      d({
        reason: "WOULD_UNDER_REPLICATE",
        preconditionViolations: pieces.map((p) => ({ type: "MIN_REPLICAS", subject: `pieces/${p}`, description: "would fall below the minimum replica count" })),
      }),
    );
  }
}

/** Another precondition of the content system failed. */
export class ContentPreconditionError extends FailedPreconditionError {
  constructor(message: string, reason: string) {
    super(message, d({ reason }));
  }
}

/** Stored bytes no longer match their hash. */
export class PieceCorruptError extends BaseDataLoss {
  constructor(message: string) {
    super(message, d({ reason: "PIECE_CORRUPT" }));
  }
}
