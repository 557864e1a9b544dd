/** Named errors of the pass-on subsystem (ErrorInfo domain "switchyard.passon"). */
import type { status as Status } from "@grpc/grpc-js";
import type { RichStatus } from "../../clients/grpc/rich-error.js";
import {
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  SwitchyardError,
  UnauthenticatedError,
  UnavailableError,
  AbortedError,
} from "../runtime/errors.js";

/** ErrorInfo domain of every pass-on error. */
export const DOMAIN = "switchyard.passon";

/** No node up the hierarchy serves the app. */
export class AppNotFoundError extends NotFoundError {
  constructor(app: string, nodeId: string) {
    super(`no node serves app "${app}" (asked up the hierarchy from ${nodeId})`, {
      reason: "APP_NOT_FOUND",
      domain: DOMAIN,
      metadata: { app },
      resourceInfo: { resourceType: "switchyard.passon.v1.App", resourceName: app },
    });
  }
}

/** The request had to be passed on and the parent cannot be reached. */
export class ParentUnreachableError extends UnavailableError {
  constructor(what: string, parent: string, cause?: unknown) {
    super(`${what} has to be passed on to the parent (${parent}), which is unreachable`, {
      reason: "PARENT_UNREACHABLE",
      domain: DOMAIN,
      metadata: { parent },
      retryDelayMs: 1000,
      cause,
    });
  }
}

/** The session token is missing, forged, from an unknown issuer or expired. */
export class TokenError extends UnauthenticatedError {
  constructor(message: string, reason: "TOKEN_INVALID" | "TOKEN_EXPIRED") {
    super(message, { reason, domain: DOMAIN });
  }
}

/** Wrong password or unknown user. */
export class BadCredentialsError extends UnauthenticatedError {
  constructor() {
    super("unknown user or wrong password", { reason: "BAD_CREDENTIALS", domain: DOMAIN });
  }
}

/** The user may not use the app. */
export class NotEntitledError extends PermissionDeniedError {
  constructor(user: string, app: string) {
    super(`user ${user} is not entitled to app "${app}"`, { reason: "APP_NOT_ENTITLED", domain: DOMAIN, metadata: { app, user } });
  }
}

/** The app ran past its time limit and was stopped. */
export class AppTimeLimitError extends DeadlineExceededError {
  constructor(app: string, message: string) {
    super(`app "${app}" ${message}; it was stopped`, { reason: "APP_TIME_LIMIT", domain: DOMAIN, metadata: { app } });
  }
}

/** The app needed more memory than its limit. */
export class AppMemoryLimitError extends ResourceExhaustedError {
  constructor(app: string, message: string) {
    super(`app "${app}" exceeded its memory limit: ${message}`, { reason: "APP_MEMORY_LIMIT", domain: DOMAIN, metadata: { app } });
  }
}

/** The app trapped (a bug in the module, or an ABI violation). */
export class AppTrappedError extends SwitchyardError {
  readonly code = 13 as Status; // INTERNAL: the app's own invariant broke, not the caller's request.
  constructor(app: string, message: string) {
    super(`app "${app}" trapped: ${message}`, { reason: "APP_TRAPPED", domain: DOMAIN, metadata: { app } }, "APP_TRAPPED");
  }
}

/** The app returned a non-zero code from `handle`. */
export class AppErrorCode extends AbortedError {
  constructor(app: string, code: number) {
    super(`app "${app}" failed with code ${code}`, { reason: "APP_ERROR", domain: DOMAIN, metadata: { app, appCode: String(code) } });
  }
}

/** A bundle is unsigned, signed by an untrusted key, or altered. */
export class SignatureError extends FailedPreconditionError {
  constructor(app: string, why: string) {
    super(`app "${app}" refused: ${why}`, { reason: "APP_SIGNATURE_INVALID", domain: DOMAIN, metadata: { app } });
  }
}

/** A new version failed its load check; the previous version keeps running. */
export class LoadCheckError extends FailedPreconditionError {
  constructor(app: string, version: number, why: string, runningVersion: number) {
    super(
      `app "${app}" v${version} failed its load check (${why}); ${runningVersion ? `v${runningVersion} keeps running (rolled back)` : "nothing installed"}`,
      { reason: "APP_LOAD_CHECK_FAILED", domain: DOMAIN, metadata: { app, version: String(version), running: String(runningVersion) } },
    );
  }
}

/** Invalid request field helper with the pass-on domain. */
export function badField(field: string, description: string, reason = "INVALID_FIELD"): InvalidArgumentError {
  return InvalidArgumentError.field(field, description, { reason, domain: DOMAIN });
}

/** A status received from another node, forwarded unchanged to our caller. */
export class ForwardedError extends SwitchyardError {
  readonly code: Status;
  constructor(st: RichStatus) {
    super(st.message, {
      reason: st.errorInfo?.reason ?? "FORWARDED",
      domain: st.errorInfo?.domain ?? DOMAIN,
      metadata: st.errorInfo?.metadata ?? {},
      ...(st.fieldViolations ? { fieldViolations: st.fieldViolations } : {}),
      ...(st.retryDelayMs !== undefined ? { retryDelayMs: st.retryDelayMs } : {}),
      ...(st.resourceInfo ? { resourceInfo: { resourceType: st.resourceInfo.resourceType, resourceName: st.resourceInfo.resourceName } } : {}),
    });
    this.code = st.code;
  }
}

export { FailedPreconditionError, NotFoundError, UnavailableError };
