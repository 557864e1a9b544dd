import assert from "node:assert/strict";
import { join } from "node:path";
import { parseRichError } from "../../clients/grpc/rich-error.js";
import { MaintenanceClient, PassonClient } from "../../clients/passon/index.js";
import { eventually, onCleanup, spawnNode, tempDir, type SpawnedNode } from "../helpers/nodes.js";
import { FAST, USERS } from "./tree.js";
import { runPythonCheck } from "../helpers/python.js";

const CENTER = (port: number) => ({
  node: { id: "center-k", role: "center", listen: `127.0.0.1:${port}` },
  center: { ...FAST, users: USERS, apps: [{ app: "upper", module: "demo:upper" }], provision: [{ node: "local-k", app: "echo", module: "demo:echo" }] },
});
const LOCAL = (parent: string) => ({ node: { id: "local-k", role: "local" }, local: { ...FAST, parent } });

async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function clients(local: string, center: string): { user: PassonClient; ops: MaintenanceClient } {
  const user = new PassonClient(local);
  const ops = new MaintenanceClient(center);
  onCleanup(() => {
    user.close();
    ops.close();
  });
  return { user, ops };
}

async function calls(ops: MaintenanceClient): Promise<number> {
  const b = await ops.billing("alice");
  return Number(b.lines.filter((l) => l.app === "echo").reduce((n, l) => n + l.calls, 0n));
}

describe("Pass-on faults", () => {
  describe("billing", () => {
    it("counts every call exactly once through kill -9 of the local (with queued records) and of the center", async () => {
      const dir = tempDir();
      const port = await freePort();
      let center: SpawnedNode = await spawnNode(CENTER(port), join(dir, "c"));
      const local = await spawnNode(LOCAL(center.address), join(dir, "l"));
      const { user, ops } = clients(local.address, center.address);
      await eventually(async () => (await ops.children()).children.some((c) => c.nodeId === "local-k" && c.online && c.apps.length > 0), 15_000);
      await user.signOn("alice", "alice-pw");
      for (let i = 0; i < 10; i++) await user.invoke("echo", "x");
      await eventually(async () => (await calls(ops)) === 10);
      // Center down: the local keeps serving its delegated app, queues the bills, and reports pass-on as UNAVAILABLE.
      center.child.kill("SIGKILL");
      await center.exited;
      for (let i = 0; i < 15; i++) await user.invoke("echo", "y");
      await assert.rejects(user.invoke("upper", "y"), (err: unknown) => parseRichError(err).errorInfo?.reason === "PARENT_UNREACHABLE");
      // kill -9 the local with 15 queued records, restart it on the same data.
      local.child.kill("SIGKILL");
      await local.exited;
      center = await spawnNode(CENTER(port), join(dir, "c"));
      const local2 = await spawnNode({ ...LOCAL(center.address), node: { id: "local-k", role: "local", dataDir: join(dir, "l", "local-k") } }, join(dir, "l"));
      const again = clients(local2.address, center.address);
      await eventually(async () => (await calls(again.ops)) === 25, 15_000);
      // The center shows the true state: online again, nothing queued.
      await eventually(async () => {
        const c = (await again.ops.children()).children.find((x) => x.nodeId === "local-k");
        return c?.online && c.queuedRecords === 0n;
      });
      await again.user.signOn("alice", "alice-pw");
      assert.equal((await again.user.invoke("upper", "ok")).servedBy, "center-k");
      assert.equal(await calls(again.ops), 25);
    });
  });

  describe("disconnected operation", () => {
    it("shows a local whose link is gone as offline with its last report, never as healthy", async () => {
      const dir = tempDir();
      const port = await freePort();
      const center = await spawnNode(CENTER(port), join(dir, "c"));
      const local = await spawnNode(LOCAL(center.address), join(dir, "l"));
      const { ops } = clients(local.address, center.address);
      await eventually(async () => (await ops.children()).children.some((c) => c.nodeId === "local-k" && c.online));
      local.child.kill("SIGKILL");
      await eventually(async () => {
        const c = (await ops.children()).children.find((x) => x.nodeId === "local-k");
        return c && !c.online && c.lastReport !== undefined;
      });
    });
  });

  describe("polyglot", () => {
    it("signs on and invokes through a local from Python, passed on to the center", async () => {
      const dir = tempDir();
      const port = await freePort();
      const center = await spawnNode(CENTER(port), join(dir, "c"));
      const local = await spawnNode(LOCAL(center.address), join(dir, "l"));
      const { ops } = clients(local.address, center.address);
      await eventually(async () => (await ops.children()).children.some((c) => c.nodeId === "local-k" && c.online && c.apps.length > 0), 15_000);
      const out = (await runPythonCheck("passon", [local.address])) as Record<string, unknown>;
      assert.deepEqual(out["local"], { response: "hi", servedBy: "local-k", hops: ["local-k"] });
      assert.deepEqual(out["passedOn"], { response: "HI", servedBy: "center-k", hops: ["local-k", "center-k"] });
      assert.equal((out["missing"] as Record<string, string>)["reason"], "APP_NOT_FOUND");
      assert.equal((out["missing"] as Record<string, string>)["code"], "NOT_FOUND");
    });
  });
});
