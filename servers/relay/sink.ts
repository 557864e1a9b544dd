/**
 * Where a subscriber's messages go. The fan-out hands over gRPC-*framed* messages (the
 * 5-byte message prefix followed by the SubscribeResponse bytes), built once and shared
 * by every subscriber that gets the same message.
 *
 * `frameSinkFor` writes them straight to the call's HTTP/2 stream when that is safe, and
 * through grpc-js's public write path otherwise. Why: grpc-js (1.14.7) writes a server
 * stream message through an object-mode Writable (ServerWritableStreamImpl), every
 * ServerInterceptingCall of the chain, BaseServerInterceptingCall.sendMessage (which
 * allocates a new buffer and copies the message into it behind a fresh 5-byte prefix)
 * and only then the HTTP/2 stream, and back up the same layers with a callback per
 * message when the transport took it. With 1,000 subscribers that is 1,000 copies and
 * 1,000 trips through every layer per frame; profiles of the relay showed those layers
 * as the larger part of a delivery's cost. The direct path writes the one shared framed
 * buffer to each HTTP/2 stream; what grpc-js does around a message is kept:
 *  - response headers go out through the call's public `sendMetadata` (interceptors
 *    see them), and the direct path is used only if grpc-js sent them synchronously;
 *  - interceptors: the direct path is used only when every ServerInterceptingCall of
 *    the chain has grpc-js's default sendMessage responder (an interceptor that looks
 *    at messages, e.g. a future message counter, keeps its path; the node's metrics
 *    interceptor only watches start, cancel and status);
 *  - a cancelled or closed call, or one whose HTTP/2 stream grpc-js already ended (status
 *    on its way), is never written to (BaseServerInterceptingCall's own checkCancelled(),
 *    the stream's writableEnded); a message above grpc.max_send_message_length goes the public
 *    way, so the caller gets the same RESOURCE_EXHAUSTED status as before;
 *  - the status is still sent by grpc-js (the handler returns, `call.end()` → trailers
 *    after everything written to the HTTP/2 stream, in order).
 * Not kept: grpc-js's channelz "messages sent" counter of the call (a Date.now() per
 * message) does not count these messages.
 * Relied on (grpc-js 1.14.7 internals, checked at runtime; anything unexpected and the
 * public path is used): ServerWritableStreamImpl.call; ServerInterceptingCall.nextCall
 * and .responder.sendMessage; BaseServerInterceptingCall.stream, .metadataSent,
 * .maxSendMessageSize and .checkCancelled().
 */
import { Metadata, ServerInterceptingCall } from "@grpc/grpc-js";
import type { StreamSink } from "../runtime/service.js";
import { GRPC_PREFIX_BYTES } from "../../clients/relay/wire.js";

/** The part of a server stream the fan-out writes to (Writable backpressure semantics). */
export interface FrameSink {
  /** Writes one framed message; false when the transport is over its high-water mark.
   *  `done` runs once the transport took the message (with an error if it could not). */
  write(framed: Buffer, done?: (err?: Error | null) => void): boolean;
  /** Writes and resolves once the transport drained below its high-water mark. */
  send(framed: Buffer): Promise<void>;
  /** True when messages go straight to the HTTP/2 stream (tests, ListSessions). */
  readonly direct: boolean;
}

/** What the fan-out needs of the HTTP/2 stream under a call (node:http2 ServerHttp2Stream). */
interface H2Stream {
  write(chunk: Buffer, cb?: (err?: Error | null) => void): boolean;
  once(event: "drain" | "close", fn: () => void): unknown;
  removeListener(event: "drain" | "close", fn: () => void): unknown;
  readonly destroyed: boolean;
  readonly closed: boolean;
  readonly writableEnded: boolean;
}

/** What the fan-out needs of grpc-js's BaseServerInterceptingCall. */
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
  if (
    !b ||
    !s ||
    typeof b.metadataSent !== "boolean" ||
    typeof b.maxSendMessageSize !== "number" ||
    typeof b.checkCancelled !== "function" ||
    typeof s.write !== "function" ||
    typeof s.once !== "function" ||
    typeof s.removeListener !== "function" ||
    typeof s.destroyed !== "boolean" ||
    typeof s.writableEnded !== "boolean" ||
    typeof (s as { respond?: unknown }).respond !== "function"
  ) {
    return undefined;
  }
  return b as BaseCall;
}

/**
 * The fan-out's sink for one Subscribe call. The path is chosen at the first message, so
 * a call that fails before any message (unknown stream, upstream down) still ends with a
 * trailers-only response, exactly as before.
 */
export function frameSinkFor(sink: StreamSink<Buffer>, directWrites = true): FrameSink {
  let chosen: FrameSink | undefined;
  const get = (): FrameSink => (chosen ??= choose(sink, directWrites));
  return {
    get direct() {
      return get().direct;
    },
    write: (framed, done) => get().write(framed, done),
    send: (framed) => get().send(framed),
  };
}

/** Subscribe calls of this process by write path (tests check which path was taken). */
export const sinkPaths = { direct: 0, public: 0 };

function choose(sink: StreamSink<Buffer>, directWrites: boolean): FrameSink {
  const base = directWrites ? baseCallOf(sink.call) : undefined;
  if (base && !base.checkCancelled()) {
    // Response headers through grpc-js (and its interceptors); direct writes only once
    // they are out, so no byte can precede them.
    if (!base.metadataSent) sink.call.sendMetadata(new Metadata());
    if (base.metadataSent && sink.call.writableLength === 0) {
      sinkPaths.direct++;
      return directSink(base, sink);
    }
  }
  sinkPaths.public++;
  return publicSink(sink);
}

/** grpc-js's public path: it adds its own prefix, so it gets the message without ours. */
function publicSink(sink: StreamSink<Buffer>): FrameSink {
  return {
    direct: false,
    write: (framed, done) => sink.write(framed.subarray(GRPC_PREFIX_BYTES), done),
    send: (framed) => sink.send(framed.subarray(GRPC_PREFIX_BYTES)),
  };
}

function directSink(base: BaseCall, sink: StreamSink<Buffer>): FrameSink {
  const stream = base.stream;
  const limit = base.maxSendMessageSize;
  const tooLarge = (framed: Buffer): boolean => limit !== -1 && framed.length - GRPC_PREFIX_BYTES > limit;
  return {
    direct: true,
    write(framed, done) {
      // A cancelled call takes nothing and calls nothing back (as grpc-js's sendMessage);
      // nor does one whose status is on its way (grpc-js ended the HTTP/2 stream, e.g.
      // deadline or shutdown, and the cancellation reaches the handler a moment later):
      // a write after end() would be an 'error' event grpc-js does not expect twice.
      if (stream.writableEnded || base.checkCancelled()) return false;
      if (tooLarge(framed)) return sink.write(framed.subarray(GRPC_PREFIX_BYTES), done);
      return done ? stream.write(framed, done) : stream.write(framed);
    },
    send(framed) {
      if (stream.writableEnded || base.checkCancelled()) return Promise.reject(new Error("stream is closed"));
      if (tooLarge(framed)) return sink.send(framed.subarray(GRPC_PREFIX_BYTES));
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
