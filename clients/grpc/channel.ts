/**
 * Channel settings shared by every Switchyard client and by servers that call other
 * servers: credentials (TLS / mTLS), keepalive, message-size limits, load balancing and a
 * default deadline for unary calls.
 */
import { readFileSync } from "node:fs";
import {
  credentials,
  InterceptingCall,
  type ChannelCredentials,
  type ChannelOptions,
  type Client,
  type Interceptor,
} from "@grpc/grpc-js";

/** TLS settings of a client. Unset: plaintext. */
export interface ClientTls {
  /** PEM file with the CA that signed the server's certificate. */
  caFile?: string;
  /** PEM certificate presented to the server for mTLS. Needs `keyFile`. */
  certFile?: string;
  /** PEM private key for `certFile`. */
  keyFile?: string;
  /** Expected server name when it differs from the dialled host (tests, IP targets). */
  serverNameOverride?: string;
}

/** How a client talks to a server. Every field has a default. */
export interface ChannelSettings {
  /** TLS; unset means plaintext. */
  tls?: ClientTls;
  /** Deadline given to unary calls that set none, in ms. Default 10 000. 0 disables. */
  defaultDeadlineMs?: number;
  /** Keepalive ping interval in ms. Default 30 000. */
  keepaliveTimeMs?: number;
  /** Wait for a keepalive ack before closing the connection, in ms. Default 10 000. */
  keepaliveTimeoutMs?: number;
  /** Largest message the client accepts, in bytes. Default 16 MiB. */
  maxReceiveMessageBytes?: number;
  /** Largest message the client sends, in bytes. Default 16 MiB. */
  maxSendMessageBytes?: number;
  /** Load-balancing policy across the target's addresses. Default "pick_first". */
  loadBalancing?: "pick_first" | "round_robin";
  /** Extra raw grpc-js channel options (merged last). */
  extra?: ChannelOptions;
}

/** Default unary deadline when a caller sets none. */
export const DEFAULT_DEADLINE_MS = 10_000;

/** Builds channel credentials from TLS settings (plaintext when unset). */
export function channelCredentials(tls: ClientTls | undefined): ChannelCredentials {
  if (!tls) return credentials.createInsecure();
  const ca = tls.caFile ? readFileSync(tls.caFile) : null;
  const cert = tls.certFile ? readFileSync(tls.certFile) : null;
  const key = tls.keyFile ? readFileSync(tls.keyFile) : null;
  return credentials.createSsl(ca, key, cert);
}

/** The grpc-js channel options for these settings. */
export function channelOptions(s: ChannelSettings = {}): ChannelOptions {
  const opts: ChannelOptions = {
    "grpc.keepalive_time_ms": s.keepaliveTimeMs ?? 30_000,
    "grpc.keepalive_timeout_ms": s.keepaliveTimeoutMs ?? 10_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.max_receive_message_length": s.maxReceiveMessageBytes ?? 16 * 1024 * 1024,
    "grpc.max_send_message_length": s.maxSendMessageBytes ?? 16 * 1024 * 1024,
    "grpc.service_config": JSON.stringify({
      loadBalancingConfig: [{ [s.loadBalancing ?? "pick_first"]: {} }],
    }),
  };
  if (s.tls?.serverNameOverride) opts["grpc.ssl_target_name_override"] = s.tls.serverNameOverride;
  return { ...opts, ...s.extra };
}

/**
 * A client interceptor that gives unary and client-streaming calls a deadline when the
 * caller set none. Server-streaming and bidi calls are long-lived by design and keep none.
 */
export function defaultDeadlineInterceptor(ms: number): Interceptor {
  return (options, nextCall) => {
    const def = options.method_definition;
    if (ms > 0 && options.deadline === undefined && !def.responseStream) {
      options = { ...options, deadline: Date.now() + ms };
    }
    return new InterceptingCall(nextCall(options));
  };
}

/** A generated grpc-js client class (ts-proto `XServiceClient`). */
export type ClientConstructor<C extends Client> = new (
  address: string,
  creds: ChannelCredentials,
  options?: Partial<ChannelOptions>,
) => C;

/**
 * Opens a client of a generated service. `target` is "host:port", a comma list
 * ("ipv4:127.0.0.1:1,127.0.0.1:2") or any grpc-js target.
 */
export function dial<C extends Client>(Ctor: ClientConstructor<C>, target: string, s: ChannelSettings = {}): C {
  const options: ChannelOptions = {
    ...channelOptions(s),
    interceptors: [defaultDeadlineInterceptor(s.defaultDeadlineMs ?? DEFAULT_DEADLINE_MS)],
  };
  return new Ctor(target, channelCredentials(s.tls), options);
}

/** Milliseconds left before `deadline`, or Infinity when there is none. */
export function remainingMs(deadline: Date | number | undefined): number {
  if (deadline === undefined) return Infinity;
  const t = typeof deadline === "number" ? deadline : deadline.getTime();
  return Number.isFinite(t) ? t - Date.now() : Infinity;
}
