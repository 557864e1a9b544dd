/**
 * Writing pre-framed gRPC messages straight to a server stream's HTTP/2 stream.
 *
 * grpc-js (1.14.x) writes each server-stream message through an object-mode Writable
 * (ServerWritableStreamImpl), every ServerInterceptingCall of the interceptor chain, and
 * BaseServerInterceptingCall.sendMessage, which allocates a fresh buffer of the message's
 * size + 5 and copies the message behind a new 5-byte prefix — then back up the same
 * layers with a callback per message. Two hot paths pay for that: the relay writes one
 * frame to 1,000 subscribers (1,000 copies and trips through every layer per frame), and
 * a distribution node serving MiB-sized chunks at loopback speed (the fresh external
 * memory makes V8 run a full mark-compact every few dozen MiB). `openDirectStream` lets
 * such a handler build a message once, prefix included, and write that buffer to the
 * HTTP/2 stream itself — the same bytes grpc-js would send, so any gRPC client (grpc-js,
 * grpcio, ...) reads an ordinary call. What grpc-js does around messages is kept:
 *  - response headers go out through the call's public `sendMetadata` (interceptors see
 *    them); the direct path is offered only when grpc-js sent them synchronously and has
 *    nothing of its own queued, so no byte can precede or overtake its writes;
 *  - interceptors: offered only when every ServerInterceptingCall of the chain has
 *    grpc-js's default sendMessage responder (an interceptor that looks at messages keeps
 *    the public path; the node's metrics interceptor watches start, cancel and status);
 *  - a cancelled call, or one whose HTTP/2 stream grpc-js already ended (status on its
 *    way: deadline, shutdown), is never written to, and nothing is called back — as with
 *    grpc-js's own sendMessage; the handler learns of it from its abort signal;
 *  - the status and trailers are still sent by grpc-js when the handler returns, after
 *    everything written to the HTTP/2 stream, in order.
 * Not kept: grpc-js's channelz "messages sent" counter does not count these messages.
 * Relied on (grpc-js internals, checked at runtime; anything unexpected and the caller
 * gets undefined and uses the public path): ServerWritableStreamImpl.call;
 * ServerInterceptingCall.nextCall and .responder.sendMessage; BaseServerInterceptingCall
 * .stream, .metadataSent, .maxSendMessageSize and .checkCancelled().
 */
import { Metadata, ServerInterceptingCall, type ServerDuplexStream, type ServerWritableStream } from "@grpc/grpc-js";

/** A call's HTTP/2 stream, taking complete gRPC messages (prefix included). */
export interface DirectStream {
  /**
   * Writes one framed message; false when the transport is over its high-water mark, or
   * when the call is over (then nothing was written and `done` never runs). `done` runs
   * once the transport is finished with the buffer (with an error if it failed).
   */
  write(framed: Buffer, done?: (err?: Error | null) => void): boolean;
  /** Writes and resolves once the transport drained below its high-water mark; rejects
   *  when the call is over. */
  send(framed: Buffer): Promise<void>;
  /** grpc.max_send_message_length of the server (-1: unlimited); a larger message must
   *  take the public path, which answers RESOURCE_EXHAUSTED. */
  readonly maxMessageBytes: number;
}

/** What is used of the HTTP/2 stream under a call (node:http2 ServerHttp2Stream). */
interface H2Stream {
  write(chunk: Buffer, cb?: (err?: Error | null) => void): boolean;
  on(event: "error", fn: () => void): unknown;
  once(event: "drain" | "close", fn: () => void): unknown;
  removeListener(event: "drain" | "close" | "error", fn: () => void): unknown;
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
}

/** What is used of grpc-js's BaseServerInterceptingCall. */
interface BaseCall {
  stream: H2Stream;
  metadataSent: boolean;
  maxSendMessageSize: number;
  checkCancelled(): boolean;
}

/** grpc-js's default (pass-through) sendMessage responder, to recognise interceptors that do not touch messages. */
const DEFAULT_SEND_MESSAGE: unknown = (() => {
  try {
    return (new ServerInterceptingCall({} as never) as unknown as { responder?: { sendMessage?: unknown } }).responder?.sendMessage;
  } catch {
    return undefined;
  }
})();

/** The BaseServerInterceptingCall under a grpc-js server stream, when the direct path is safe. */
function baseCallOf(call: unknown): BaseCall | undefined {
  if (typeof DEFAULT_SEND_MESSAGE !== "function") return undefined;
  let c = (call as { call?: unknown }).call;
  for (let depth = 0; c instanceof ServerInterceptingCall; depth++) {
    if (depth > 32) return undefined;
    const responder = (c as unknown as { responder?: { sendMessage?: unknown } }).responder;
    if (responder?.sendMessage !== DEFAULT_SEND_MESSAGE) return undefined;
    c = (c as unknown as { nextCall?: unknown }).nextCall;
  }
  const b = c as Partial<BaseCall> | undefined;
  const s = b?.stream as Partial<H2Stream> | undefined;
  const ok =
    !!b &&
    !!s &&
    typeof b.metadataSent === "boolean" &&
    typeof b.maxSendMessageSize === "number" &&
    typeof b.checkCancelled === "function" &&
    typeof s.write === "function" &&
    typeof s.on === "function" &&
    typeof s.once === "function" &&
    typeof s.removeListener === "function" &&
    typeof s.destroyed === "boolean" &&
    typeof s.writableEnded === "boolean" &&
    typeof (s as { respond?: unknown }).respond === "function";
  return ok ? (b as BaseCall) : undefined;
}

/**
 * Sends the response headers through grpc-js (if not sent yet) and returns the call's
 * HTTP/2 stream for pre-framed messages, or undefined when that is not safe (then use
 * the call's own write; headers may have been sent, which grpc-js handles).
 */
export function openDirectStream(call: ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>): DirectStream | undefined {
  const base = baseCallOf(call);
  if (!base || base.checkCancelled()) return undefined;
  if (!base.metadataSent) call.sendMetadata(new Metadata());
  // An interceptor that delays the headers, or messages grpc-js still holds: writing now
  // would let Node send its own headers, or overtake grpc-js's queue.
  if (!base.metadataSent || call.writableLength !== 0) return undefined;
  const stream = base.stream;
  // grpc-js listens for one 'error' of the stream; a second (a write failing as the peer
  // resets) must not become an uncaught exception.
  const ignore = (): void => undefined;
  stream.on("error", ignore);
  stream.once("close", () => stream.removeListener("error", ignore));
  const over = (): boolean => stream.writableEnded || stream.destroyed || base.checkCancelled();
  return {
    maxMessageBytes: base.maxSendMessageSize,
    write(framed, done) {
      if (over()) return false;
      return done ? stream.write(framed, done) : stream.write(framed);
    },
    send(framed) {
      if (over()) return Promise.reject(new Error("stream is closed"));
      if (stream.write(framed)) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const onDrain = (): void => {
          stream.removeListener("close", onClose);
          resolve();
        };
        const onClose = (): void => {
          stream.removeListener("drain", onDrain);
          reject(new Error("stream is closed"));
        };
        stream.once("drain", onDrain);
        stream.once("close", onClose);
      });
    },
  };
}
