/**
 * Where a subscriber's messages go. The fan-out hands over gRPC-*framed* messages (the
 * 5-byte message prefix followed by the SubscribeResponse bytes), built once and shared
 * by every subscriber that gets the same message.
 *
 * `frameSinkFor` writes them straight to the call's HTTP/2 stream when that is safe
 * (servers/runtime/direct-write.ts says what is kept of grpc-js's behaviour and what is
 * relied on), and through grpc-js's public write path otherwise. Why: with 1,000
 * subscribers grpc-js's per-message layers cost 1,000 copies and 1,000 trips through
 * every layer per frame; profiles of the relay showed them as the larger part of a
 * delivery's cost. A message above grpc.max_send_message_length goes the public way, so
 * the caller gets the same RESOURCE_EXHAUSTED status as before.
 */
import { GRPC_PREFIX_BYTES } from "../../clients/grpc/framing.js";
import { openDirectStream, type DirectStream } from "../runtime/direct-write.js";
import type { StreamSink } from "../runtime/service.js";

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
  const direct = directWrites ? openDirectStream(sink.call) : undefined;
  if (direct) {
    sinkPaths.direct++;
    return directSink(direct, sink);
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

function directSink(stream: DirectStream, sink: StreamSink<Buffer>): FrameSink {
  const limit = stream.maxMessageBytes;
  const tooLarge = (framed: Buffer): boolean => limit !== -1 && framed.length - GRPC_PREFIX_BYTES > limit;
  return {
    direct: true,
    write: (framed, done) => (tooLarge(framed) ? sink.write(framed.subarray(GRPC_PREFIX_BYTES), done) : stream.write(framed, done)),
    send: (framed) => (tooLarge(framed) ? sink.send(framed.subarray(GRPC_PREFIX_BYTES)) : stream.send(framed)),
  };
}
