/**
 * Named errors of the print subsystem, with stable ErrorInfo reasons in domain
 * "switchyard.print". Handlers throw these; the runtime's boundary maps them to status +
 * google.rpc details.
 */
import {
  AlreadyExistsError,
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  SwitchyardError,
  UnavailableError,
  type ErrorOptions,
} from "../runtime/errors.js";
import { status as Status } from "@grpc/grpc-js";
import { parseRichError } from "../../clients/grpc/rich-error.js";

/** ErrorInfo domain of every print error. */
export const PRINT_DOMAIN = "switchyard.print";

const d = (opts: ErrorOptions): ErrorOptions => ({ domain: PRINT_DOMAIN, ...opts });

/** A bad field of a print request. */
export function badField(field: string, description: string, reason = "INVALID_ARGUMENT"): InvalidArgumentError {
  return InvalidArgumentError.field(field, description, d({ reason }));
}

/** A session exists already (IssueToken twice). */
export class SessionExistsError extends AlreadyExistsError {
  constructor(key: string) {
    super(`session ${key} exists already; a live session cannot be issued a second token`, d({ reason: "SESSION_EXISTS", metadata: { session: key } }));
  }
}

/** The store has no such session (store-side). */
export class SessionNotFoundError extends NotFoundError {
  constructor(key: string) {
    super(`no session ${key}`, d({ reason: "SESSION_NOT_FOUND", metadata: { session: key } }));
  }
}

/** A worker step for a session the store does not know (the seed's error branch). */
export class UnknownSessionError extends FailedPreconditionError {
  constructor(key: string, step: string) {
    super(`${step}: no session ${key}; call IssueToken first (or the session was completed or expired)`, d({ reason: "SESSION_NOT_FOUND", metadata: { session: key, step } }));
  }
}

/** Convert before Download. */
export class DocumentNotDownloadedError extends FailedPreconditionError {
  constructor(key: string) {
    super(`session ${key} has no downloaded document; call Download first`, d({ reason: "DOCUMENT_NOT_DOWNLOADED", metadata: { session: key } }));
  }
}

/** A result id the store does not know (the seed's 識別ID異常). */
export class ResultNotFoundError extends NotFoundError {
  constructor(resultId: string) {
    super(`no converted result ${resultId}`, d({ reason: "RESULT_NOT_FOUND", metadata: { resultId } }));
  }
}

/** The printer presented a token that is not the result's. */
export class TokenInvalidError extends UnauthenticatedError {
  constructor() {
    super("the token does not match this result", d({ reason: "TOKEN_INVALID" }));
  }
}

/** The printer presented an expired token. */
export class TokenExpiredError extends UnauthenticatedError {
  constructor(expiredAt: Date) {
    super(`the token expired at ${expiredAt.toISOString()}`, d({ reason: "TOKEN_EXPIRED", metadata: { expiredAt: expiredAt.toISOString() } }));
  }
}

/** Why a download failed, with the status that fits each cause. */
export const DownloadErrors = {
  urlInvalid: (why: string) => badField("url", why, "URL_INVALID"),
  scheme: (scheme: string) => badField("url", `scheme ${scheme} is not allowed; use http or https`, "URL_SCHEME_NOT_ALLOWED"),
  forbidden: (host: string, address: string) =>
    new PermissionDeniedError(`${host} resolves to ${address}, a private or loopback address that is not allow-listed`, d({ reason: "URL_NOT_ALLOWED", metadata: { host, address } })),
  httpStatus: (status: number) =>
    new FailedPreconditionError(`download failed: the server answered HTTP ${status}`, d({ reason: "DOWNLOAD_FAILED", metadata: { httpStatus: String(status) } })),
  unreachable: (why: string, cause?: unknown) => new UnavailableError(`download failed: ${why}`, d({ reason: "DOWNLOAD_FAILED", cause, retryDelayMs: 1000 })),
  timeout: (ms: number) => new DeadlineExceededError(`download did not finish in ${ms} ms`, d({ reason: "DOWNLOAD_TIMEOUT" })),
  tooLarge: (limit: number) =>
    new ResourceExhaustedError(`document is larger than the limit of ${limit} bytes`, d({ reason: "DOCUMENT_TOO_LARGE", metadata: { limitBytes: String(limit) } })),
  redirects: (n: number) => new FailedPreconditionError(`more than ${n} redirects`, d({ reason: "TOO_MANY_REDIRECTS" })),
};

/** Why a conversion failed. */
export const ConvertErrors = {
  corrupt: (why: string) => new InvalidArgumentError(`the document is not a readable PDF: ${why}`, d({ reason: "DOCUMENT_CORRUPT" })),
  passwordRequired: () => new FailedPreconditionError("the PDF is encrypted; set settings.password", d({ reason: "PASSWORD_REQUIRED" })),
  passwordIncorrect: () => new PermissionDeniedError("the password in settings.password does not open the PDF", d({ reason: "PASSWORD_INCORRECT" })),
  printingNotAllowed: () => new PermissionDeniedError("the PDF's permissions forbid printing", d({ reason: "PRINTING_NOT_ALLOWED" })),
  tooManyPages: (n: number, max: number) =>
    new ResourceExhaustedError(`the document has ${n} pages; the limit is ${max}`, d({ reason: "TOO_MANY_PAGES", metadata: { pages: String(n), maxPages: String(max) } })),
  pageTooLarge: (page: number, px: number, max: number) =>
    new ResourceExhaustedError(`page ${page} would be ${px} pixels at this resolution; the limit is ${max}`, d({ reason: "PAGE_TOO_LARGE", metadata: { page: String(page), pixels: String(px), maxPixels: String(max) } })),
  timeout: (page: number, ms: number) =>
    new DeadlineExceededError(`page ${page} did not render in ${ms} ms`, d({ reason: "PAGE_RENDER_TIMEOUT", metadata: { page: String(page), timeoutMs: String(ms) } })),
  memory: (page: number) =>
    new ResourceExhaustedError(`rendering page ${page} exceeded the renderer's memory limit`, d({ reason: "RENDER_MEMORY_LIMIT", metadata: { page: String(page) } })),
  busy: () => new UnavailableError("the render pool is shutting down", d({ reason: "RENDER_POOL_BUSY", retryDelayMs: 1000 })),
};

/** An error a peer (the print store) answered, passed on with its code and reason. */
export class PeerError extends SwitchyardError {
  readonly code: Status;
  constructor(code: Status, message: string, opts: ErrorOptions) {
    super(message, opts, "PEER_ERROR");
    this.code = code;
  }
}

/**
 * Maps an error from a print-store call made during `step` of session `key` to what the
 * worker answers: an unknown session becomes FAILED_PRECONDITION (the seed's error branch),
 * an unreachable store UNAVAILABLE, anything else keeps its code and reason.
 */
export function fromStoreError(err: unknown, step: string, key: string): SwitchyardError {
  if (err instanceof SwitchyardError) return err;
  const st = parseRichError(err);
  const reason = st.errorInfo?.reason;
  if (st.code === Status.NOT_FOUND && reason === "SESSION_NOT_FOUND") return new UnknownSessionError(key, step);
  if (st.code === Status.ALREADY_EXISTS && reason === "SESSION_EXISTS") return new SessionExistsError(key);
  if (st.code === Status.UNAVAILABLE || st.code === Status.DEADLINE_EXCEEDED || st.code === Status.UNKNOWN && !reason) {
    return new UnavailableError(`${step}: the print store is unavailable: ${st.message}`, d({ reason: "STORE_UNAVAILABLE", retryDelayMs: 1000, cause: err }));
  }
  return new PeerError(st.code, st.message, d({ reason: reason ?? "STORE_ERROR", metadata: st.errorInfo?.metadata ?? {}, ...(st.fieldViolations ? { fieldViolations: st.fieldViolations } : {}) }));
}
