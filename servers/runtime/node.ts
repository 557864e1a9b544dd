/**
 * The node runtime: assembles a grpc-js server from a role's services plus health,
 * reflection and NodeService; binds it; and shuts it down in stages.
 *
 * Shutdown (`stop()`, which SIGINT/SIGTERM call in `main`):
 *  1. health → NOT_SERVING for every service, so balancers drain the node;
 *  2. the shutdown signal aborts: open streams end with UNAVAILABLE/NODE_SHUTTING_DOWN;
 *  3. the server stops accepting and waits for in-flight calls (`tryShutdown`);
 *  4. after `shutdown.graceMs` whatever is left is cut (`forceShutdown`);
 *  5. the role stops, then metrics, then the store closes last (LevelDB lock released).
 */
import { setMaxListeners } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Server, ServerCredentials, type ServerOptions, type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import type { Logger } from "pino";
import type { NodeInfo } from "../../gen/switchyard/node/v1/node.js";
import { msToDuration } from "../../clients/grpc/duration.js";
import type { ChannelSettings } from "../../clients/grpc/channel.js";
import type { NodeConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { NodeMetrics } from "./metrics.js";
import { CpuSampler, createNodeService } from "./node-service.js";
import { packageVersion } from "./paths.js";
import { addReflection } from "./reflection.js";
import type { RoleDefinition, RoleInstance } from "./role.js";
import { implement, type ServiceRegistration } from "./service.js";
import { NodeStore } from "./store.js";

/** A node that is up and serving. */
export interface RunningNode {
  readonly config: NodeConfig;
  readonly log: Logger;
  /** "host:port" actually bound. */
  readonly address: string;
  /** Address advertised to peers. */
  readonly advertisedAddress: string;
  /** Port of the /metrics endpoint, or undefined when disabled. */
  readonly metricsPort: number | undefined;
  /** The role instance (tests reach role internals through it). */
  readonly role: RoleInstance;
  readonly store: NodeStore;
  /** Shuts the node down in stages; safe to call more than once. */
  stop(reason?: string): Promise<void>;
}

/** Options for startNode beyond the configuration. */
export interface StartOptions {
  /** Logger to use instead of one built from config (tests). */
  log?: Logger;
}

function serverCredentials(cfg: NodeConfig): ServerCredentials {
  if (!cfg.tls) return ServerCredentials.createInsecure();
  const ca = cfg.tls.clientCaFile ? readFileSync(cfg.tls.clientCaFile) : null;
  return ServerCredentials.createSsl(
    ca,
    [{ cert_chain: readFileSync(cfg.tls.certFile), private_key: readFileSync(cfg.tls.keyFile) }],
    cfg.tls.requireClientCert,
  );
}

function serverOptions(cfg: NodeConfig, metrics: NodeMetrics): ServerOptions {
  return {
    "grpc.keepalive_time_ms": cfg.grpc.keepaliveTimeMs,
    "grpc.keepalive_timeout_ms": cfg.grpc.keepaliveTimeoutMs,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.max_connection_idle_ms": cfg.grpc.maxConnectionIdleMs,
    "grpc.max_connection_age_ms": cfg.grpc.maxConnectionAgeMs,
    "grpc.max_connection_age_grace_ms": cfg.grpc.maxConnectionAgeGraceMs,
    "grpc.max_receive_message_length": cfg.grpc.maxReceiveMessageBytes,
    "grpc.max_send_message_length": cfg.grpc.maxSendMessageBytes,
    interceptors: [metrics.interceptor()],
  };
}

/** Channel settings a node uses to call other nodes. */
export function peerChannelSettings(cfg: NodeConfig): ChannelSettings {
  return {
    ...(cfg.clientTls ? { tls: cfg.clientTls } : {}),
    defaultDeadlineMs: cfg.grpc.defaultDeadlineMs,
    maxReceiveMessageBytes: cfg.grpc.maxReceiveMessageBytes,
    maxSendMessageBytes: cfg.grpc.maxSendMessageBytes,
  };
}

/** Health service whose Watch streams end when the node shuts down. */
function addHealth(server: Server, health: HealthImplementation, shutdown: AbortSignal): void {
  health.addToServer({
    addService: (def: ServiceDefinition, impl: UntypedServiceImplementation) => {
      const watch = impl["watch"] as (call: import("@grpc/grpc-js").ServerWritableStream<unknown, unknown>) => void;
      server.addService(def, {
        ...impl,
        watch: (call: import("@grpc/grpc-js").ServerWritableStream<unknown, unknown>) => {
          watch(call);
          const end = (): void => {
            if (!call.writableEnded) call.end();
          };
          if (shutdown.aborted) end();
          else shutdown.addEventListener("abort", end, { once: true });
          call.once("cancelled", () => shutdown.removeEventListener("abort", end));
        },
      });
    },
  } as never);
}

/** HTTP/2 receive window of a node's connections and streams, in bytes. */
const RECEIVE_WINDOW_BYTES = 16 * 1024 * 1024;

/**
 * grpc-js servers keep HTTP/2's 64 KiB receive window (it has no server option for it),
 * so a client sending MiB-sized messages (uploads, pieces) waits for a window update every
 * 64 KiB, shared by every stream of the connection; under CPU contention each update
 * costs a scheduling delay. Raise the window on the bound http2 servers with Node's public
 * API (`updateSettings`, `setLocalWindowSize`); grpc-js keeps those servers in a private map.
 */
function raiseReceiveWindow(server: Server): void {
  const servers = (server as unknown as { http2Servers?: Map<import("node:http2").Http2Server, unknown> }).http2Servers;
  for (const h2 of servers?.keys() ?? []) {
    h2.updateSettings({ initialWindowSize: RECEIVE_WINDOW_BYTES });
    h2.on("session", (session: import("node:http2").ServerHttp2Session) => {
      session.once("localSettings", () => {
        try {
          session.setLocalWindowSize(RECEIVE_WINDOW_BYTES);
        } catch {
          // session already closing
        }
      });
    });
  }
}

/** Starts a node of `role` with `config`; resolves once it is bound and SERVING. */
export async function startNode<C>(config: NodeConfig<C>, role: RoleDefinition<C>, opts: StartOptions = {}): Promise<RunningNode> {
  const log = opts.log ?? createLogger({ level: config.log.level, nodeId: config.node.id, role: config.node.role });
  const startedAt = new Date();
  const shutdownController = new AbortController();
  const shutdown = shutdownController.signal;
  // Every open stream listens on this signal; thousands of subscribers are normal.
  setMaxListeners(0, shutdown);
  const metrics = new NodeMetrics({ node: config.node.id, role: config.node.role });
  const store = await NodeStore.open(join(config.dataDir, "store"), { log, sweepIntervalMs: config.store.ttlSweepIntervalMs });
  const health = new HealthImplementation({ "": "NOT_SERVING" });
  const server = new Server(serverOptions(config, metrics));
  const cpu = new CpuSampler();
  const deps = { log, shutdown };
  let instance: RoleInstance | undefined;
  let advertised = config.node.advertise ?? config.node.listen;
  const services: string[] = [];

  const cleanupPartial = async (): Promise<void> => {
    cpu.stop();
    shutdownController.abort(new Error("start failed"));
    server.forceShutdown();
    await instance?.stop?.().catch((err: unknown) => log.error({ err }, "role failed to stop cleanly"));
    await metrics.close().catch(() => undefined);
    await store.close().catch(() => undefined);
  };

  try {
    instance = await role.create({
      config,
      log,
      store,
      metrics,
      shutdown,
      channel: peerChannelSettings(config),
      implement: (definition, handlers) => implement(definition, handlers, deps),
      setServing: (service, serving) => health.setStatus(service, serving ? "SERVING" : "NOT_SERVING"),
    });
    const info = (): NodeInfo => ({
      nodeId: config.node.id,
      role: config.node.role,
      version: packageVersion(),
      startedAt,
      uptime: msToDuration(Date.now() - startedAt.getTime()),
      advertisedAddress: advertised,
      labels: config.node.labels,
      services,
      pid: process.pid,
    });
    const registrations: ServiceRegistration[] = [
      createNodeService({
        ...deps,
        info,
        server,
        cpu,
        activeCalls: () => metrics.active,
        roleLoad: () => instance?.load?.(),
      }),
      ...instance.services,
    ];
    for (const r of registrations) {
      server.addService(r.definition, r.implementation);
      services.push(r.name);
      health.setStatus(r.name, "NOT_SERVING");
    }
    addHealth(server, health, shutdown);
    services.push("grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection");
    addReflection(server, services);

    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(config.node.listen, serverCredentials(config), (err, p) => (err ? reject(err) : resolve(p)));
    });
    raiseReceiveWindow(server);
    const host = config.node.listen.slice(0, config.node.listen.lastIndexOf(":"));
    const address = `${host}:${port}`;
    if (!config.node.advertise) advertised = address;
    const metricsPort = config.metrics.listen ? await metrics.serve(config.metrics.listen) : undefined;

    await instance.start?.(advertised);
    for (const r of registrations) health.setStatus(r.name, "SERVING");
    health.setStatus("", "SERVING");
    log.info({ address, advertised, metricsPort, dataDir: config.dataDir, services }, "node serving");

    let stopping: Promise<void> | undefined;
    const running: RunningNode = {
      config,
      log,
      address,
      advertisedAddress: advertised,
      metricsPort,
      role: instance,
      store,
      stop: (reason = "stop requested") => {
        stopping ??= (async () => {
          log.info({ reason }, "shutting down");
          health.setStatus("", "NOT_SERVING");
          for (const s of services) health.setStatus(s, "NOT_SERVING");
          shutdownController.abort(new Error(reason));
          const graceful = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
          let timer: NodeJS.Timeout | undefined;
          const forced = new Promise<"forced">((resolve) => {
            timer = setTimeout(() => resolve("forced"), config.shutdown.graceMs);
            timer.unref();
          });
          if ((await Promise.race([graceful, forced])) === "forced") {
            log.warn({ graceMs: config.shutdown.graceMs }, "grace period over; cutting remaining calls");
            server.forceShutdown();
          }
          clearTimeout(timer);
          cpu.stop();
          try {
            await instance?.stop?.();
          } catch (err) {
            log.error({ err }, "role failed to stop cleanly");
          }
          await metrics.close();
          await store.close();
          log.info("node stopped");
        })();
        return stopping;
      },
    };
    return running;
  } catch (err) {
    await cleanupPartial();
    throw err;
  }
}
