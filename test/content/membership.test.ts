import assert from "node:assert/strict";
import { status as Status } from "@grpc/grpc-js";
import { ChunkingMode, HistoryKind, NodeState } from "../../gen/switchyard/content/v1/content.js";
import { ContentClient, DistributionNodeClient } from "../../clients/content/index.js";
import { parseRichError } from "../../clients/grpc/index.js";
import { GrantSigner } from "../../servers/content/grant.js";
import { distributionNodeRole } from "../../servers/content/role-distribution-node.js";
import type { RunningNode } from "../../servers/runtime/node.js";
import { eventually, onCleanup, spawnNode, startTestNode, tempDir } from "../helpers/nodes.js";
import { ADMIN_TOKEN, GRANT_KEYS, NODE_TOKEN, READER_TOKEN, TOKENS, collect, chunks, nodeConfig, startContentCluster, testBytes } from "./cluster.js";

const g = new GrantSigner(GRANT_KEYS);

async function holdings(addresses: string[]): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>();
  for (const a of addresses) {
    const c = new DistributionNodeClient(a);
    out.set(a, new Set(await c.listAll(() => g.manage("test"))));
    c.close();
  }
  return out;
}

describe("ContentManagerService", () => {
  describe("DrainNode and RemoveNode", () => {
    it("refuses to remove a node that holds needed pieces, drains it with zero loss, then removes it", async () => {
      const c = await startContentCluster(4);
      const data = [testBytes(700_000), testBytes(300_000)];
      const ids = [];
      for (const d of data) ids.push((await c.client.upload("d", chunks(d), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 })).contentId);
      await assert.rejects(c.client.manager.removeNode("dn-1"), (err) => {
        const st = parseRichError(err);
        return st.code === Status.FAILED_PRECONDITION && st.errorInfo?.reason === "WOULD_UNDER_REPLICATE" && /drain it first/.test(st.message);
      });
      const started = await c.client.manager.drainNode("dn-1");
      assert.ok(started && started.state !== NodeState.ACTIVE);
      await eventually(async () => (await c.client.manager.listNodes()).find((n) => n.nodeId === "dn-1")?.state === NodeState.DRAINED, 20_000);
      const dn1 = (await c.client.manager.listNodes()).find((n) => n.nodeId === "dn-1");
      assert.equal(dn1?.pieceCount, 0n);
      assert.ok((dn1?.drainedPieces ?? 0n) > 0n);
      // Nothing is left on the drained node, and every piece still has 2 replicas.
      const held = await holdings([c.nodes[0]?.address as string]);
      assert.equal(held.get(c.nodes[0]?.address as string)?.size, 0);
      for (const [i, id] of ids.entries()) {
        const m = await c.client.manager.getManifest(id);
        for (const p of m.pieces) {
          assert.equal(p.replicas.length, 2);
          assert.ok(!p.replicas.some((r) => r.nodeId === "dn-1"));
        }
        assert.ok((await collect(await c.client.download(id))).equals(data[i] as Buffer));
      }
      assert.equal(await c.client.manager.removeNode("dn-1"), 0);
      assert.ok(!(await c.client.manager.listNodes()).some((n) => n.nodeId === "dn-1"));
      await assert.rejects(c.client.manager.removeNode("dn-1"), (err) => parseRichError(err).code === Status.NOT_FOUND);
    });

    it("resumes a drain after the manager is killed (SIGKILL) in the middle", async function () {
      this.timeout(90_000);
      const nodes: RunningNode[] = [];
      for (let i = 1; i <= 3; i++) nodes.push(await startTestNode(distributionNodeRole, { id: `rdn-${i}`, roleConfig: nodeConfig() }));
      const dir = tempDir();
      const managerCfg = (listen: string) => ({
        node: { id: "rcm", role: "content-manager", listen },
        log: { level: "warn" },
        contentManager: { tokens: TOKENS, grantKeys: GRANT_KEYS, nodes: nodes.map((n) => n.address), drainConcurrency: 1, nodePollInterval: "500ms", mirror: { interval: 0 } },
      });
      const m1 = await spawnNode(managerCfg("127.0.0.1:0"), dir);
      const c1 = new ContentClient(m1.address, { token: ADMIN_TOKEN });
      onCleanup(() => c1.close());
      const data = testBytes(3 * 1024 * 1024);
      const content = await c1.upload("r", chunks(data), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      await c1.manager.drainNode("rdn-1");
      // Kill the manager once the drain has moved some, but not all, pieces.
      await eventually(async () => {
        const n = (await c1.manager.listNodes()).find((x) => x.nodeId === "rdn-1");
        return (n?.drainedPieces ?? 0n) >= 2n;
      }, 20_000, 5);
      m1.child.kill("SIGKILL");
      await m1.exited;
      c1.close();
      const m2 = await spawnNode(managerCfg(m1.address), dir);
      const c2 = new ContentClient(m2.address, { token: ADMIN_TOKEN });
      onCleanup(() => c2.close());
      await eventually(async () => (await c2.manager.listNodes()).find((n) => n.nodeId === "rdn-1")?.state === NodeState.DRAINED, 60_000);
      assert.ok((await collect(await c2.download(content.contentId))).equals(data));
      const held = await holdings(nodes.map((n) => n.address));
      assert.equal(held.get(nodes[0]?.address as string)?.size, 0, "nothing left on the drained node");
      const m = await c2.manager.getManifest(content.contentId);
      for (const p of m.pieces) assert.equal(new Set(p.replicas.map((r) => r.nodeId)).size, 2);
      assert.equal(await c2.manager.removeNode("rdn-1"), 0);
    });
  });

  describe("AddNode", () => {
    it("registers a node that starts with the manager's address and a register token, and nothing more", async () => {
      const c = await startContentCluster(1);
      await startTestNode(distributionNodeRole, { id: "reg-1", roleConfig: nodeConfig({ manager: c.manager.address, managerToken: NODE_TOKEN }) });
      await eventually(async () => (await c.client.manager.listNodes()).some((x) => x.nodeId === "reg-1"), 20_000);
      const nodeClient = c.clientFor(NODE_TOKEN);
      await assert.rejects(nodeClient.manager.listContents(), (err) => parseRichError(err).errorInfo?.reason === "PERMISSION_MISSING");
    });
  });

  describe("DeleteContent", () => {
    it("deletes pieces on every node but keeps pieces another content shares", async () => {
      const c = await startContentCluster(3);
      const shared = testBytes(200_000);
      const a = await c.client.upload("a", chunks(Buffer.concat([shared, testBytes(100_000)])), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      const b = await c.client.upload("b", chunks(Buffer.concat([shared, testBytes(50_000)])), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      const r = await c.client.manager.deleteContent(a.contentId);
      assert.equal(r.piecesShared, 3); // the three full 64 KiB pieces of `shared`
      assert.equal(r.piecesDeleted, 2);
      await assert.rejects(c.client.manager.getManifest(a.contentId), (err) => parseRichError(err).code === Status.NOT_FOUND);
      await c.client.manager.deleteContent(b.contentId);
      const held = await holdings(c.nodes.map((n) => n.address));
      for (const s of held.values()) assert.equal(s.size, 0);
    });
  });

  describe("LocatePiece and Repair", () => {
    it("finds pieces by records and by asking nodes, re-creates lost replicas and deletes orphans", async () => {
      const c = await startContentCluster(3, { manager: { orphanGrace: "0ms" } });
      const data = testBytes(300_000);
      const content = await c.client.upload("rep", chunks(data), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      const m = await c.client.manager.getManifest(content.contentId);
      const p = m.pieces[0];
      assert.ok(p);
      // A replica vanishes behind the manager's back, and a stray piece appears.
      const victim = p.replicas[0];
      assert.ok(victim);
      const vc = new DistributionNodeClient(victim.address);
      onCleanup(() => vc.close());
      await vc.delete(g.manage("test"), p.pieceId);
      const stray = Buffer.from("stray bytes nobody recorded");
      const { createHash } = await import("node:crypto");
      const strayId = createHash("sha256").update(stray).digest("hex");
      await vc.put(g.manage("test"), strayId, stray);
      const before = await c.client.manager.locatePiece(p.pieceId, true);
      assert.equal(before.recorded.length, 2);
      assert.equal(before.reportedNodeIds.length, 1);
      assert.deepEqual(before.contentIds, [content.contentId]);
      const dry = await c.client.manager.repair(true);
      assert.equal(dry.missingReplicas, 1n);
      const r = await c.client.manager.repair(false);
      assert.equal(r.missingReplicas, 1n);
      assert.equal(r.replicasCreated, 1n);
      assert.equal(r.orphansDeleted, 1n);
      assert.equal(r.piecesLost, 0n);
      const after = await c.client.manager.locatePiece(p.pieceId, true);
      assert.equal(after.reportedNodeIds.length, 2);
      assert.deepEqual([...after.reportedNodeIds].sort(), after.recorded.map((x) => x.nodeId).sort());
      assert.ok(!(await vc.has(g.manage("test"), [strayId])).held.length);
      assert.ok((await collect(await c.client.download(content.contentId))).equals(data));
    });
  });

  describe("mirrors", () => {
    it("adds mirror replicas when demand rises and removes them when it falls, never under the base factor", async function () {
      this.timeout(60_000);
      const c = await startContentCluster(4, { manager: { mirror: { abovePerMinute: 20, belowPerMinute: 5, interval: "100ms", window: "3s", dwell: "200ms", maxReplicas: 1 } } });
      const content = await c.client.upload("hot", chunks(testBytes(200_000)), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
      const reader = c.clientFor(READER_TOKEN);
      for (let i = 0; i < 5; i++) await reader.manager.getManifest(content.contentId); // 5 in 3 s = 100/min
      await eventually(async () => (await c.client.manager.getContent(content.contentId)).mirrorReplicas === 1, 10_000);
      const m = await reader.manager.getManifest(content.contentId);
      for (const p of m.pieces) {
        assert.equal(p.replicas.length, 3);
        assert.equal(p.replicas.filter((r) => r.mirror).length, 1);
      }
      // Demand stops: after the window the mirror goes, the base replicas stay.
      await eventually(async () => (await c.client.manager.getContent(content.contentId)).mirrorReplicas === 0, 15_000);
      const m2 = await c.client.manager.getManifest(content.contentId);
      for (const p of m2.pieces) {
        assert.equal(p.replicas.length, 2);
        assert.ok(!p.replicas.some((r) => r.mirror));
      }
    });
  });

  describe("ListHistory", () => {
    it("logs uploads, manifests, downloads and deletes with who, what, bytes and when", async () => {
      const c = await startContentCluster(2);
      const content = await c.client.upload("h", chunks(testBytes(10_000)));
      const reader = c.clientFor(READER_TOKEN);
      const s = await reader.download(content.contentId);
      await collect(s);
      await eventually(async () => (await c.client.manager.listHistory({ kind: HistoryKind.DOWNLOAD })).entries.length === 1);
      await c.client.manager.deleteContent(content.contentId);
      const all = (await c.client.manager.listHistory({ contentId: content.contentId })).entries;
      assert.deepEqual(all.map((e) => [HistoryKind[e.kind], e.principal]), [["DELETE", "admin"], ["DOWNLOAD", "reader"], ["MANIFEST", "reader"], ["UPLOAD", "admin"]]);
      assert.ok(all.every((e) => e.bytes === 10_000n && e.at instanceof Date && e.name === "h"));
      const page = await c.client.manager.listHistory({ pageSize: 2 });
      assert.equal(page.entries.length, 2);
      const next = await c.client.manager.listHistory({ pageSize: 2, pageToken: page.nextPageToken });
      assert.deepEqual(next.entries.map((e) => HistoryKind[e.kind]), ["MANIFEST", "UPLOAD"]);
      await assert.rejects(reader.manager.listHistory({}), (err) => parseRichError(err).code === Status.PERMISSION_DENIED);
    });
  });
});
