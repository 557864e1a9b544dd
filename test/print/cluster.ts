/**
 * A print cluster for a whole describe block (render children are slow to start, so
 * suites share one): a print-store, N print-workers and a print-jobs node in this process
 * on 127.0.0.1:0. Stop it in `after`.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadNodeConfig } from "../../servers/runtime/config.js";
import { startNode, type RunningNode } from "../../servers/runtime/node.js";
import type { RoleDefinition } from "../../servers/runtime/role.js";
import { printJobsRole } from "../../servers/print/role-print-jobs.js";
import { printStoreRole } from "../../servers/print/role-print-store.js";
import { printWorkerRole } from "../../servers/print/role-print-worker.js";
import type { PrintStore } from "../../servers/print/store.js";
import { testLogger } from "../helpers/nodes.js";

/** Nodes of a running print cluster. */
export interface PrintCluster {
  dir: string;
  store: RunningNode;
  workers: RunningNode[];
  jobs: RunningNode;
  /** The print store's state, for cleanup checks. */
  printStore: PrintStore;
  /** Starts one more node of `role` with this role section (stopped by stop()). */
  add<C>(role: RoleDefinition<C>, id: string, section: unknown): Promise<RunningNode>;
  stop(): Promise<void>;
}

/** Options of a print cluster. */
export interface PrintClusterOptions {
  workers?: number;
  balancing?: "round_robin" | "least_loaded";
  store?: Record<string, unknown>;
  worker?: Record<string, unknown>;
  jobs?: Record<string, unknown>;
}

/** Starts a store, workers and a job service. */
export async function startPrintCluster(o: PrintClusterOptions = {}): Promise<PrintCluster> {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-print-"));
  const nodes: RunningNode[] = [];
  const start = async <C>(role: RoleDefinition<C>, id: string, section: unknown): Promise<RunningNode> => {
    const key = role.role.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
    const raw = { node: { id, role: role.role, listen: "127.0.0.1:0", dataDir: join(dir, id) }, metrics: { listen: "" }, shutdown: { graceMs: 2000 }, [key]: section };
    const schemas = new Map([[role.role, role.configSchema as import("zod").ZodType]]);
    const n = await startNode(loadNodeConfig({ raw }, schemas) as never, role as RoleDefinition<never>, { log: testLogger() });
    nodes.push(n);
    return n;
  };
  // In-process nodes: leave the test process's GC heuristics alone (heap.ts).
  const store = await start(printStoreRole, "pstore", { heapGrowingPercent: 0, ...o.store });
  const workers: RunningNode[] = [];
  for (let i = 1; i <= (o.workers ?? 2); i++) {
    workers.push(await start(printWorkerRole, `pworker-${i}`, { store: store.address, heapGrowingPercent: 0, render: { processes: 1, pageTimeoutMs: "60s" }, ...o.worker }));
  }
  const jobs = await start(printJobsRole, "pjobs", { workers: workers.map((w) => w.address), balancing: o.balancing ?? "round_robin", ...o.jobs });
  return {
    dir,
    store,
    workers,
    jobs,
    printStore: (store.role as unknown as { store: PrintStore }).store,
    add: start,
    stop: async () => {
      for (const n of nodes.reverse()) await n.stop("suite over");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
