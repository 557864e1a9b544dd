/** Config and helpers both relay roles share. */
import { z } from "zod";
import type { CallContext } from "../runtime/service.js";
import { badField } from "./errors.js";

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

/**
 * Who a subscriber is, for usage records: the verified client-certificate CN under mTLS,
 * else the declared subscriber_id, else "anonymous@<peer>".
 */
export function subscriberIdentity(declared: string, call: CallContext): { id: string; peer: string } {
  if (declared.length > 128) throw badField("subscriber_id", "at most 128 characters", "SUBSCRIBER_ID_TOO_LONG");
  const cn = call.peerCertificate?.subject?.["CN"];
  const id = typeof cn === "string" && cn ? cn : declared || `anonymous@${call.peer}`;
  return { id, peer: call.peer };
}
