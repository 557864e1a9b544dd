import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { ChunkingMode, NodeState } from "../../gen/switchyard/content/v1/content.js";
import { ContentClient } from "../../clients/content/index.js";
import { contentManagerRole } from "../../servers/content/role-content-manager.js";
import { eventually, onCleanup, spawnNode, startTestNode, type SpawnedNode } from "../helpers/nodes.js";
import { ADMIN_TOKEN, managerConfig, nodeConfig, chunks, testBytes } from "./cluster.js";

describe("content downloader", () => {
  describe("faults", () => {
    for (const threads of [0, 2]) {
      const where = threads ? ` (fetching in ${threads} worker threads)` : "";
      it(`finishes a download byte-exactly when a node is killed (SIGKILL) in the middle${where}`, async function () {
        this.timeout(60_000);
        const spawned: SpawnedNode[] = [];
        for (let i = 1; i <= 3; i++) {
          // Paced nodes so the download lasts long enough to kill one mid-way.
          spawned.push(await spawnNode({ node: { id: `kdn-${i}`, role: "distribution-node" }, distributionNode: nodeConfig({ bandwidthLimit: "4MiB" }), log: { level: "warn" } }));
        }
        const manager = await startTestNode(contentManagerRole, { id: "kcm", roleConfig: managerConfig(spawned.map((s) => s.address)) });
        const client = new ContentClient(manager.address, { token: ADMIN_TOKEN });
        onCleanup(() => client.close());
        const data = testBytes(12 * 1024 * 1024);
        const content = await client.upload("kill", chunks(data), { chunking: ChunkingMode.FIXED, pieceSize: 256 * 1024 });
        const victim = spawned[0];
        assert.ok(victim);
        let killed = false;
        const failovers: string[] = [];
        const stream = await client.download(content.contentId, {
          concurrency: 6,
          threads,
          onEvent: (e) => {
            if (e.type === "piece" && e.index >= 4 && !killed) {
              killed = true;
              victim.child.kill("SIGKILL");
            }
            if (e.type === "failover") failovers.push(e.node);
          },
        });
        const h = createHash("sha256");
        let n = 0;
        for await (const chunk of stream) {
          h.update(chunk as Buffer);
          n += (chunk as Buffer).length;
        }
        assert.ok(killed, "the node was killed during the download");
        assert.equal(n, data.length);
        assert.equal(h.digest("hex"), createHash("sha256").update(data).digest("hex"));
        assert.ok(failovers.includes("kdn-1") || stream.stats.hedges > 0, `expected a failover off kdn-1 (failovers: ${failovers.join(",")})`);
        await victim.exited;
      });

      it(`hedges around a node that stalls and still delivers in order${where}`, async function () {
        this.timeout(60_000);
        const { startContentCluster } = await import("./cluster.js");
        // dn-1 is paced to 64 KiB/s: any piece asked of it first is hedged elsewhere.
        const c = await startContentCluster(3, { node: (i) => (i === 0 ? { bandwidthLimit: "64KiB" } : {}) });
        const data = testBytes(4 * 1024 * 1024);
        const content = await c.client.upload("slow", chunks(data), { chunking: ChunkingMode.FIXED, pieceSize: 256 * 1024 });
        const t0 = Date.now();
        const stream = await c.client.download(content.contentId, { concurrency: 4, hedgeMinMs: 100, hedgeInitialMs: 300, probe: true, threads });
        const parts: Buffer[] = [];
        for await (const b of stream) parts.push(b as Buffer);
        assert.ok(Buffer.concat(parts).equals(data));
        // Without hedging, pieces of dn-1 alone (about 2/3 of 16 pieces x 256 KiB at 64 KiB/s) would take > 30 s.
        assert.ok(Date.now() - t0 < 20_000, `took ${Date.now() - t0} ms`);
        assert.ok(stream.stats.hedges > 0 || (stream.stats.byNode["dn-1"] ?? 0) === 0, JSON.stringify(stream.stats));
      });
    }
  });

  describe("drain", () => {
    it("finishes draining a node that is killed (SIGKILL) mid-drain, from the other replicas", async function () {
      this.timeout(60_000);
      const spawned: SpawnedNode[] = [];
      for (let i = 1; i <= 3; i++) {
        spawned.push(await spawnNode({ node: { id: `ddn-${i}`, role: "distribution-node" }, distributionNode: nodeConfig({ bandwidthLimit: "1MiB" }), log: { level: "warn" } }));
      }
      const manager = await startTestNode(contentManagerRole, { id: "dcm", roleConfig: managerConfig(spawned.map((s) => s.address), { drainConcurrency: 2 }) });
      const client = new ContentClient(manager.address, { token: ADMIN_TOKEN });
      onCleanup(() => client.close());
      const data = testBytes(3 * 1024 * 1024);
      const content = await client.upload("drain-kill", chunks(data), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      await client.manager.drainNode("ddn-1");
      await eventually(async () => ((await client.manager.listNodes()).find((n) => n.nodeId === "ddn-1")?.drainedPieces ?? 0n) >= 2n, 20_000, 10);
      spawned[0]?.child.kill("SIGKILL");
      await eventually(async () => (await client.manager.listNodes()).find((n) => n.nodeId === "ddn-1")?.state === NodeState.DRAINED, 40_000);
      const m = await client.manager.getManifest(content.contentId);
      for (const p of m.pieces) {
        assert.equal(new Set(p.replicas.map((r) => r.nodeId)).size, 2);
        assert.ok(!p.replicas.some((r) => r.nodeId === "ddn-1"));
      }
      const got = createHash("sha256");
      for await (const b of await client.download(content.contentId)) got.update(b as Buffer);
      assert.equal(got.digest("hex"), createHash("sha256").update(data).digest("hex"));
      assert.equal(await client.manager.removeNode("ddn-1"), 0);
    });
  });

  describe("large content", () => {
    it("streams 256 MiB up and down without holding it in memory", async function () {
      this.timeout(120_000);
      const { startContentCluster } = await import("./cluster.js");
      const c = await startContentCluster(2, { manager: { replicationFactor: 1, minReplicas: 1 } });
      const SIZE = 256 * 1024 * 1024;
      const block = testBytes(1024 * 1024 + 17);
      async function* source(): AsyncGenerator<Buffer> {
        for (let off = 0; off < SIZE; off += block.length) yield block.subarray(0, Math.min(block.length, SIZE - off));
      }
      const want = createHash("sha256");
      for await (const b of source()) want.update(b);
      global.gc?.();
      // Buffers live outside the V8 heap: count heap plus array buffers. RSS also keeps
      // memory malloc has freed but not returned, which made it drift between runs.
      const held = (): number => {
        const m = process.memoryUsage();
        return m.heapUsed + m.arrayBuffers;
      };
      const base = held();
      let peak = base;
      const sampler = setInterval(() => (peak = Math.max(peak, held())), 20);
      onCleanup(() => clearInterval(sampler));
      const content = await c.client.upload("big", source(), { chunking: ChunkingMode.FIXED, pieceSize: 4 * 1024 * 1024 });
      assert.equal(Number(content.size), SIZE);
      const got = createHash("sha256");
      let n = 0;
      // In this thread (threads: 0): fetch workers keep their buffers in their own isolates,
      // which this process-wide count of the main thread's heap would not see.
      for await (const b of await c.client.download(content.contentId, { concurrency: 4, threads: 0 })) {
        got.update(b as Buffer);
        n += (b as Buffer).length;
      }
      clearInterval(sampler);
      assert.equal(n, SIZE);
      assert.equal(got.digest("hex"), want.digest("hex"));
      const growth = (peak - base) / 1024 / 1024;
      // The manager and both nodes run in this process, with 4 MiB pieces in flight at
      // concurrency 4 on every side, and garbage buffers wait for the collector (160-175 MiB
      // seen). Holding the content would need at least 256 MiB, so stay below that.
      assert.ok(growth < 240, `memory held grew by ${growth.toFixed(0)} MiB while moving 256 MiB twice`);
    });
  });
});
