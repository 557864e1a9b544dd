import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { packageRoot } from "../../servers/runtime/paths.js";
import { eventually, onCleanup, tempDir } from "../helpers/nodes.js";
import { NODE_GRANT_KEYS } from "../content/cluster.js";

const run = promisify(execFile);
const cli = (): string => join(packageRoot(), "bin", "switchyard.js");

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A temporary directory with `cluster.yaml` made of `nodes` under a 3 s shutdown grace. */
function clusterDir(nodes: string[], extra: string[] = []): { dir: string; clusterFile: string } {
  const dir = tempDir();
  const clusterFile = join(dir, "cluster.yaml");
  writeFileSync(clusterFile, ["defaults:", "  shutdown: { graceMs: 3s }", "nodes:", ...nodes, ...extra].join("\n"));
  return { dir, clusterFile };
}

/** `switchyard up` running in the background: its output so far and its exit code. */
function startUp(clusterFile: string, dataDir: string): { up: ChildProcess; out: () => string; exited: Promise<number | null> } {
  let out = "";
  const up = spawn(process.execPath, [cli(), "up", "--cluster", clusterFile, "--data", dataDir], { stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<number | null>((r) => up.once("exit", (code) => r(code)));
  onCleanup(() => {
    if (up.exitCode === null) up.kill("SIGKILL");
  });
  up.stdout?.on("data", (b: Buffer) => (out += b.toString()));
  up.stderr?.on("data", (b: Buffer) => (out += b.toString()));
  return { up, out: () => out, exited };
}

describe("switchyard CLI", () => {
  describe("up, status and Ctrl-C", () => {
    it("starts every node as its own process, reports them SERVING, reports a crash and stops the rest cleanly", async function () {
      this.timeout(60_000);
      const { dir, clusterFile } = clusterDir(
        ["  - { id: a, role: bare }", "  - id: b", "    role: bare", "    config:", "      node: { labels: { upstream: '${a.address}' } }", "  - { id: c, role: bare }"],
        ["tips:", "  - 'try ${b.address}'"],
      );
      const { up, out, exited } = startUp(clusterFile, join(dir, "data"));
      await eventually(() => out().includes("Press Ctrl-C to stop."), 30_000);
      assert.match(out(), /All 3 nodes serving/);
      assert.match(out(), /try 127\.0\.0\.1:\d+/);

      const { stdout } = await run(process.execPath, [cli(), "status", "--data", join(dir, "data"), "--json"]);
      const rows = JSON.parse(stdout) as { id: string; health: string; address: string; info: { labels: Record<string, string>; pid: number } }[];
      assert.deepEqual(rows.map((r) => [r.id, r.health]).sort(), [["a", "SERVING"], ["b", "SERVING"], ["c", "SERVING"]]);
      const a = rows.find((r) => r.id === "a");
      assert.equal(rows.find((r) => r.id === "b")?.info.labels["upstream"], a?.address, "references resolve to the bound address");
      const pids = rows.map((r) => r.info.pid);
      assert.equal(new Set(pids).size, 3, "each node is its own process");

      const c = rows.find((r) => r.id === "c");
      process.kill(c?.info.pid ?? -1, "SIGKILL");
      await eventually(() => out().includes("node c exited unexpectedly"), 10_000);
      const after = await run(process.execPath, [cli(), "status", "--data", join(dir, "data"), "--json"]);
      assert.deepEqual((JSON.parse(after.stdout) as { id: string }[]).map((r) => r.id).sort(), ["a", "b"]);

      up.kill("SIGINT");
      assert.equal(await exited, 0);
      assert.match(out(), /All nodes stopped\./);
      for (const pid of pids) assert.equal(alive(pid), false, `node process ${pid} left behind`);
      assert.throws(() => readFileSync(join(dir, "data", "cluster.json")), "cluster.json removed after a clean stop");
      assert.match(readFileSync(join(dir, "data", "a", "node.log"), "utf8"), /"msg":"node stopped"/);
    });

    it("fails with a clear message when a cluster file refers to an unknown node", async () => {
      const dir = tempDir();
      const clusterFile = join(dir, "cluster.yaml");
      writeFileSync(clusterFile, "nodes:\n  - id: a\n    role: bare\n    config: { node: { labels: { x: '${zz.address}' } } }\n");
      const res = await run(process.execPath, [cli(), "up", "--cluster", clusterFile, "--data", join(dir, "data")]).catch((e: { code: number; stderr: string }) => e);
      assert.equal((res as { code: number }).code, 1);
      assert.match((res as { stderr: string }).stderr, /node a refers to unknown node zz/);
    });
  });

  describe("V8 options per role", () => {
    it("starts a distribution node with its role's V8 options and other roles without", async function () {
      this.timeout(60_000);
      const { dir, clusterFile } = clusterDir([
        "  - { id: plain, role: bare }",
        "  - id: dn",
        "    role: distribution-node",
        `    config: { distributionNode: { grantKeys: [{ id: k1, publicKey: "${NODE_GRANT_KEYS[0]?.publicKey}" }] } }`,
      ]);
      const { up, out, exited } = startUp(clusterFile, join(dir, "data"));
      await eventually(() => out().includes("Press Ctrl-C to stop."), 30_000);
      const { stdout } = await run(process.execPath, [cli(), "status", "--data", join(dir, "data"), "--json"]);
      const args = (id: string): string[] => {
        const pid = (JSON.parse(stdout) as { id: string; info: { pid: number } }[]).find((r) => r.id === id)?.info.pid;
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      };
      assert.ok(args("dn").includes("--max-semi-space-size=32"), args("dn").join(" "));
      assert.ok(!args("plain").some((a) => a.startsWith("--max-semi-space-size")), args("plain").join(" "));
      up.kill("SIGINT");
      assert.equal(await exited, 0);
    });
  });

  describe("Ctrl-C while starting", () => {
    it("stops the nodes already started and leaves no process behind", async function () {
      this.timeout(60_000);
      const chain = ["a", "b", "c", "d", "e"].map((id, i, all) =>
        i === 0 ? `  - { id: ${id}, role: bare }` : `  - { id: ${id}, role: bare, config: { node: { labels: { up: '\${${all[i - 1]}.address}' } } } }`,
      );
      const { dir, clusterFile } = clusterDir(chain);
      const { up, out, exited } = startUp(clusterFile, join(dir, "data"));
      await eventually(() => out().includes("✓ a"), 30_000);
      up.kill("SIGINT");
      assert.equal(await exited, 1);
      assert.match(out(), /start interrupted/);
      const { stdout } = await run("ps", ["-eo", "args"]);
      assert.equal(stdout.split("\n").filter((l) => l.includes(dir)).length, 0, "no node of this cluster is left running");
    });
  });

  describe("status", () => {
    it("exits non-zero and says how to start a cluster when none runs", async () => {
      const dir = tempDir();
      const res = await run(process.execPath, [cli(), "status", "--data", dir]).catch((e: { code: number; stderr: string }) => e);
      assert.notEqual((res as { code: number }).code, 0);
      assert.match((res as { stderr: string }).stderr, /no running cluster found/);
    });
  });
});
