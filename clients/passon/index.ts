/**
 * Client library of the pass-on hierarchy: users sign on and invoke apps through their
 * local node; operators drive a center's MaintenanceService; child nodes use the same
 * library to pass requests on and to keep their control channel to the parent.
 */
import { AppGatewayServiceClient, type InvokeResponse, type ListAppsResponse, type SignOnResponse } from "../../gen/switchyard/passon/v1/app_gateway_service.js";
import { ControlServiceClient } from "../../gen/switchyard/passon/v1/control_service.js";
import {
  MaintenanceServiceClient,
  type GetBillingResponse,
  type GetUserDataResponse,
  type InstallAppResponse,
  type ListChildrenResponse,
} from "../../gen/switchyard/passon/v1/maintenance_service.js";
import type { Hop, InstalledApp } from "../../gen/switchyard/passon/v1/app.js";
import { dial, type ChannelSettings } from "../grpc/channel.js";
import { unary, type CallSettings } from "../grpc/call.js";
import { msToDuration } from "../grpc/duration.js";

export { AppGatewayServiceClient, ControlServiceClient, MaintenanceServiceClient };
export type { InvokeResponse, ListAppsResponse, SignOnResponse, GetBillingResponse, GetUserDataResponse, ListChildrenResponse, Hop, InstalledApp };
export { AppState, DiffOutcome, QueuedCommandKind } from "../../gen/switchyard/passon/v1/app.js";

/** A user's connection to their local node. */
export class PassonClient {
  /** The generated gateway client. */
  readonly gateway: AppGatewayServiceClient;
  private token: string | undefined;

  constructor(
    readonly target: string,
    settings: ChannelSettings = {},
  ) {
    this.gateway = dial(AppGatewayServiceClient, target, settings);
  }

  /** Signs on and keeps the token for later calls. */
  async signOn(user: string, password: string, s?: CallSettings): Promise<SignOnResponse> {
    const res = await unary(this.gateway, this.gateway.signOn, { user, password, via: [] }, s);
    this.token = res.token;
    return res;
  }

  /** Uses a token obtained elsewhere. */
  useToken(token: string): void {
    this.token = token;
  }

  /** Invokes `app` with `request` bytes. */
  invoke(app: string, request: Uint8Array | string, s?: CallSettings): Promise<InvokeResponse> {
    const bytes = typeof request === "string" ? Buffer.from(request) : Buffer.from(request);
    return unary(this.gateway, this.gateway.invoke, { app, token: this.token ?? "", request: bytes, via: [] }, s);
  }

  /** Apps the user may use through this node. */
  listApps(s?: CallSettings): Promise<ListAppsResponse> {
    return unary(this.gateway, this.gateway.listApps, { token: this.token ?? "", via: [] }, s);
  }

  /** Closes the channel. */
  close(): void {
    this.gateway.close();
  }
}

/** What InstallApp needs. */
export interface InstallOptions {
  nodeId: string;
  name: string;
  version: number;
  module: Uint8Array;
  leaseMs?: number;
  timeLimitMs?: number;
  memoryPages?: number;
  requestId?: string;
}

/** An operator's connection to a center's MaintenanceService. */
export class MaintenanceClient {
  /** The generated client. */
  readonly maintenance: MaintenanceServiceClient;

  constructor(
    readonly target: string,
    settings: ChannelSettings = {},
  ) {
    this.maintenance = dial(MaintenanceServiceClient, target, settings);
  }

  /** Installs or updates an app on the center or one of its children. */
  async install(o: InstallOptions, s?: CallSettings): Promise<InstalledApp> {
    const res = await this.installApp(o, false, s);
    if (!res.app) throw new Error("center answered InstallApp without app");
    return res.app;
  }

  /**
   * Like install, but when the child is offline the center keeps the signed install and
   * delivers it when the child reconnects: resolves `{ queued: true }` then.
   */
  async installOrQueue(o: InstallOptions, s?: CallSettings): Promise<{ app?: InstalledApp; queued: boolean }> {
    const res = await this.installApp(o, true, s);
    return { ...(res.app ? { app: res.app } : {}), queued: res.queued };
  }

  private installApp(o: InstallOptions, queueIfOffline: boolean, s?: CallSettings): Promise<InstallAppResponse> {
    return unary(
      this.maintenance,
      this.maintenance.installApp,
      {
        nodeId: o.nodeId,
        name: o.name,
        version: o.version,
        module: Buffer.from(o.module),
        ...(o.leaseMs !== undefined ? { lease: msToDuration(o.leaseMs) } : {}),
        ...(o.timeLimitMs !== undefined ? { timeLimit: msToDuration(o.timeLimitMs) } : {}),
        memoryPages: o.memoryPages ?? 0,
        requestId: o.requestId ?? "",
        queueIfOffline,
      },
      s,
    );
  }

  /** Expires an app on the center or a child. */
  async expire(nodeId: string, name: string, s?: CallSettings): Promise<InstalledApp> {
    const res = await unary(this.maintenance, this.maintenance.expireApp, { nodeId, name, requestId: "", queueIfOffline: false }, s);
    if (!res.app) throw new Error("center answered ExpireApp without app");
    return res.app;
  }

  /** Like expire, but queued at the center while the child is offline (`{ queued: true }`). */
  async expireOrQueue(nodeId: string, name: string, s?: CallSettings): Promise<{ app?: InstalledApp; queued: boolean }> {
    const res = await unary(this.maintenance, this.maintenance.expireApp, { nodeId, name, requestId: "", queueIfOffline: true }, s);
    return { ...(res.app ? { app: res.app } : {}), queued: res.queued };
  }

  /** The center and its children with their state. */
  children(s?: CallSettings): Promise<ListChildrenResponse> {
    return unary(this.maintenance, this.maintenance.listChildren, {}, s);
  }

  /** A user's billing as counted at the center. */
  billing(user: string, s?: CallSettings): Promise<GetBillingResponse> {
    return unary(this.maintenance, this.maintenance.getBilling, { user }, s);
  }

  /** A user's master data and conflicts. */
  userData(user: string, s?: CallSettings): Promise<GetUserDataResponse> {
    return unary(this.maintenance, this.maintenance.getUserData, { user }, s);
  }

  /** Closes the channel. */
  close(): void {
    this.maintenance.close();
  }
}

/** Opens the control and gateway clients a child node uses towards its parent. */
export function dialParent(target: string, settings: ChannelSettings = {}): { control: ControlServiceClient; gateway: AppGatewayServiceClient } {
  return { control: dial(ControlServiceClient, target, settings), gateway: dial(AppGatewayServiceClient, target, settings) };
}
