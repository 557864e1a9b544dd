/**
 * The contract between the node runtime and a role. A role module exports a
 * RoleDefinition: its config schema and a factory that returns the services to serve.
 * The factory gets everything it needs in a RoleContext; nothing is wired at import time.
 */
import type { z } from "zod";
import type { Logger } from "pino";
import type { ChannelSettings } from "../../clients/grpc/channel.js";
import type { NodeConfig } from "./config.js";
import type { NodeMetrics } from "./metrics.js";
import type { AsyncService, ServiceRegistration } from "./service.js";
import type { NodeStore } from "./store.js";
import type { ServiceDefinition } from "@grpc/grpc-js";

/** What a role factory receives. */
export interface RoleContext<C> {
  /** The node's resolved configuration; `config.roleConfig` is the role's own section. */
  config: NodeConfig<C>;
  /** The node's logger. */
  log: Logger;
  /** The node's LevelDB store (closed by the runtime after the role stops). */
  store: NodeStore;
  /** The node's metrics registry, for role-specific metrics. */
  metrics: NodeMetrics;
  /** Aborted when the node starts shutting down. */
  shutdown: AbortSignal;
  /** Channel settings for calls to other nodes (client TLS, default deadline). */
  channel: ChannelSettings;
  /** Wraps async handlers into a service with the node's error boundary. */
  implement<S extends ServiceDefinition>(definition: S, handlers: AsyncService<S>): ServiceRegistration;
  /** Marks one of the role's services SERVING or NOT_SERVING in the health service. */
  setServing(service: string, serving: boolean): void;
}

/** Role-specific load, merged into the node's LoadReport. */
export interface RoleLoad {
  /** Named figures, documented by the role (e.g. clients_served, bytes_in_flight). */
  figures: Record<string, number>;
  /** 0..1, how close the role is to its capacity. Unset: the CPU fraction is used. */
  utilization?: number;
}

/** A running role. */
export interface RoleInstance {
  /** Services the node serves for this role. */
  services: ServiceRegistration[];
  /** Role-specific load figures for NodeService load reports. */
  load?(): RoleLoad;
  /** Called once the server is bound and SERVING, with the advertised address. */
  start?(advertisedAddress: string): Promise<void> | void;
  /** Called on shutdown after new calls are refused, before the store closes. */
  stop?(): Promise<void>;
}

/** A role the node program can run. */
export interface RoleDefinition<C = unknown> {
  /** Role name used in `node.role`, e.g. "content-server". */
  role: string;
  /** One line for `switchyard roles` and the docs. */
  summary: string;
  /** Schema of the role's config section (key: the role name in camelCase). */
  configSchema: z.ZodType<C>;
  /** Builds the role; throw to refuse to start (the node then exits non-zero). */
  create(ctx: RoleContext<C>): Promise<RoleInstance>;
}
