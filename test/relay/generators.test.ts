import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { status as Status } from "@grpc/grpc-js";
import { unary } from "../../clients/grpc/call.js";
import { LeaveReason, StreamOrigin } from "../../clients/relay/index.js";
import { replayFrames, tickPayload } from "../../servers/relay/generators.js";
import { eventually, tempDir } from "../helpers/nodes.js";
import { sourceClient, startRelay, startSource, subscribed } from "./helpers.js";

describe("StreamSource generators", () => {
  describe("replayFrames", () => {
    it("splits a file into lines (LF or CRLF) or into fixed-size chunks", () => {
      const data = Buffer.from("one\r\ntwo\nthree");
      assert.deepEqual(replayFrames(data, 0).map(String), ["one", "two", "three"]);
      assert.deepEqual(replayFrames(Buffer.from("abcdefg"), 3).map(String), ["abc", "def", "g"]);
    });
  });

  describe("tickPayload", () => {
    it("pads the tick text to the requested size", () => {
      const p = tickPayload(7, new Date(0), 64);
      assert.equal(p.length, 64);
      assert.match(p.toString(), /^tick 7 1970-01-01T00:00:00.000Z\.+$/);
    });
  });

  describe("file replay", () => {
    it("replays a file at the given rate through a relay and ends the stream at EOF when not looping", async () => {
      const file = join(tempDir(), "feed.txt");
      writeFileSync(file, Array.from({ length: 40 }, (_, i) => `line ${i}`).join("\n") + "\n");
      const source = await startSource({ generators: [{ kind: "file", name: "feed", path: file, rate: 25, loop: false }] });
      const relay = await startRelay(source.address);
      const src = sourceClient(source.address);
      assert.equal((await src.listStreams())[0]?.origin, StreamOrigin.FILE);
      const sub = await subscribed(sourceClient(relay.address), "feed", "reader");
      assert.equal((await sub.ended).code, Status.OK);
      const lines = sub.frames.map((f) => f.payload.toString());
      assert.ok(lines.length > 0);
      assert.equal(lines[lines.length - 1], "line 39", "the last line, then end of stream");
      const first = Number(lines[0]?.split(" ")[1]);
      assert.deepEqual(lines, Array.from({ length: 40 - first }, (_, i) => `line ${first + i}`));
    });
  });
});

describe("Relay Publish", () => {
  it("forwards a publisher at the relay to the source", async () => {
    const source = await startSource();
    const relay = await startRelay(source.address);
    const direct = await subscribed(sourceClient(source.address), "x", "a").catch(() => undefined);
    assert.equal(direct, undefined, "no stream yet");
    const via = sourceClient(relay.address);
    const res = await via.publish("relayed", ["a", "b", "c"].map((s) => Buffer.from(s)));
    assert.equal(res.frames, 3n);
    assert.equal(res.firstSequence, 1n);
    assert.equal(res.lastSequence, 3n);
    await assert.rejects(via.publish("bad name!", [Buffer.from("x")]), (err: { code: number }) => err.code === Status.INVALID_ARGUMENT);
  });
});

describe("StreamSource bad input", () => {
  it("refuses an oversized frame, ends the stream for its subscribers and keeps serving", async () => {
    const source = await startSource({ maxFrameBytes: 1024 });
    const src = sourceClient(source.address);
    const frames = (async function* () {
      yield Buffer.alloc(10);
      await new Promise((r) => setTimeout(r, 200));
      yield Buffer.alloc(2048);
    })();
    const published = src.publish("big", frames);
    const sub = await eventually(() => subscribed(src, "big", "a").catch(() => undefined), 5000, 20);
    await assert.rejects(published, (err: { code: number; details: string }) => {
      assert.equal(err.code, Status.INVALID_ARGUMENT);
      assert.match(err.details, /payload: frame of 2048 bytes exceeds the limit of 1024/);
      return true;
    });
    assert.ok(sub);
    const st = await sub.ended;
    assert.equal(st.reason, "PUBLISHER_LOST");
    assert.deepEqual(await src.listStreams(), []);
  });

  it("refuses more than 500 records, bad page tokens and sizes with INVALID_ARGUMENT", async () => {
    const source = await startSource();
    const src = sourceClient(source.address);
    const rec = { recordId: "r", subscriberId: "a", stream: "s", bytes: 1n, frames: 1n, startedAt: new Date(1), endedAt: new Date(2), relayId: "x", droppedFrames: 0n, leaveReason: LeaveReason.CANCELLED };
    const many = Array.from({ length: 501 }, (_, i) => ({ ...rec, recordId: `r${i}` }));
    await assert.rejects(src.reportUsage(many), (e: { code: number }) => e.code === Status.INVALID_ARGUMENT);
    await assert.rejects(src.reportUsage([{ ...rec, leaveReason: LeaveReason.UNSPECIFIED }]), (e: { code: number }) => e.code === Status.INVALID_ARGUMENT);
    await assert.rejects(src.reportUsage([{ ...rec, endedAt: new Date(0) }]), (e: { code: number }) => e.code === Status.INVALID_ARGUMENT);
    const c = src.client;
    await assert.rejects(unary(c, c.listUsage, { stream: "", pageSize: 0, pageToken: "%%%garbage" }), (e: { code: number }) => e.code === Status.INVALID_ARGUMENT);
    await assert.rejects(unary(c, c.listStreams, { pageSize: 5000, pageToken: "" }), (e: { code: number }) => e.code === Status.INVALID_ARGUMENT);
    assert.deepEqual(await src.listUsage(), []);
  });
});
