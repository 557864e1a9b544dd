/**
 * switchyard.node.v1.NodeService: identity and load of the node. Load combines process
 * figures (CPU over the last sampling interval, RSS), runtime figures (active calls, open
 * connections from channelz) and the role's own figures.
 */
import { cpus } from "node:os";
import { getChannelzHandlers, type Server } from "@grpc/grpc-js";
import type { LoadReport, NodeInfo } from "../../gen/switchyard/node/v1/node.js";
import { NodeServiceService } from "../../gen/switchyard/node/v1/node_service.js";
import { durationToMs } from "../../clients/grpc/duration.js";
import { InvalidArgumentError } from "./errors.js";
import type { RoleLoad } from "./role.js";
import { implement, type ImplementDeps, type ServiceRegistration } from "./service.js";
import { sleep } from "../../clients/grpc/retry.js";

/** Samples process CPU use over a moving interval. */
export class CpuSampler {
  private last = process.cpuUsage();
  private lastAt = process.hrtime.bigint();
  private cores = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(intervalMs = 1000) {
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  private sample(): void {
    const now = process.hrtime.bigint();
    const usage = process.cpuUsage(this.last);
    const elapsedUs = Number(now - this.lastAt) / 1000;
    this.cores = elapsedUs > 0 ? (usage.user + usage.system) / elapsedUs : 0;
    this.last = process.cpuUsage();
    this.lastAt = now;
  }

  /** CPU cores used by this process over the last interval. */
  get value(): number {
    return this.cores;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** Counts open HTTP/2 sessions of a grpc-js server through channelz. */
function connectionCount(server: Server): Promise<number> {
  const ref = server.getChannelzRef();
  return new Promise((resolve) => {
    const handlers = getChannelzHandlers();
    const call = { request: { server_id: String(ref.id), start_socket_id: "0", max_results: "0" } };
    handlers.GetServerSockets(call as never, ((err: unknown, res?: { socket_ref?: unknown[] }) => {
      resolve(err || !res ? 0 : (res.socket_ref?.length ?? 0));
    }) as never);
  });
}

/** What the NodeService needs to know about its node. */
export interface NodeServiceDeps extends ImplementDeps {
  info: () => NodeInfo;
  server: Server;
  activeCalls: () => number;
  roleLoad: () => RoleLoad | undefined;
  cpu: CpuSampler;
}

const MIN_WATCH_MS = 100;
const MAX_WATCH_MS = 3_600_000;
const MAX_ECHO_BYTES = 1024 * 1024;
const CPU_COUNT = cpus().length;

/** Builds a load report for the node now. */
export async function measureLoad(d: NodeServiceDeps): Promise<LoadReport> {
  const info = d.info();
  const role = d.roleLoad();
  const cpuCores = d.cpu.value;
  return {
    nodeId: info.nodeId,
    role: info.role,
    observedAt: new Date(),
    activeCalls: d.activeCalls(),
    connections: await connectionCount(d.server),
    memoryRssBytes: BigInt(process.memoryUsage.rss()),
    cpuCores,
    cpuCount: CPU_COUNT,
    roleFigures: role?.figures ?? {},
    utilization: Math.min(1, Math.max(0, role?.utilization ?? cpuCores / CPU_COUNT)),
  };
}

/** The NodeService implementation. */
export function createNodeService(d: NodeServiceDeps): ServiceRegistration {
  return implement(
    NodeServiceService,
    {
      getNodeInfo: async () => ({ info: d.info() }),
      getLoad: async () => ({ load: await measureLoad(d) }),
      watchLoad: async (req, sink, ctx) => {
        const ms = durationToMs(req.interval, 1000);
        if (!(ms >= MIN_WATCH_MS && ms <= MAX_WATCH_MS)) {
          throw InvalidArgumentError.field("interval", `must be between 100ms and 1h, got ${ms} ms`, {
            reason: "WATCH_INTERVAL_OUT_OF_RANGE",
          });
        }
        while (!ctx.signal.aborted) {
          await sink.send({ load: await measureLoad(d) });
          await sleep(ms, ctx.signal).catch(() => undefined);
        }
      },
      echo: async (req) => {
        if (req.payload.length > MAX_ECHO_BYTES) {
          throw InvalidArgumentError.field("payload", `at most 1 MiB, got ${req.payload.length} bytes`, {
            reason: "PAYLOAD_TOO_LARGE",
          });
        }
        return { payload: req.payload };
      },
    },
    d,
  );
}

