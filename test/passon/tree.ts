/** Helpers for pass-on tests: start a hierarchy in-process and sign on. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { centerRole, localRole, upperCenterRole } from "../../servers/passon/index.js";
import { packageRoot } from "../../servers/runtime/paths.js";
import type { RunningNode } from "../../servers/runtime/node.js";
import { MaintenanceClient, PassonClient } from "../../clients/passon/index.js";
import { eventually, onCleanup, startTestNode, tempDir } from "../helpers/nodes.js";

/** Bytes of a demo app built by `npm run build`. */
export function demoModule(name: string): Buffer {
  return readFileSync(join(packageRoot(), "dist", "apps", "passon", `${name}.wasm`));
}

/**
 * Fast intervals for tests. The default app time limit is raised from 1 s to 5 s: it is
 * wall-clock time, and on a loaded machine a well-behaved app's load check (instantiation
 * plus selftest in a worker) can take longer than 1 s, which would roll back an install the
 * test expects to succeed. Tests of the limit itself set their own (see "sandbox limits").
 */
export const FAST = { statusInterval: "200ms", offlineAfter: "1s", cacheTtl: "0ms", commandTimeout: "5s", defaultTimeLimit: "5s" };

/** Users every test center knows. */
export const USERS = [
  { name: "alice", password: "alice-pw", apps: ["*"] },
  { name: "bob", password: "bob-pw", apps: ["echo", "upper"] },
];

/** A started hierarchy. */
export interface Tree {
  upper: RunningNode;
  center: RunningNode;
  local: RunningNode;
  dirs: { upper: string; center: string; local: string };
}

/** Starts upper ← center ← local with echo/counter/notes at the local, upper/notes at the center, reverse at the upper. */
export async function startTree(opts: { localExtra?: Record<string, unknown>; centerExtra?: Record<string, unknown> } = {}): Promise<Tree> {
  const root = tempDir();
  const dirs = { upper: join(root, "upper"), center: join(root, "center"), local: join(root, "local") };
  const upper = await startTestNode(upperCenterRole, {
    id: "upper-1",
    dataDir: dirs.upper,
    roleConfig: { ...FAST, apps: [{ app: "reverse", module: "demo:reverse" }] },
  });
  const center = await startCenter(upper.address, dirs.center, opts.centerExtra);
  const local = await startTestNode(localRole, { id: "local-1", dataDir: dirs.local, roleConfig: { ...FAST, parent: center.address, ...opts.localExtra } });
  await waitProvisioned(center, "local-1", ["counter", "echo", "notes"]);
  return { upper, center, local, dirs };
}

/** Starts (or restarts, on the same `dataDir`) the tree's center-1 under the upper at `upperAddress`. */
export function startCenter(upperAddress: string, dataDir: string, extra: Record<string, unknown> = {}): Promise<RunningNode> {
  return startTestNode(centerRole, {
    id: "center-1",
    dataDir,
    roleConfig: {
      ...FAST,
      parent: upperAddress,
      users: USERS,
      apps: [
        { app: "upper", module: "demo:upper" },
        { app: "notes", module: "demo:notes" },
      ],
      provision: [
        { node: "local-1", app: "echo", module: "demo:echo" },
        { node: "local-1", app: "counter", module: "demo:counter" },
        { node: "local-1", app: "notes", module: "demo:notes" },
      ],
      ...extra,
    },
  });
}

/** Waits until the child reports the apps installed and a delegation. */
export async function waitProvisioned(center: RunningNode, child: string, apps: string[]): Promise<void> {
  const m = maintenance(center);
  await eventually(async () => {
    const res = await m.children();
    const c = res.children.find((x) => x.nodeId === child);
    return c?.online && c.delegationNotAfter && apps.every((a) => c.apps.some((x) => x.name === a));
  }, 15_000);
}

/** A signed-on user client at `node`. */
export async function userAt(node: RunningNode | string, user = "alice", password = user === "alice" ? "alice-pw" : "bob-pw"): Promise<PassonClient> {
  const c = new PassonClient(typeof node === "string" ? node : node.address);
  onCleanup(() => c.close());
  await c.signOn(user, password);
  return c;
}

/** A maintenance client for a center. */
export function maintenance(node: RunningNode): MaintenanceClient {
  const c = new MaintenanceClient(node.address);
  onCleanup(() => c.close());
  return c;
}
