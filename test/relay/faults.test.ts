import assert from "node:assert/strict";
import { join } from "node:path";
import { status as Status } from "@grpc/grpc-js";
import { LeaveReason, type UsageRecord } from "../../clients/relay/index.js";
import { NodeStore } from "../../servers/runtime/store.js";
import { eventually, onCleanup, spawnNode, tempDir, testLogger } from "../helpers/nodes.js";
import { publisher, relayClient, sourceClient, startRelay, startSource, streamListed, subscribed, type RecordingSubscriber } from "./helpers.js";

const CLOCK = { generators: [{ kind: "ticker", name: "clock", interval: "10ms" }] };

describe("Relay", () => {
  describe("usage delivery", () => {
    it("keeps reports while the source is down and delivers each once after it returns", async () => {
      const dir = tempDir();
      const source = await startSource(CLOCK, { dataDir: join(dir, "source") });
      const relay = await startRelay(source.address);
      const via = sourceClient(relay.address);
      const subs: RecordingSubscriber[] = [];
      for (let i = 0; i < 3; i++) subs.push(await subscribed(via, "clock", `viewer-${i}`));
      await eventually(() => subs.every((s) => s.frames.length >= 5));

      await source.stop("test: source down");
      // Nobody hangs: every subscriber gets a clear status.
      for (const s of subs) assert.equal((await s.ended).code, Status.UNAVAILABLE);
      const ops = relayClient(relay.address);
      await eventually(async () => (await ops.listSessions()).pendingUsageRecords === 3n);
      // Reports keep failing while the source is down; they stay stored.
      await new Promise((r) => setTimeout(r, 300));
      assert.equal((await ops.listSessions()).pendingUsageRecords, 3n);

      const back = await startSource(CLOCK, { dataDir: join(dir, "source"), listen: source.address });
      const src = sourceClient(back.address);
      const records = await eventually(async () => {
        const r = await src.listUsage("clock");
        return r.length >= 3 ? r : undefined;
      });
      await eventually(async () => (await ops.listSessions()).pendingUsageRecords === 0n);
      assert.equal((await src.listUsage("clock")).length, 3, "each record counted once");
      for (const s of subs) {
        const r = records?.find((x) => x.subscriberId === `viewer-${subs.indexOf(s)}`);
        assert.ok(r, "a record per subscriber");
        assert.equal(r.frames, BigInt(s.frames.length));
        assert.equal(r.bytes, BigInt(s.bytes));
        assert.equal(r.leaveReason, LeaveReason.UPSTREAM_LOST);
      }
    });

    it("delivers reports a relay stored before kill -9 once it is restarted", async () => {
      const dir = tempDir();
      const source = await startSource(CLOCK, { dataDir: join(dir, "source") });
      const relayCfg = {
        node: { id: "relay-k9", role: "relay" },
        relay: { upstream: source.address, linger: "200ms", usageReport: { retryMin: "50ms", retryMax: "300ms" } },
      };
      const relay = await spawnNode(relayCfg, join(dir, "relay"));
      const via = sourceClient(relay.address);
      const subs: RecordingSubscriber[] = [];
      for (let i = 0; i < 3; i++) subs.push(await subscribed(via, "clock", `k9-viewer-${i}`));
      await eventually(() => subs.every((s) => s.frames.length >= 5));
      await source.stop("test: source down");
      for (const s of subs) assert.equal((await s.ended).code, Status.UNAVAILABLE);
      const ops = relayClient(relay.address);
      await eventually(async () => (await ops.listSessions()).pendingUsageRecords === 3n);
      ops.close();
      via.close();

      relay.child.kill("SIGKILL");
      await relay.exited;
      const back = await startSource(CLOCK, { dataDir: join(dir, "source"), listen: source.address });
      const again = await spawnNode(relayCfg, join(dir, "relay"));
      const src = sourceClient(back.address);
      const records = await eventually(async () => {
        const r = await src.listUsage("clock");
        return r.length >= 3 ? r : undefined;
      }, 20_000);
      assert.deepEqual(records?.map((r) => r.subscriberId).sort(), ["k9-viewer-0", "k9-viewer-1", "k9-viewer-2"]);
      for (const [i, s] of subs.entries()) {
        const r: UsageRecord | undefined = records?.find((x) => x.subscriberId === `k9-viewer-${i}`);
        assert.equal(r?.frames, BigInt(s.frames.length));
        assert.equal(r?.relayId, "relay-k9");
      }
      await eventually(async () => (await relayClient(again.address).listSessions()).pendingUsageRecords === 0n);
      assert.equal((await src.listUsage("clock")).length, 3);
    });
  });

  describe("chains", () => {
    it("relays through a relay: one upstream per hop, usage of the far relay reaches the source", async () => {
      const source = await startSource();
      const near = await startRelay(source.address, { linger: "100ms" }, { id: "relay-near" });
      const far = await startRelay(near.address, { linger: "100ms" }, { id: "relay-far" });
      const src = sourceClient(source.address);
      const pub = publisher(src, "chain");
      pub.send("first");
      await streamListed(src, "chain");
      const via = sourceClient(far.address);
      const a = await subscribed(via, "chain", "end-user-a");
      const b = await subscribed(via, "chain", "end-user-b");
      for (let i = 0; i < 10; i++) pub.send(`f${i}`);
      await eventually(() => a.frames.length === 10 && b.frames.length === 10);
      assert.deepEqual(a.frames.map((f) => f.payload.toString()), Array.from({ length: 10 }, (_, i) => `f${i}`));
      assert.equal((await src.listStreams())[0]?.subscriptionsTotal, 1n, "one subscription at the source");
      const nearSessions = await relayClient(near.address).listSessions();
      assert.deepEqual(nearSessions.sessions[0]?.subscribers.map((s) => s.subscriberId), ["relay:relay-far"]);
      assert.deepEqual(b.frames.map((f) => f.sequence), a.frames.map((f) => f.sequence), "the source's sequence numbers, unchanged");
      a.leave();
      b.leave();
      const records = await eventually(async () => {
        const r = await src.listUsage("chain");
        return r.filter((x) => x.relayId === "relay-far").length === 2 ? r : undefined;
      });
      const fromFar = records?.filter((r) => r.relayId === "relay-far") ?? [];
      assert.deepEqual(fromFar.map((r) => r.subscriberId).sort(), ["end-user-a", "end-user-b"]);
      assert.equal(fromFar.find((r) => r.subscriberId === "end-user-a")?.frames, BigInt(a.frames.length));
      // The far relay's own upstream closes after its linger and is reported by the near one.
      await eventually(async () => (await src.listUsage("chain")).some((r) => r.relayId === "relay-near" && r.subscriberId === "relay:relay-far"));
    });
  });
});

describe("Relay upstream failure", () => {
  it("answers UNAVAILABLE / UPSTREAM_LOST at once when the upstream cannot be reached, and recovers when it can", async () => {
    const dir = tempDir();
    const source = await startSource(CLOCK, { dataDir: join(dir, "source") });
    const address = source.address;
    await source.stop("test: not there yet");
    const relay = await startRelay(address, { upstreamOpenTimeout: "3s" });
    const via = sourceClient(relay.address);
    const t0 = Date.now();
    const err = await subscribed(via, "clock", "a").catch((e: Error) => e.message);
    assert.match(String(err), /ended before it started: 14 upstream .* of stream "clock" is unavailable/);
    assert.ok(Date.now() - t0 < 3000, "no waiting for the open timeout when the connection is refused");
    await startSource(CLOCK, { dataDir: join(dir, "source"), listen: address });
    const sub = await eventually(() => subscribed(via, "clock", "a").catch(() => undefined), 10_000, 100);
    assert.ok(sub);
    await eventually(() => sub.frames.length >= 2);
  });
});

describe("UsageOutbox", () => {
  it("moves a record the upstream refuses as invalid aside and still delivers the others", async () => {
    const dir = tempDir();
    const source = await startSource();
    const relayDir = join(dir, "relay");
    const first = await startRelay(source.address, {}, { dataDir: relayDir });
    await first.stop("test: seed the outbox");
    const store = await NodeStore.open(join(relayDir, "store"), { log: testLogger(), sweepIntervalMs: 0 });
    const good = { recordId: "good-1", subscriberId: "a", stream: "s", bytes: "5", frames: "1", startedAtMs: 1000, endedAtMs: 2000, relayId: "relay-1", droppedFrames: "0", leaveReason: 1 };
    const outbox = store.collection<typeof good>("usage-outbox");
    await outbox.put("bad-0", { ...good, recordId: "bad-0", stream: "not a stream!" });
    await outbox.put("good-1", good);
    await outbox.put("good-2", { ...good, recordId: "good-2" });
    await store.close();

    const relay = await startRelay(source.address, {}, { dataDir: relayDir });
    const src = sourceClient(source.address);
    await eventually(async () => (await src.listUsage()).length === 2);
    assert.deepEqual((await src.listUsage()).map((r) => r.recordId), ["good-1", "good-2"]);
    await eventually(async () => (await relayClient(relay.address).listSessions()).pendingUsageRecords === 0n);
    await relay.stop("test: inspect the store");
    const after = await NodeStore.open(join(relayDir, "store"), { log: testLogger(), sweepIntervalMs: 0 });
    onCleanup(() => after.close());
    assert.deepEqual((await after.collection<typeof good>("usage-rejected").get("bad-0"))?.stream, "not a stream!");
    assert.equal(await after.collection("usage-outbox").count(), 0);
  });
});
