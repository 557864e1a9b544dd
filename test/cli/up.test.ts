import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { packageRoot } from "../../servers/runtime/paths.js";
import { eventually, onCleanup, tempDir } from "../helpers/nodes.js";

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

describe("switchyard CLI", () => {
  describe("up, status and Ctrl-C", () => {
    it("starts every node as its own process, reports them SERVING, reports a crash and stops the rest cleanly", async function () {
      this.timeout(60_000);
      const dir = tempDir();
      const clusterFile = join(dir, "cluster.yaml");
      writeFileSync(
        clusterFile,
        [
          "defaults:",
          "  shutdown: { graceMs: 3s }",
          "nodes:",
          "  - { id: a, role: bare }",
          "  - id: b",
          "    role: bare",
          "    config:",
          "      node: { labels: { upstream: '${a.address}' } }",
          "  - { id: c, role: bare }",
          "tips:",
          "  - 'try ${b.address}'",
        ].join("\n"),
      );
      let out = "";
      const up: ChildProcess = spawn(process.execPath, [cli(), "up", "--cluster", clusterFile, "--data", join(dir, "data")], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      const exited = new Promise<number | null>((r) => up.once("exit", (code) => r(code)));
      onCleanup(() => {
        if (up.exitCode === null) up.kill("SIGKILL");
      });
      up.stdout?.on("data", (b: Buffer) => (out += b.toString()));
      up.stderr?.on("data", (b: Buffer) => (out += b.toString()));
      await eventually(() => out.includes("Press Ctrl-C to stop."), 30_000);
      assert.match(out, /All 3 nodes serving/);
      assert.match(out, /try 127\.0\.0\.1:\d+/);

      const { stdout } = await run(process.execPath, [cli(), "status", "--data", join(dir, "data"), "--json"]);
      const rows = JSON.parse(stdout) as { id: string; health: string; address: string; info: { labels: Record<string, string>; pid: number } }[];
      assert.deepEqual(rows.map((r) => [r.id, r.health]).sort(), [["a", "SERVING"], ["b", "SERVING"], ["c", "SERVING"]]);
      const a = rows.find((r) => r.id === "a");
      assert.equal(rows.find((r) => r.id === "b")?.info.labels["upstream"], a?.address, "references resolve to the bound address");
      const pids = rows.map((r) => r.info.pid);
      assert.equal(new Set(pids).size, 3, "each node is its own process");

      const c = rows.find((r) => r.id === "c");
      process.kill(c?.info.pid ?? -1, "SIGKILL");
      await eventually(() => out.includes("node c exited unexpectedly"), 10_000);
      const after = await run(process.execPath, [cli(), "status", "--data", join(dir, "data"), "--json"]);
      assert.deepEqual((JSON.parse(after.stdout) as { id: string }[]).map((r) => r.id).sort(), ["a", "b"]);

      up.kill("SIGINT");
      assert.equal(await exited, 0);
      assert.match(out, /All nodes stopped\./);
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

  describe("Ctrl-C while starting", () => {
    it("stops the nodes already started and leaves no process behind", async function () {
      this.timeout(60_000);
      const dir = tempDir();
      const clusterFile = join(dir, "cluster.yaml");
      const chain = ["a", "b", "c", "d", "e"].map((id, i, all) =>
        i === 0 ? `  - { id: ${id}, role: bare }` : `  - { id: ${id}, role: bare, config: { node: { labels: { up: '\${${all[i - 1]}.address}' } } } }`,
      );
      writeFileSync(clusterFile, ["defaults:", "  shutdown: { graceMs: 3s }", "nodes:", ...chain].join("\n"));
      let out = "";
      const up = spawn(process.execPath, [cli(), "up", "--cluster", clusterFile, "--data", join(dir, "data")], { stdio: ["ignore", "pipe", "pipe"] });
      onCleanup(() => {
        if (up.exitCode === null) up.kill("SIGKILL");
      });
      up.stdout?.on("data", (b: Buffer) => (out += b.toString()));
      up.stderr?.on("data", (b: Buffer) => (out += b.toString()));
      const exited = new Promise<number | null>((r) => up.once("exit", (code) => r(code)));
      await eventually(() => out.includes("✓ a"), 30_000);
      up.kill("SIGINT");
      assert.equal(await exited, 1);
      assert.match(out, /start interrupted/);
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
