/** Config and helpers both relay roles share. */
import { z } from "zod";
import type { CallContext } from "../runtime/service.js";
import { badField, RelayIdentityNotTrustedError } from "./errors.js";

/** Fan-out options of a node's subscribers (spread into a role's config schema). */
export const fanoutSchema = {
  maxBufferedFrames: z
    .number()
    .int()
    .min(1)
    .max(1_000_000)
    .default(1024)
    .describe("frames that may wait for one slow subscriber before the policy applies; default 1024"),
  slowSubscriberPolicy: z
    .enum(["drop-oldest", "disconnect"])
    .default("drop-oldest")
    .describe('"drop-oldest" (drop, send a Gap) or "disconnect" (RESOURCE_EXHAUSTED); default drop-oldest'),
  fanoutSlice: z
    .number()
    .int()
    .min(0)
    .max(1_000_000)
    .default(128)
    .describe("subscribers a frame is written to per event-loop turn, so early ones' bytes leave while later ones are written; 0: all at once; default 128"),
  directWrites: z
    .boolean()
    .default(true)
    .describe("write subscribers' frames straight to their HTTP/2 streams (false: through grpc-js's stream writer); default true"),
};

/** Who may act as a relay at a node (spread into a role's config schema). */
export const relayTrustSchema = {
  relayIdentities: z
    .array(z.string().min(1).max(128))
    .default([])
    .describe(
      "client-certificate CNs (mTLS) of the relays that subscribe and report usage here: their subscriptions are hops, not metered, and only they may call ReportUsage; default none",
    ),
};

/** Prefix of the subscriber id a relay's own upstream subscription carries (transit, not billed). */
export const RELAY_ID_PREFIX = "relay:";

/** The verified client-certificate CN of a call (mTLS), if any. */
function certificateName(call: CallContext): string | undefined {
  const cn = call.peerCertificate?.subject?.["CN"];
  return typeof cn === "string" && cn ? cn : undefined;
}

/**
 * Who a subscriber is, for usage records:
 *  - under mTLS, the verified client-certificate CN; a CN listed in `relayIdentities` is a
 *    relay, `relay:<CN>`; an unlisted CN that itself begins with `relay:` is refused (a
 *    certificate cannot make its holder transit by its name);
 *  - without a client certificate, the declared subscriber_id (relays declare
 *    `relay:<id>`), else "anonymous@<peer>". Without mTLS every declared identity is taken
 *    on trust, this one included.
 */
export function subscriberIdentity(declared: string, call: CallContext, relays: ReadonlySet<string>): { id: string; peer: string } {
  if (declared.length > 128) throw badField("subscriber_id", "at most 128 characters", "SUBSCRIBER_ID_TOO_LONG");
  const cn = certificateName(call);
  if (cn === undefined) return { id: declared || `anonymous@${call.peer}`, peer: call.peer };
  if (relays.has(cn)) return { id: `${RELAY_ID_PREFIX}${cn}`, peer: call.peer };
  if (cn.startsWith(RELAY_ID_PREFIX)) throw new RelayIdentityNotTrustedError(cn, "subscribe as a relay");
  return { id: cn, peer: call.peer };
}

/**
 * ReportUsage is for relays: under mTLS only a caller whose certificate CN is listed in
 * `relayIdentities` may report (anyone else could write usage records for others).
 * Without a client certificate there is nothing to check (plaintext or TLS without mTLS).
 */
export function checkUsageReporter(call: CallContext, relays: ReadonlySet<string>): void {
  const cn = certificateName(call);
  if (cn !== undefined && !relays.has(cn)) throw new RelayIdentityNotTrustedError(cn, "report usage");
}
