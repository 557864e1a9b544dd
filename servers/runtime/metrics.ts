/**
 * Prometheus metrics of a node: per-RPC count by status code and latency histogram,
 * in-flight calls, and the process figures of prom-client's default collectors, served
 * over HTTP at /metrics. Recording happens in a grpc-js server interceptor so it covers
 * every service on the node, health and reflection included.
 */
import { createServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import {
  ServerInterceptingCall,
  status as Status,
  type ServerInterceptor,
  type StatusObject,
} from "@grpc/grpc-js";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** The status a server call ends with (grpc-js PartialStatusObject, not exported). */
type SentStatus = Pick<StatusObject, "code" | "details"> & { metadata?: StatusObject["metadata"] | null };

type Labels = { grpc_service: string; grpc_method: string; grpc_type: string };

/** The metrics of one node. */
export class NodeMetrics {
  readonly registry = new Registry();
  private readonly handled: Counter<"grpc_service" | "grpc_method" | "grpc_type" | "grpc_code">;
  private readonly latency: Histogram<"grpc_service" | "grpc_method" | "grpc_type">;
  private readonly inFlight: Gauge<"grpc_service" | "grpc_method" | "grpc_type">;
  private activeCalls = 0;
  private http?: HttpServer;
  // Bound children per method, so the hot path does no label hashing.
  private readonly byMethod = new Map<
    string,
    {
      labels: Labels;
      latency: ReturnType<Histogram["labels"]>;
      inFlight: ReturnType<Gauge["labels"]>;
      handled: Map<number, ReturnType<Counter["labels"]>>;
    }
  >();

  constructor(defaultLabels: Record<string, string>) {
    this.registry.setDefaultLabels(defaultLabels);
    collectDefaultMetrics({ register: this.registry });
    this.handled = new Counter({
      name: "grpc_server_handled_total",
      help: "RPCs completed on the server, by status code.",
      labelNames: ["grpc_service", "grpc_method", "grpc_type", "grpc_code"],
      registers: [this.registry],
    });
    this.latency = new Histogram({
      name: "grpc_server_handling_seconds",
      help: "Time from call start to status sent, in seconds.",
      labelNames: ["grpc_service", "grpc_method", "grpc_type"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [this.registry],
    });
    this.inFlight = new Gauge({
      name: "grpc_server_in_flight",
      help: "RPCs currently being handled (open streams included).",
      labelNames: ["grpc_service", "grpc_method", "grpc_type"],
      registers: [this.registry],
    });
  }

  /** RPCs in progress on this node right now. */
  get active(): number {
    return this.activeCalls;
  }

  private entry(path: string, requestStream: boolean, responseStream: boolean) {
    let e = this.byMethod.get(path);
    if (!e) {
      const slash = path.lastIndexOf("/");
      const labels: Labels = {
        grpc_service: path.slice(1, slash),
        grpc_method: path.slice(slash + 1),
        grpc_type: requestStream
          ? responseStream
            ? "bidi_stream"
            : "client_stream"
          : responseStream
            ? "server_stream"
            : "unary",
      };
      e = {
        labels,
        latency: this.latency.labels(labels),
        inFlight: this.inFlight.labels(labels),
        handled: new Map(),
      };
      this.byMethod.set(path, e);
    }
    return e;
  }

  /** The grpc-js server interceptor that records every call. */
  interceptor(): ServerInterceptor {
    return (method, call) => {
      const e = this.entry(method.path, method.requestStream, method.responseStream);
      const start = process.hrtime.bigint();
      let done = false;
      this.activeCalls++;
      e.inFlight.inc();
      const finish = (code: number): void => {
        if (done) return;
        done = true;
        this.activeCalls--;
        e.inFlight.dec();
        e.latency.observe(Number(process.hrtime.bigint() - start) / 1e9);
        let c = e.handled.get(code);
        if (!c) {
          c = this.handled.labels({ ...e.labels, grpc_code: Status[code] ?? String(code) });
          e.handled.set(code, c);
        }
        c.inc();
      };
      return new ServerInterceptingCall(call, {
        start: (next) => next({ onCancel: () => finish(Status.CANCELLED) }),
        sendStatus: (status: SentStatus, next: (s: SentStatus) => void) => {
          finish(status.code);
          next(status);
        },
      });
    };
  }

  /** Serves /metrics on `listen` ("host:port"); resolves with the bound port. */
  async serve(listen: string): Promise<number> {
    const idx = listen.lastIndexOf(":");
    const host = listen.slice(0, idx).replace(/^\[|\]$/g, "");
    const port = Number(listen.slice(idx + 1));
    this.http = createServer((req, res) => {
      if (req.url === "/metrics" || req.url?.startsWith("/metrics?")) {
        this.registry
          .metrics()
          .then((body) => {
            res.writeHead(200, { "content-type": this.registry.contentType });
            res.end(body);
          })
          .catch(() => {
            res.writeHead(500);
            res.end();
          });
      } else {
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("not found: metrics are at /metrics\n");
      }
    });
    const server = this.http;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    return (server.address() as AddressInfo).port;
  }

  /** Stops the HTTP endpoint. */
  async close(): Promise<void> {
    const server = this.http;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
