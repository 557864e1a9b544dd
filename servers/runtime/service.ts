/**
 * Typed async handlers for generated grpc-js service definitions, wrapped in the error
 * boundary. A subsystem writes `implement(XServiceService, { method: async (req, ctx) => res })`
 * and gets a grpc-js implementation where:
 * - a thrown SwitchyardError becomes its status + google.rpc details, anything else UNKNOWN;
 * - `ctx.signal` aborts when the caller cancels, the deadline passes or the node shuts down;
 * - on shutdown, open streams end with UNAVAILABLE even if the handler ignores the signal.
 */
import {
  status as Status,
  type Metadata,
  type sendUnaryData,
  type ServerDuplexStream,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import type { Logger } from "pino";
import { richServiceError } from "../../clients/grpc/rich-error.js";
import { SwitchyardError, toServiceError } from "./errors.js";

/** What a handler knows about its call. */
export interface CallContext {
  /** Aborted when the caller cancels, the deadline passes, or the node shuts down. */
  signal: AbortSignal;
  /** Request metadata. */
  metadata: Metadata;
  /** The caller's address as "ip:port". */
  peer: string;
  /** The call's deadline (Infinity when none). */
  deadline: Date | number;
  /** Full method path, e.g. "/switchyard.node.v1.NodeService/GetLoad". */
  method: string;
  /** The node's logger. */
  log: Logger;
  /** Verified client-certificate subject under mTLS, else undefined. */
  peerCertificate?: { subject?: Record<string, unknown> } | undefined;
}

/** Writes to a server stream. */
export interface StreamSink<T> {
  /** Writes and waits while the transport buffer is full (backpressure). Rejects once
   *  the call is over (cancelled, failed or ended). */
  send(message: T): Promise<void>;
  /** Writes without waiting; false when the buffer is over its high-water mark. `done`
   *  runs once the transport took the message (not when the call was cancelled first). */
  write(message: T, done?: (err?: Error | null) => void): boolean;
  /** Messages waiting in the transport buffer. */
  readonly buffered: number;
  /** The grpc-js call under the sink, for handlers that need transport-level control
   *  (e.g. the relay's fan-out writes pre-framed messages straight to the HTTP/2 stream). */
  readonly call: ServerWritableStream<unknown, T> | ServerDuplexStream<unknown, T>;
}

type Req<M> = M extends { requestDeserialize: (b: Buffer) => infer R } ? R : never;
type Res<M> = M extends { responseDeserialize: (b: Buffer) => infer R } ? R : never;

/** The async handler type for one method definition. */
export type AsyncHandler<M> = M extends { requestStream: false; responseStream: false }
  ? (request: Req<M>, ctx: CallContext) => Promise<Res<M>>
  : M extends { requestStream: false; responseStream: true }
    ? (request: Req<M>, sink: StreamSink<Res<M>>, ctx: CallContext) => Promise<void>
    : M extends { requestStream: true; responseStream: false }
      ? (requests: AsyncIterable<Req<M>>, ctx: CallContext) => Promise<Res<M>>
      : (requests: AsyncIterable<Req<M>>, sink: StreamSink<Res<M>>, ctx: CallContext) => Promise<void>;

/** Async handlers for every method of a service definition. */
export type AsyncService<S> = { [K in keyof S]: AsyncHandler<S[K]> };

/** What the runtime hands to `implement`. */
export interface ImplementDeps {
  log: Logger;
  /** Aborted when the node starts shutting down. */
  shutdown: AbortSignal;
}

/** A service ready to add to the runtime's server. */
export interface ServiceRegistration {
  /** Fully-qualified service name, e.g. "switchyard.node.v1.NodeService". */
  name: string;
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
}

/** Fully-qualified service name of a generated definition (from its first method path). */
export function serviceName(definition: ServiceDefinition): string {
  const first = Object.values(definition)[0];
  if (!first) throw new Error("service definition has no methods");
  return first.path.slice(1, first.path.lastIndexOf("/"));
}

const SHUTTING_DOWN = (): ReturnType<typeof richServiceError> =>
  richServiceError(Status.UNAVAILABLE, "node is shutting down; retry on another node or later", {
    errorInfo: { reason: "NODE_SHUTTING_DOWN", domain: "switchyard" },
  });

type AnyCall =
  | ServerUnaryCall<unknown, unknown>
  | ServerReadableStream<unknown, unknown>
  | ServerWritableStream<unknown, unknown>
  | ServerDuplexStream<unknown, unknown>;

/**
 * The context of one call. The AbortController and its listeners are created only when a
 * handler first reads `signal` (most unary handlers never do), which keeps the per-call
 * cost of the runtime low.
 */
class Context implements CallContext {
  private ac: AbortController | undefined;
  private readonly onCancel = (): void => this.ac?.abort(new Error("call cancelled by the client or its deadline passed"));
  private readonly onShutdown = (): void => this.ac?.abort(new Error("node is shutting down"));
  private cert: CallContext["peerCertificate"] | null = null;

  constructor(
    private readonly call: AnyCall,
    readonly method: string,
    private readonly deps: ImplementDeps,
  ) {}

  get signal(): AbortSignal {
    if (!this.ac) {
      this.ac = new AbortController();
      if (this.call.cancelled) this.onCancel();
      else (this.call as NodeJS.EventEmitter).once("cancelled", this.onCancel);
      if (this.deps.shutdown.aborted) this.onShutdown();
      else this.deps.shutdown.addEventListener("abort", this.onShutdown, { once: true });
    }
    return this.ac.signal;
  }

  get metadata(): Metadata {
    return this.call.metadata;
  }

  get peer(): string {
    return this.call.getPeer();
  }

  get deadline(): Date | number {
    return this.call.getDeadline();
  }

  get log(): Logger {
    return this.deps.log;
  }

  get peerCertificate(): CallContext["peerCertificate"] {
    if (this.cert === null) {
      const auth = this.call.getAuthContext();
      this.cert = auth.sslPeerCertificate ? { subject: { ...auth.sslPeerCertificate.subject } } : undefined;
    }
    return this.cert;
  }

  /** Drops the listeners once the call is over. */
  done(): void {
    if (!this.ac) return;
    (this.call as NodeJS.EventEmitter).removeListener("cancelled", this.onCancel);
    this.deps.shutdown.removeEventListener("abort", this.onShutdown);
  }
}

function contextFor(call: AnyCall, method: string, deps: ImplementDeps): { ctx: CallContext; done: () => void } {
  const ctx = new Context(call, method, deps);
  return { ctx, done: () => ctx.done() };
}

function sinkFor<T>(call: ServerWritableStream<unknown, T> | ServerDuplexStream<unknown, T>, signal: AbortSignal): StreamSink<T> {
  return {
    call,
    write: (m, done) => (done ? call.write(m, done) : call.write(m)),
    get buffered() {
      return call.writableLength;
    },
    send: (m) =>
      new Promise<void>((resolve, reject) => {
        if (signal.aborted || call.writableEnded || call.destroyed) {
          reject(signal.reason ?? new Error("stream is closed"));
          return;
        }
        if (call.write(m)) {
          resolve();
          return;
        }
        const cleanup = (): void => {
          call.removeListener("drain", onDrain);
          signal.removeEventListener("abort", onAbort);
        };
        const onDrain = (): void => {
          cleanup();
          resolve();
        };
        const onAbort = (): void => {
          cleanup();
          reject(signal.reason);
        };
        call.once("drain", onDrain);
        signal.addEventListener("abort", onAbort, { once: true });
      }),
  };
}

/** Wraps async handlers into a grpc-js implementation of `definition`. */
export function implement<S extends ServiceDefinition>(
  definition: S,
  handlers: AsyncService<S>,
  deps: ImplementDeps,
): ServiceRegistration {
  const implementation: UntypedServiceImplementation = {};
  for (const [name, def] of Object.entries(definition)) {
    const fn = (handlers as Record<string, (...args: unknown[]) => Promise<unknown>>)[name];
    if (typeof fn !== "function") throw new Error(`no handler for ${def.path}`);
    // A handler that throws synchronously (not async) still goes through the boundary.
    const handler = (...args: unknown[]): Promise<unknown> => {
      try {
        return fn(...args);
      } catch (err) {
        return Promise.reject(err);
      }
    };
    const method = def.path;
    if (!def.requestStream && !def.responseStream) {
      implementation[name] = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        const { ctx, done } = contextFor(call, method, deps);
        handler(call.request, ctx).then(
          (res) => {
            done();
            callback(null, res);
          },
          (err: unknown) => {
            done();
            const shuttingDown = deps.shutdown.aborted && !(err instanceof SwitchyardError);
            callback(shuttingDown ? SHUTTING_DOWN() : toServiceError(err, deps.log, method));
          },
        );
      };
    } else if (!def.requestStream && def.responseStream) {
      implementation[name] = (call: ServerWritableStream<unknown, unknown>) => {
        const { ctx, done } = contextFor(call, method, deps);
        runStream(call, ctx, done, deps, () => handler(call.request, sinkFor(call, ctx.signal), ctx) as Promise<void>);
      };
    } else if (def.requestStream && !def.responseStream) {
      implementation[name] = (call: ServerReadableStream<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        const { ctx, done } = contextFor(call, method, deps);
        const onShutdown = (): void => {
          call.destroy();
          callback(SHUTTING_DOWN());
        };
        deps.shutdown.addEventListener("abort", onShutdown, { once: true });
        handler(readAll(call, ctx.signal), ctx).then(
          (res) => {
            deps.shutdown.removeEventListener("abort", onShutdown);
            done();
            if (!deps.shutdown.aborted) callback(null, res);
          },
          (err: unknown) => {
            deps.shutdown.removeEventListener("abort", onShutdown);
            done();
            if (!deps.shutdown.aborted) callback(toServiceError(err, deps.log, method));
          },
        );
      };
    } else {
      implementation[name] = (call: ServerDuplexStream<unknown, unknown>) => {
        const { ctx, done } = contextFor(call, method, deps);
        runStream(call, ctx, done, deps, () => handler(readAll(call, ctx.signal), sinkFor(call, ctx.signal), ctx) as Promise<void>);
      };
    }
  }
  return { name: serviceName(definition), definition, implementation };
}

/** The request stream as an async iterable that stops when the call is aborted. */
async function* readAll<T>(call: AsyncIterable<T> & NodeJS.EventEmitter, signal: AbortSignal): AsyncGenerator<T> {
  if (signal.aborted) throw signal.reason;
  const onAbort = (): void => {
    (call as unknown as { destroy(e?: Error): void }).destroy(signal.reason as Error);
  };
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    // Not `for await (const m of call)`: a Readable's async iterator destroys the stream
    // when the reading ends, and on a bidi call that kills the response side too, so the
    // handler's status would never be sent after the client half-closes.
    const it = (call as unknown as { iterator(o: { destroyOnReturn: boolean }): AsyncIterable<T> }).iterator({ destroyOnReturn: false });
    for await (const m of it) yield m;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

function runStream(
  call: ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>,
  ctx: CallContext,
  done: () => void,
  deps: ImplementDeps,
  run: () => Promise<void>,
): void {
  let finished = false;
  const fail = (err: ReturnType<typeof richServiceError>): void => {
    if (finished) return;
    finished = true;
    done();
    call.emit("error", err);
  };
  // A stream that ignores the abort signal must not hold up shutdown.
  const onShutdown = (): void => fail(SHUTTING_DOWN());
  deps.shutdown.addEventListener("abort", onShutdown, { once: true });
  run().then(
    () => {
      deps.shutdown.removeEventListener("abort", onShutdown);
      if (finished) return;
      finished = true;
      done();
      call.end();
    },
    (err: unknown) => {
      deps.shutdown.removeEventListener("abort", onShutdown);
      if (ctx.signal.aborted && !deps.shutdown.aborted) {
        // Cancelled by the client: nobody is listening for a status any more.
        finished = true;
        done();
        return;
      }
      fail(deps.shutdown.aborted ? SHUTTING_DOWN() : toServiceError(err, deps.log, ctx.method));
    },
  );
}
