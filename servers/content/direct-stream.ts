/**
 * GetPiece's bulk path: chunk messages go straight to the call's HTTP/2 stream.
 *
 * grpc-js frames every response by allocating a fresh buffer of the message's size + 5
 * and copying the message into it. For a node serving MiB-sized chunks at loopback speed
 * that allocation churn is the main cost: V8 schedules a full mark-compact for every few
 * dozen MiB of fresh external memory, and each one walks the whole node heap. Here the
 * chunk is read from disk into a reused buffer that already has room for the gRPC prefix
 * and the protobuf header (see `framed` in clients/content/piece-wire.ts), and that one
 * buffer is written to the HTTP/2 stream as the complete gRPC message — the same bytes
 * grpc-js would send, without the copy. Headers are still sent by grpc-js (sendMetadata)
 * and status and trailers by grpc-js when the handler returns, so the call stays an
 * ordinary gRPC call for any client. When the stream cannot be reached (a grpc-js whose
 * internals differ), `openDirect` returns undefined and the caller uses the normal path.
 */
import { Metadata, type ServerWritableStream } from "@grpc/grpc-js";
import type { ServerHttp2Stream as Http2Stream } from "node:http2";

/** Writes complete gRPC messages (prefix included) to a call's HTTP/2 stream. */
export interface DirectWriter {
  /** Queues `frame`; `done` runs once the stream is finished with the buffer. */
  write(frame: Buffer, done: (err?: Error | null) => void): void;
  /** Detaches from the stream (call when the handler is done writing). */
  close(): void;
}

/** The HTTP/2 stream under a grpc-js server call (found through its interceptor chain). */
function http2StreamOf(call: ServerWritableStream<unknown, unknown>): Http2Stream | undefined {
  let c: unknown = (call as unknown as { call?: unknown }).call;
  for (let i = 0; i < 16 && c !== null && typeof c === "object"; i++) {
    const s = (c as { stream?: unknown }).stream as Partial<Http2Stream> | undefined;
    if (s && typeof s.write === "function" && typeof s.respond === "function" && typeof s.sendTrailers === "function") return s as Http2Stream;
    c = (c as { nextCall?: unknown }).nextCall;
  }
  return undefined;
}

/**
 * Sends the response headers through grpc-js and returns a writer to the stream, or
 * undefined when the stream cannot be used directly (then nothing was sent yet).
 */
export function openDirect(call: ServerWritableStream<unknown, unknown>): DirectWriter | undefined {
  const stream = http2StreamOf(call);
  if (!stream || stream.headersSent || stream.destroyed) return undefined;
  call.sendMetadata(new Metadata());
  if (!stream.headersSent) {
    // An interceptor delays the headers: writing now would make Node send its own.
    return undefined;
  }
  // grpc-js listens for one 'error' only; a failed write must not become an uncaught one.
  const onError = (): void => undefined;
  stream.on("error", onError);
  return {
    write: (frame, done) => {
      if (stream.destroyed || stream.closed) {
        done(new Error("stream closed"));
        return;
      }
      stream.write(frame, done);
    },
    close: () => {
      stream.removeListener("error", onError);
    },
  };
}
