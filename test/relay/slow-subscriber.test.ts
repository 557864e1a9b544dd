import assert from "node:assert/strict";
import { status as Status } from "@grpc/grpc-js";
import { LeaveReason } from "../../clients/relay/index.js";
import { eventually } from "../helpers/nodes.js";
import { publisher, sourceClient, startRelay, startSource, streamListed, subscribed } from "./helpers.js";

const FRAMES = 3000;
const FRAME = Buffer.alloc(1024, 0x61);

async function setup(policy: "drop-oldest" | "disconnect", maxBatchFrames: number) {
  const source = await startSource();
  const relay = await startRelay(source.address, { maxBufferedFrames: 16, slowSubscriberPolicy: policy });
  const src = sourceClient(source.address);
  const via = sourceClient(relay.address);
  const pub = publisher(src, "firehose");
  pub.send("first");
  await streamListed(src, "firehose");
  const fast = await subscribed(via, "firehose", "fast", maxBatchFrames);
  const slow = await subscribed(via, "firehose", "slow", maxBatchFrames);
  slow.call.pause();
  for (let i = 0; i < FRAMES; i++) pub.send(FRAME);
  // The fast subscriber gets everything while the slow one does not read at all.
  await eventually(() => fast.frames.length === FRAMES, 20_000, 20);
  if (maxBatchFrames > 1) assert.ok(fast.messages < FRAMES, `a burst arrives in batches (${fast.messages} messages for ${FRAMES} frames)`);
  else assert.equal(fast.messages, FRAMES + 1, "one message per frame (after started) when batches were not asked for");
  return { src, pub, fast, slow };
}

describe("Relay", () => {
  for (const batch of [0, 64]) describe(`slow subscriber (max_batch_frames ${batch})`, () => {
    it("drop-oldest: others get every frame; the slow one gets a Gap for exactly what it missed", async () => {
      const { src, pub, fast, slow } = await setup("drop-oldest", batch);
      slow.call.resume();
      await pub.end();
      assert.equal((await slow.ended).code, Status.OK);
      assert.equal((await fast.ended).code, Status.OK);
      const gaps = slow.events.flatMap((e) => (e.type === "gap" ? [e.gap] : []));
      assert.ok(gaps.length >= 1, "at least one gap marker");
      const missed = gaps.reduce((n, g) => n + Number(g.frames), 0);
      assert.equal(slow.frames.length + missed, FRAMES, "every frame is either received or announced as missed");
      for (const g of gaps) assert.equal(Number(g.lastSequence - g.firstSequence) + 1, Number(g.frames));
      // Delivered frames and gaps together cover the sequence without holes or repeats.
      const seen: number[] = [];
      for (const e of slow.events) {
        if (e.type === "frame") seen.push(Number(e.frame.sequence));
        if (e.type === "gap") for (let s = Number(e.gap.firstSequence); s <= Number(e.gap.lastSequence); s++) seen.push(s);
      }
      assert.deepEqual(seen, fast.frames.map((f) => f.sequence));

      const records = await eventually(async () => {
        const r = await src.listUsage("firehose");
        return r.length === 2 ? r : undefined;
      });
      assert.ok(records);
      const rec = records.find((r) => r.subscriberId === "slow");
      assert.equal(rec?.frames, BigInt(slow.frames.length));
      assert.equal(rec?.bytes, BigInt(slow.bytes));
      assert.equal(rec?.droppedFrames, BigInt(missed));
      assert.equal(rec?.leaveReason, LeaveReason.END_OF_STREAM);
      assert.equal(records.find((r) => r.subscriberId === "fast")?.frames, BigInt(FRAMES));
    });

    it("disconnect: others get every frame; the slow one ends with RESOURCE_EXHAUSTED / SUBSCRIBER_TOO_SLOW", async () => {
      const { src, pub, fast, slow } = await setup("disconnect", batch);
      slow.call.resume();
      const st = await slow.ended;
      assert.equal(st.code, Status.RESOURCE_EXHAUSTED);
      assert.equal(st.reason, "SUBSCRIBER_TOO_SLOW");
      assert.ok(slow.frames.length < FRAMES);
      assert.ok(!slow.events.some((e) => e.type === "gap"), "no gap markers under this policy");
      await pub.end();
      assert.equal((await fast.ended).code, Status.OK);
      const records = await eventually(async () => {
        const r = await src.listUsage("firehose");
        return r.length === 2 ? r : undefined;
      });
      assert.ok(records);
      const rec = records.find((r) => r.subscriberId === "slow");
      assert.equal(rec?.leaveReason, LeaveReason.TOO_SLOW);
      assert.equal(rec?.frames, BigInt(slow.frames.length), "metered exactly what reached it");
      assert.equal(rec?.bytes, BigInt(slow.bytes));
    });
  });
});
