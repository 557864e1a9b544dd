import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { status as Status } from "@grpc/grpc-js";
import { StreamOrigin } from "../../clients/relay/index.js";
import { replayFrames, tickPayload } from "../../servers/relay/generators.js";
import { tempDir } from "../helpers/nodes.js";
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
