import assert from "node:assert/strict";
import { status as Status } from "@grpc/grpc-js";
import { LeaveReason, StreamOrigin } from "../../clients/relay/index.js";
import { UpstreamState } from "../../gen/switchyard/relay/v1/session.js";
import { eventually } from "../helpers/nodes.js";
import { publisher, relayClient, type RecordingSubscriber, sourceClient, startRelay, startSource, streamListed, subscribed } from "./helpers.js";

describe("Relay", () => {
  describe("Subscribe", () => {
    it("joins N subscribers onto exactly one upstream subscription and gives every frame to all", async () => {
      const source = await startSource();
      const relay = await startRelay(source.address, { linger: "5s" });
      const src = sourceClient(source.address);
      const via = sourceClient(relay.address);
      const pub = publisher(src, "news");
      pub.send("frame-0");
      await streamListed(src, "news");

      const subs: RecordingSubscriber[] = [];
      for (let i = 0; i < 25; i++) subs.push(await subscribed(via, "news", `user-${i}`));
      for (let i = 1; i <= 20; i++) pub.send(`frame-${i}`);
      await eventually(() => subs.every((s) => s.frames.length === 20));

      const info = (await src.listStreams()).find((s) => s.name === "news");
      assert.equal(info?.subscribers, 1, "the source sees one subscription: the relay's");
      assert.equal(info?.subscriptionsTotal, 1n, "the source was asked to subscribe once");
      for (const s of subs) {
        assert.deepEqual(s.frames.map((f) => f.payload.toString()), Array.from({ length: 20 }, (_, i) => `frame-${i + 1}`));
      }
      const sessions = await relayClient(relay.address).listSessions();
      assert.equal(sessions.sessions.length, 1);
      assert.equal(sessions.sessions[0]?.state, UpstreamState.OPEN);
      assert.equal(sessions.sessions[0]?.subscribers.length, 25);
      assert.equal(sessions.relayId, "relay-1");
    });

    it("answers like the source for an unknown stream (NOT_FOUND, same reason)", async () => {
      const source = await startSource();
      const relay = await startRelay(source.address);
      const direct = await subscribed(sourceClient(source.address), "nope", "a").catch((e: Error) => e.message);
      const relayed = await subscribed(sourceClient(relay.address), "nope", "a").catch((e: Error) => e.message);
      assert.match(String(direct), /^subscription ended before it started: 5 no live stream named "nope"$/);
      assert.equal(relayed, direct);
    });

    it("refuses an invalid stream name with INVALID_ARGUMENT", async () => {
      const source = await startSource();
      const relay = await startRelay(source.address);
      const err = await subscribed(sourceClient(relay.address), "../etc", "a").catch((e: Error) => e.message);
      assert.match(String(err), /ended before it started: 3 stream: /);
    });

    it("ends every subscriber with OK after the last frame when the publisher ends the stream", async () => {
      const source = await startSource();
      const relay = await startRelay(source.address);
      const src = sourceClient(source.address);
      const via = sourceClient(relay.address);
      const pub = publisher(src, "show");
      pub.send("x");
      await streamListed(src, "show");
      const a = await subscribed(via, "show", "a");
      const b = await subscribed(src, "show", "b");
      for (let i = 0; i < 10; i++) pub.send(`f${i}`);
      await pub.end();
      assert.deepEqual(await a.ended, { code: Status.OK, message: "" });
      assert.deepEqual(await b.ended, { code: Status.OK, message: "" });
      assert.equal(a.frames.length, 10);
      assert.equal(b.frames.length, 10);
      await eventually(async () => (await src.listStreams()).length === 0);
    });

    it("gives subscribers UNAVAILABLE / PUBLISHER_LOST when the publisher's call breaks", async () => {
      const source = await startSource();
      const relay = await startRelay(source.address);
      const src = sourceClient(source.address);
      const pub = publisher(src, "live");
      pub.send("x");
      await streamListed(src, "live");
      const a = await subscribed(sourceClient(relay.address), "live", "a");
      pub.cancel();
      const st = await a.ended;
      assert.equal(st.code, Status.UNAVAILABLE);
      assert.equal(st.reason, "PUBLISHER_LOST");
    });
  });

  describe("session control", () => {
    it("closes the upstream after the last leave, not before the linger", async () => {
      const source = await startSource();
      const relay = await startRelay(source.address, { linger: "2500ms" });
      const src = sourceClient(source.address);
      const via = sourceClient(relay.address);
      const ops = relayClient(relay.address);
      const pub = publisher(src, "s");
      pub.send("x");
      await streamListed(src, "s");
      const a = await subscribed(via, "s", "a");
      const b = await subscribed(via, "s", "b");
      const upstreamSubscribers = async (): Promise<number> => (await src.listStreams()).find((s) => s.name === "s")?.subscribers ?? -1;
      a.leave();
      await eventually(async () => (await ops.listSessions()).sessions[0]?.subscribers.length === 1);
      assert.equal(await upstreamSubscribers(), 1, "one subscriber left: the upstream stays");
      const beforeLastLeave = Date.now();
      b.leave();
      const session = await eventually(async () => {
        const s = (await ops.listSessions()).sessions[0];
        return s?.state === UpstreamState.LINGERING ? s : undefined;
      });
      const until = session?.lingerUntil?.getTime() ?? 0;
      assert.ok(until >= beforeLastLeave + 2500, "the linger runs from the last leave");
      assert.equal(await upstreamSubscribers(), 1, "lingering: the upstream is still open");
      await eventually(async () => (await upstreamSubscribers()) === 0, 10_000, 20);
      assert.ok(Date.now() >= until - 5, `upstream closed ${until - Date.now()} ms before the linger ended`);
      assert.equal((await ops.listSessions()).sessions.length, 0);
    });

    it("re-uses a lingering upstream when a subscriber rejoins inside the linger", async () => {
      const source = await startSource();
      const relay = await startRelay(source.address, { linger: "10s" });
      const src = sourceClient(source.address);
      const via = sourceClient(relay.address);
      const pub = publisher(src, "s");
      pub.send("x");
      await streamListed(src, "s");
      const a = await subscribed(via, "s", "a");
      a.leave();
      await eventually(async () => (await relayClient(relay.address).listSessions()).sessions[0]?.state === UpstreamState.LINGERING);
      const b = await subscribed(via, "s", "b");
      pub.send("after-rejoin");
      await eventually(() => b.frames.length === 1);
      const info = (await src.listStreams()).find((s) => s.name === "s");
      assert.equal(info?.subscriptionsTotal, 1n, "no second upstream subscription");
      assert.equal((await relayClient(relay.address).listSessions()).sessions[0]?.state, UpstreamState.OPEN);
    });
  });

  describe("metering", () => {
    it("reports per subscriber exactly the frames and bytes each received (batches or not)", async () => {
      const source = await startSource();
      const relay = await startRelay(source.address);
      const src = sourceClient(source.address);
      const via = sourceClient(relay.address);
      const pub = publisher(src, "paid");
      pub.send("x");
      await streamListed(src, "paid");
      const a = await subscribed(via, "paid", "alice", 64); // alice takes batches, bob does not
      for (let i = 0; i < 5; i++) pub.send(Buffer.alloc(100 + i, 1));
      await eventually(() => a.frames.length === 5);
      const b = await subscribed(via, "paid", "bob");
      for (let i = 0; i < 7; i++) pub.send(Buffer.alloc(1000, 2));
      await eventually(() => a.frames.length === 12 && b.frames.length === 7);
      a.leave();
      b.leave();
      const records = await eventually(async () => {
        const r = await src.listUsage("paid");
        return r.length === 2 ? r : undefined;
      });
      assert.ok(records);
      const byWho = new Map(records.map((r) => [r.subscriberId, r]));
      for (const s of [
        { who: "alice", sub: a },
        { who: "bob", sub: b },
      ]) {
        const r = byWho.get(s.who);
        assert.ok(r, `record of ${s.who}`);
        assert.equal(r.frames, BigInt(s.sub.frames.length));
        assert.equal(r.bytes, BigInt(s.sub.bytes));
        assert.equal(r.relayId, "relay-1");
        assert.equal(r.stream, "paid");
        assert.equal(r.leaveReason, LeaveReason.CANCELLED);
        assert.ok(r.startedAt && r.endedAt && r.endedAt >= r.startedAt);
      }
      assert.equal(byWho.get("alice")?.bytes, BigInt(100 + 101 + 102 + 103 + 104 + 7000));
      assert.equal((await relayClient(relay.address).listSessions()).pendingUsageRecords, 0n);
    });

    it("counts a record id once however often it is reported", async () => {
      const source = await startSource();
      const src = sourceClient(source.address);
      const rec = {
        recordId: "r-1",
        subscriberId: "alice",
        stream: "s",
        bytes: 10n,
        frames: 1n,
        startedAt: new Date(1000),
        endedAt: new Date(2000),
        relayId: "relay-x",
        droppedFrames: 0n,
        leaveReason: LeaveReason.CANCELLED,
      };
      const first = await src.reportUsage([rec]);
      const again = await src.reportUsage([rec, { ...rec, recordId: "r-2" }]);
      assert.deepEqual(first.acceptedRecordIds, ["r-1"]);
      assert.deepEqual(again.acceptedRecordIds, ["r-2"]);
      assert.deepEqual(again.duplicateRecordIds, ["r-1"]);
      assert.equal((await src.listUsage()).length, 2);
    });

    it("refuses a record without id and stores nothing of the batch", async () => {
      const source = await startSource();
      const src = sourceClient(source.address);
      const good = { recordId: "ok", subscriberId: "a", stream: "s", bytes: 1n, frames: 1n, startedAt: new Date(1), endedAt: new Date(2), relayId: "r", droppedFrames: 0n, leaveReason: LeaveReason.CANCELLED };
      await assert.rejects(src.reportUsage([good, { ...good, recordId: "" }]), (err: { code: number; details: string }) => {
        assert.equal(err.code, Status.INVALID_ARGUMENT);
        assert.match(err.details, /records\[1\]\.record_id/);
        return true;
      });
      assert.equal((await src.listUsage()).length, 0);
    });
  });

  describe("direct subscribers", () => {
    it("are metered at the source itself, with the source as relay_id", async () => {
      const source = await startSource();
      const relay = await startRelay(source.address);
      const src = sourceClient(source.address);
      const pub = publisher(src, "d");
      pub.send("x");
      await streamListed(src, "d");
      const direct = await subscribed(src, "d", "direct-user");
      const relayed = await subscribed(sourceClient(relay.address), "d", "relayed-user");
      for (let i = 0; i < 4; i++) pub.send(Buffer.alloc(10 * (i + 1)));
      await eventually(() => direct.frames.length === 4 && relayed.frames.length === 4);
      direct.leave();
      relayed.leave();
      const records = await eventually(async () => {
        const r = await src.listUsage("d");
        return r.length === 2 ? r : undefined;
      });
      const d = records?.find((r) => r.subscriberId === "direct-user");
      assert.equal(d?.relayId, "source-1");
      assert.equal(d?.frames, 4n);
      assert.equal(d?.bytes, 100n);
      assert.equal(records?.find((r) => r.subscriberId === "relayed-user")?.relayId, "relay-1");
      assert.ok(!records?.some((r) => r.subscriberId.startsWith("relay:")), "the relay's hop is not recorded by the source");
    });
  });

  describe("ListStreams", () => {
    it("lists the source's generator streams, also when asked at a relay", async () => {
      const source = await startSource({ generators: [{ kind: "ticker", name: "clock", interval: "20ms" }] });
      const relay = await startRelay(source.address);
      const streams = await sourceClient(relay.address).listStreams();
      assert.equal(streams.length, 1);
      assert.equal(streams[0]?.name, "clock");
      assert.equal(streams[0]?.origin, StreamOrigin.TICKER);
      const sub = await subscribed(sourceClient(relay.address), "clock", "a");
      await eventually(() => sub.frames.length >= 3);
      assert.match(sub.frames[0]?.payload.toString() ?? "", /^tick \d+ \d{4}-\d\d-\d\dT/);
      const seqs = sub.frames.map((f) => f.sequence);
      assert.deepEqual(seqs, seqs.map((_, i) => (seqs[0] as number) + i), "consecutive sequences");
    });
  });
});

describe("Relay polyglot", () => {
  it("serves Subscribe to a Python client through a relay exactly as the source would", async () => {
    const { runPythonCheck } = await import("../helpers/python.js");
    const source = await startSource({ generators: [{ kind: "ticker", name: "clock", interval: "20ms" }] });
    const relay = await startRelay(source.address);
    const out = (await runPythonCheck("relay", [source.address, relay.address, "clock"])) as {
      started: { stream: string; nextSequence: number };
      frames: { sequence: number; payload: string }[];
      streams: string[];
      missing: Record<string, unknown>;
    };
    assert.equal(out.started.stream, "clock");
    assert.equal(out.frames.length, 3);
    assert.equal(out.frames[0]?.sequence, out.started.nextSequence);
    assert.deepEqual(out.frames.map((f) => f.sequence), [0, 1, 2].map((i) => out.started.nextSequence + i));
    assert.match(out.frames[0]?.payload ?? "", /^tick \d+ /);
    assert.deepEqual(out.streams, ["clock"]);
    assert.deepEqual(out.missing, { code: "NOT_FOUND", message: 'no live stream named "no-such-stream"', reason: "STREAM_NOT_FOUND" });
  });
});
