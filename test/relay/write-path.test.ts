import assert from "node:assert/strict";
import { Metadata, status as Status } from "@grpc/grpc-js";
import { sinkPaths } from "../../servers/relay/sink.js";
import { streamSourceRole } from "../../servers/relay/role-stream-source.js";
import { eventually, startTestNode } from "../helpers/nodes.js";
import { publisher, sourceClient, startRelay, startSource, streamListed, subscribed } from "./helpers.js";

/** Publishes `n` frames of distinct sizes into a fresh stream and checks what two subscribers at the relay got. */
async function roundTrip(directWrites: boolean, fanoutSlice = 0): Promise<void> {
  const source = await startSource({ directWrites, fanoutSlice });
  const relay = await startRelay(source.address, { directWrites, fanoutSlice });
  const src = sourceClient(source.address);
  const via = sourceClient(relay.address);
  const pub = publisher(src, "paths");
  pub.send("zero");
  await streamListed(src, "paths");
  const single = await subscribed(via, "paths", "single");
  const batched = await subscribed(via, "paths", "batched", 32);
  const third = await subscribed(via, "paths", "third");
  const sent: Buffer[] = [];
  for (let i = 0; i < 200; i++) {
    const b = Buffer.alloc(10 + i, i & 0xff);
    sent.push(b);
    pub.send(b);
  }
  await pub.end();
  for (const s of [single, batched, third]) {
    const end = await s.ended;
    assert.equal(end.code, Status.OK, `${end.code} ${end.message}`);
    assert.deepEqual(
      s.frames.map((f) => f.payload),
      sent,
    );
    const seq = s.frames.map((f) => f.sequence);
    assert.deepEqual(seq, [...seq].sort((a, b) => a - b), "sequence order");
  }
}

describe("Relay", () => {
  describe("write path", () => {
    it("writes pre-framed messages straight to each HTTP/2 stream: every frame, in order, then OK", async () => {
      const before = { ...sinkPaths };
      await roundTrip(true);
      // Source → relay (1) and relay → three subscribers (3): all on the direct path.
      assert.equal(sinkPaths.direct - before.direct, 4);
      assert.equal(sinkPaths.public - before.public, 0);
    });

    it("gives the same result through grpc-js's stream writer with directWrites: false", async () => {
      const before = { ...sinkPaths };
      await roundTrip(false);
      assert.equal(sinkPaths.direct - before.direct, 0);
      assert.equal(sinkPaths.public - before.public, 4);
    });

    it("keeps every subscriber's frames in order when frames are written a slice of subscribers per turn", async () => {
      await roundTrip(true, 1);
      await roundTrip(false, 2);
    });

    it("sends a message above grpc.max_send_message_length the public way: RESOURCE_EXHAUSTED", async () => {
      const source = await startTestNode(streamSourceRole, { id: "source-small", config: { grpc: { maxSendMessageBytes: 2000 } }, roleConfig: {} });
      const src = sourceClient(source.address);
      const pub = publisher(src, "big");
      pub.send("small");
      await streamListed(src, "big");
      const s = await subscribed(src, "big", "alice");
      pub.send(Buffer.alloc(1000, 1));
      await eventually(() => s.frames.length === 1);
      pub.send(Buffer.alloc(3000, 2));
      const end = await s.ended;
      assert.equal(end.code, Status.RESOURCE_EXHAUSTED, `${end.code} ${end.message}`);
      assert.equal(s.frames.length, 1);
    });
  });
});

describe("Relay", () => {
  describe("write path, status before cancellation", () => {
    it("ends a subscription at its deadline with DEADLINE_EXCEEDED while frames flow, and keeps serving the others", async () => {
      const source = await startSource();
      const relay = await startRelay(source.address);
      const src = sourceClient(source.address);
      const via = sourceClient(relay.address);
      const pub = publisher(src, "ticking");
      pub.send("first");
      await streamListed(src, "ticking");
      const keep = await subscribed(via, "ticking", "keeps-up");
      const timer = setInterval(() => pub.send(Buffer.alloc(512, 7)), 1);
      try {
        for (let i = 0; i < 5; i++) {
          const call = via.client.subscribe({ stream: "ticking", subscriberId: `short-${i}`, maxBatchFrames: i % 2 ? 16 : 0 }, new Metadata(), { deadline: Date.now() + 150 });
          call.on("data", () => undefined);
          const code = await new Promise<number>((resolve) => call.on("error", (e: { code: number }) => resolve(e.code)));
          assert.equal(code, Status.DEADLINE_EXCEEDED);
        }
        const before = keep.frames.length;
        await eventually(() => keep.frames.length > before + 50);
      } finally {
        clearInterval(timer);
      }
    });
  });
});
