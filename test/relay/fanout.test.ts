import assert from "node:assert/strict";
import { encodeEvent } from "../../clients/relay/index.js";
import { framesOf, type WireFrame } from "../../clients/relay/wire.js";
import { GRPC_PREFIX_BYTES } from "../../clients/grpc/framing.js";
import { FrameGroup, SlicedFanout, Subscriber } from "../../servers/relay/fanout.js";
import type { FrameSink } from "../../servers/relay/sink.js";
import { LeaveReason } from "../../gen/switchyard/relay/v1/usage.js";
import { SubscribeResponse } from "../../gen/switchyard/relay/v1/stream_source_service.js";

/** A subscriber whose transport takes everything and remembers the frame sequences. */
function recorder(i: number): { sub: Subscriber; seqs: number[]; messages: number } {
  const seqs: number[] = [];
  const r = { sub: undefined as unknown as Subscriber, seqs, messages: 0 };
  const sink: FrameSink = {
    direct: true,
    write(framed, done) {
      r.messages++;
      const ev = SubscribeResponse.decode(framed.subarray(GRPC_PREFIX_BYTES)).event;
      if (ev?.$case === "frame") seqs.push(Number(ev.value.sequence));
      if (ev?.$case === "batch") for (const f of ev.value.frames) seqs.push(Number(f.sequence));
      if (done) setImmediate(done);
      return true;
    },
    send: () => Promise.resolve(),
  };
  r.sub = new Subscriber(`s${i}`, "peer", "x", sink, { maxBufferedFrames: 1024, policy: "drop-oldest" }, undefined, i % 2 ? 16 : 0);
  return r;
}

function group(sequence: number): FrameGroup {
  const buf = encodeEvent({ event: { $case: "frame", value: { sequence: BigInt(sequence), payload: Buffer.alloc(8, sequence), publishedAt: new Date() } } });
  return new FrameGroup(framesOf(buf) as WireFrame[], buf);
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe("Relay", () => {
  describe("SlicedFanout", () => {
    it("writes a slice of subscribers per turn and every subscriber gets every frame in order", async () => {
      const rs = Array.from({ length: 300 }, (_, i) => recorder(i));
      const subs = new Set(rs.map((r) => r.sub));
      const f = new SlicedFanout(64);
      for (let q = 1; q <= 5; q++) f.frames(group(q), subs);
      assert.equal(rs.filter((r) => r.seqs.length > 0).length, 64, "only the first slice is written at once");
      for (let i = 0; i < 40 && rs.some((r) => r.seqs.length < 5); i++) await turn();
      for (const r of rs) assert.deepEqual(r.seqs, [1, 2, 3, 4, 5]);
      // Frames 2-5 waited together: those who asked for batches got them as one message.
      for (const [i, r] of rs.entries()) assert.equal(r.messages, i % 2 ? 2 : 5, `subscriber ${i}`);
    });

    it("writes everything pending at once when more than maxPendingFrames wait", () => {
      const rs = Array.from({ length: 10 }, (_, i) => recorder(i * 2));
      const subs = new Set(rs.map((r) => r.sub));
      const f = new SlicedFanout(2, 3);
      for (let q = 1; q <= 3; q++) f.frames(group(q), subs);
      assert.ok(rs.some((r) => r.seqs.length < 3), "still slicing with 3 frames waiting");
      f.frames(group(4), subs); // 4 > 3 waiting: all written now
      for (const r of rs) assert.deepEqual(r.seqs, [1, 2, 3, 4]);
    });

    it("flush() writes everything pending at once, so what follows (the end) stays behind the frames", () => {
      const rs = Array.from({ length: 10 }, (_, i) => recorder(i * 2)); // unbatched: written synchronously
      const subs = new Set(rs.map((r) => r.sub));
      const f = new SlicedFanout(3);
      f.frames(group(1), subs);
      f.frames(group(2), subs);
      f.flush();
      for (const r of rs) {
        r.sub.finish({ reason: LeaveReason.END_OF_STREAM });
        assert.deepEqual(r.seqs, [1, 2]);
        assert.equal(r.sub.closed, true);
      }
    });

    it("skips a subscriber that joined after the frames arrived", async () => {
      const early = recorder(0);
      const late = recorder(2);
      const subs = new Set([early.sub, recorder(4).sub, recorder(6).sub]);
      const f = new SlicedFanout(1);
      f.frames(group(1), subs);
      subs.add(late.sub);
      f.joined();
      f.frames(group(2), subs);
      f.frames(group(3), subs);
      for (let i = 0; i < 20; i++) await turn();
      assert.deepEqual(early.seqs, [1, 2, 3]);
      assert.deepEqual(late.seqs, [2, 3]);
    });
  });
});
