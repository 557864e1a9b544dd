/**
 * Named errors of the Reception subsystem. Each maps to one gRPC status and a stable
 * ErrorInfo reason in the domain "switchyard.reception" (see the proto comments).
 */
import {
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  UnavailableError,
  type ErrorOptions,
} from "../runtime/errors.js";

/** ErrorInfo domain of every Reception error. */
export const DOMAIN = "switchyard.reception";

const opts = (reason: string, o: ErrorOptions = {}): ErrorOptions => ({ ...o, reason, domain: DOMAIN });

/** The token is empty, truncated, too long or not a ticket token at all. */
export class TicketMalformedError extends InvalidArgumentError {
  constructor(description: string) {
    super(`token: ${description}`, opts("TICKET_MALFORMED", { fieldViolations: [{ field: "token", description }] }));
  }
}
/** Authentication of the sealed claims failed: forged or altered. */
export class TicketNotAuthenticError extends UnauthenticatedError {
  constructor() {
    super("ticket is not authentic (forged or altered)", opts("TICKET_NOT_AUTHENTIC"));
  }
}
/** The token names a key id this server does not hold. */
export class TicketKeyUnknownError extends UnauthenticatedError {
  constructor(keyId: string) {
    super(`ticket was sealed with unknown key id "${keyId}"`, opts("TICKET_KEY_UNKNOWN", { metadata: { key_id: keyId } }));
  }
}
/** The ticket's validity window is over. */
export class TicketExpiredError extends UnauthenticatedError {
  constructor(notAfter: Date) {
    super(`ticket expired at ${notAfter.toISOString()}`, opts("TICKET_EXPIRED", { metadata: { not_after: notAfter.toISOString() } }));
  }
}
/** The ticket's validity window has not begun; retrying after RetryInfo succeeds. */
export class TicketNotYetValidError extends FailedPreconditionError {
  constructor(notBefore: Date, waitMs: number) {
    super(`ticket is valid from ${notBefore.toISOString()}`, opts("TICKET_NOT_YET_VALID", { retryDelayMs: waitMs, metadata: { not_before: notBefore.toISOString() } }));
  }
}
/** The ticket was issued for another content server. */
export class TicketWrongServerError extends PermissionDeniedError {
  constructor(ticketServer: string, self: string) {
    super(`ticket is for content server "${ticketServer}", this is "${self}"`, opts("TICKET_WRONG_SERVER", { metadata: { ticket_server_id: ticketServer } }));
  }
}
/** The ticket was issued to another client identity or address. */
export class TicketClientMismatchError extends PermissionDeniedError {
  constructor(what: "identity" | "address") {
    super(`ticket was issued to another client ${what}`, opts("TICKET_CLIENT_MISMATCH", { metadata: { mismatch: what } }));
  }
}
/** The order of this ticket was completed: a ticket is used once. */
export class TicketAlreadyUsedError extends FailedPreconditionError {
  constructor(ticketId: string) {
    super(`ticket ${ticketId} was used already`, opts("TICKET_ALREADY_USED", { metadata: { ticket_id: ticketId } }));
  }
}
/** Another fetch with the same ticket is running. */
export class TicketInUseError extends FailedPreconditionError {
  constructor(ticketId: string) {
    super(`ticket ${ticketId} is being used by another fetch`, opts("TICKET_IN_USE", { metadata: { ticket_id: ticketId } }));
  }
}
/** A request field is invalid. */
export function invalidField(field: string, description: string, reason: string): InvalidArgumentError {
  return InvalidArgumentError.field(field, description, { reason, domain: DOMAIN });
}
/** No content server known to the reception carries the item. */
export class ItemNotFoundError extends NotFoundError {
  constructor(itemId: string) {
    super(`no content server carries item "${itemId}"`, opts("ITEM_NOT_FOUND", { resourceInfo: { resourceType: "switchyard.reception.v1.CatalogItem", resourceName: itemId } }));
  }
}
/** Every server carrying the item is at capacity; come back after the estimate. */
export class AllServersBusyError extends ResourceExhaustedError {
  constructor(itemId: string, position: number, waitMs: number, retryMs: number) {
    super(`every content server carrying "${itemId}" is at capacity; ${position} client(s) ahead, estimated wait ${(waitMs / 1000).toFixed(1)} s`, opts("ALL_SERVERS_BUSY", {
      retryDelayMs: retryMs,
      metadata: { queue_position: String(position), estimated_wait_ms: String(Math.round(waitMs)) },
    }));
  }
}
/** Servers carry the item but none reports now. */
export class NoServerAvailableError extends UnavailableError {
  constructor(itemId: string, retryMs: number) {
    super(`no content server carrying "${itemId}" is reporting right now`, opts("NO_SERVER_AVAILABLE", { retryDelayMs: retryMs }));
  }
}
/** The content server is full (only when several receptions race). */
export class ServerAtCapacityError extends ResourceExhaustedError {
  constructor(retryMs: number) {
    super("content server is at capacity; place the order again", opts("SERVER_AT_CAPACITY", { retryDelayMs: retryMs }));
  }
}
/** The server id is unknown to the reception. */
export class ServerNotFoundError extends NotFoundError {
  constructor(serverId: string) {
    super(`no content server "${serverId}" is known`, opts("SERVER_NOT_FOUND", { resourceInfo: { resourceType: "switchyard.reception.v1.ContentServer", resourceName: serverId } }));
  }
}
/** The catalog item is absent on this content server. */
export class CatalogItemNotFoundError extends NotFoundError {
  constructor(itemId: string) {
    super(`item "${itemId}" is not in this server's catalog`, opts("ITEM_NOT_FOUND", { resourceInfo: { resourceType: "switchyard.reception.v1.CatalogItem", resourceName: itemId } }));
  }
}
