/**
 * Named errors of the Relay subsystem (ErrorInfo domain "switchyard.relay"), and the
 * wrapper that passes an upstream's status on unchanged, so a subscriber of a relay sees
 * exactly what a subscriber of the source would.
 */
import { Metadata, status as Status, type ServiceError } from "@grpc/grpc-js";
import { parseRichError, STATUS_DETAILS_KEY } from "../../clients/grpc/rich-error.js";
import {
  AlreadyExistsError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  SwitchyardError,
  UnavailableError,
} from "../runtime/errors.js";

/** ErrorInfo domain of every relay error. */
export const RELAY_DOMAIN = "switchyard.relay";

/** Delay subscribers are told to wait before resubscribing after a lost upstream. */
export const RESUBSCRIBE_DELAY_MS = 1000;

/** A request field is invalid. */
export function badField(field: string, description: string, reason: string): InvalidArgumentError {
  return InvalidArgumentError.field(field, description, { reason, domain: RELAY_DOMAIN });
}

/** No live stream of that name. */
export class StreamNotFoundError extends NotFoundError {
  constructor(stream: string) {
    super(`no live stream named ${JSON.stringify(stream)}`, {
      reason: "STREAM_NOT_FOUND",
      domain: RELAY_DOMAIN,
      metadata: { stream },
      resourceInfo: { resourceType: "switchyard.relay.v1.Stream", resourceName: stream },
    });
  }
}

/** Another publisher (or a generator) owns the stream name. */
export class StreamAlreadyPublishedError extends AlreadyExistsError {
  constructor(stream: string) {
    super(`stream ${JSON.stringify(stream)} already has a publisher`, {
      reason: "STREAM_ALREADY_PUBLISHED",
      domain: RELAY_DOMAIN,
      metadata: { stream },
    });
  }
}

/** Under mTLS, a client certificate not listed in relayIdentities tried to act as a relay. */
export class RelayIdentityNotTrustedError extends PermissionDeniedError {
  constructor(cn: string, action: string) {
    super(`the client certificate ${JSON.stringify(cn)} may not ${action} here: its CN is not listed in relayIdentities`, {
      reason: "RELAY_IDENTITY_NOT_TRUSTED",
      domain: RELAY_DOMAIN,
      metadata: { certificate_cn: cn },
    });
  }
}

/** The publisher's call broke before it ended the stream. */
export class PublisherLostError extends UnavailableError {
  constructor(stream: string) {
    super(`the publisher of stream ${JSON.stringify(stream)} went away`, {
      reason: "PUBLISHER_LOST",
      domain: RELAY_DOMAIN,
      metadata: { stream },
      retryDelayMs: RESUBSCRIBE_DELAY_MS,
    });
  }
}

/** The subscriber read too slowly and its buffer overflowed (policy "disconnect"). */
export class SubscriberTooSlowError extends ResourceExhaustedError {
  constructor(stream: string, maxBufferedFrames: number) {
    super(`subscriber too slow: more than ${maxBufferedFrames} frames of stream ${JSON.stringify(stream)} waited for it`, {
      reason: "SUBSCRIBER_TOO_SLOW",
      domain: RELAY_DOMAIN,
      metadata: { stream, maxBufferedFrames: String(maxBufferedFrames) },
    });
  }
}

/** The relay's upstream could not be reached or its connection broke. */
export class UpstreamLostError extends UnavailableError {
  constructor(stream: string, upstream: string, cause?: unknown) {
    super(`upstream ${upstream} of stream ${JSON.stringify(stream)} is unavailable`, {
      reason: "UPSTREAM_LOST",
      domain: RELAY_DOMAIN,
      metadata: { stream },
      retryDelayMs: RESUBSCRIBE_DELAY_MS,
      cause,
    });
  }
}

/**
 * A status the upstream answered with, passed on as is (code, message and google.rpc
 * details), so that a relay answers like the source it relays.
 */
export class UpstreamStatusError extends SwitchyardError {
  readonly code: Status;
  private readonly original: ServiceError;

  constructor(original: ServiceError) {
    const st = parseRichError(original);
    super(st.message, { reason: st.errorInfo?.reason ?? "UPSTREAM_ERROR", domain: st.errorInfo?.domain ?? RELAY_DOMAIN });
    this.code = st.code;
    this.original = original;
  }

  override toServiceError(): ServiceError {
    const metadata = new Metadata();
    for (const v of this.original.metadata?.get(STATUS_DETAILS_KEY) ?? []) metadata.add(STATUS_DETAILS_KEY, v);
    const err = new Error(this.message) as ServiceError;
    err.code = this.code;
    err.details = this.message;
    err.metadata = metadata;
    return err;
  }
}

/**
 * The error to give subscribers (or callers) for an upstream failure: the upstream's own
 * status when it answered with one, UPSTREAM_LOST when the connection failed.
 */
export function upstreamFailure(err: unknown, stream: string, upstream: string): SwitchyardError {
  const e = err as Partial<ServiceError>;
  const fromServer = e?.metadata instanceof Metadata && e.metadata.get(STATUS_DETAILS_KEY).length > 0;
  if (fromServer && typeof e.code === "number") return new UpstreamStatusError(e as ServiceError);
  return new UpstreamLostError(stream, upstream, err);
}
