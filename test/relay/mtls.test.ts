import assert from "node:assert/strict";
import { status as Status } from "@grpc/grpc-js";
import { parseRichError } from "../../clients/grpc/rich-error.js";
import { LeaveReason } from "../../clients/relay/index.js";
import { eventually, tempDir } from "../helpers/nodes.js";
import { clientTls, makePki, mtlsServer, type TestPki } from "../helpers/pki.js";
import { RecordingSubscriber, relayClient, sourceClient, startRelay, startSource, subscribed } from "./helpers.js";

/** A source and a relay that both require client certificates; the relay's CN is "relay-1". */
async function mtlsPair(pki: TestPki): Promise<{ source: string; relay: string }> {
  const source = await startSource(
    { generators: [{ kind: "ticker", name: "clock", interval: "20ms" }], relayIdentities: ["relay-1"] },
    { config: { tls: mtlsServer(pki) } },
  );
  const relay = await startRelay(source.address, {}, { config: { tls: mtlsServer(pki), clientTls: clientTls(pki, "relay-1") } });
  return { source: source.address, relay: relay.address };
}

describe("Relay under mTLS", () => {
  let pki: TestPki;
  beforeEach(function () {
    this.timeout(30_000);
    pki = makePki(tempDir(), ["relay-1", "alice", "relay:mallory"]);
  });

  describe("Subscribe", () => {
    it("meters a subscriber by its certificate and the relay hop not at all, whatever ids they declare", async function () {
      this.timeout(30_000);
      const { source, relay } = await mtlsPair(pki);
      const alice = await subscribed(sourceClient(relay, { tls: clientTls(pki, "alice") }), "clock", "relay:not-me");
      await eventually(() => alice.frames.length >= 5, 10_000, 10);
      alice.leave();
      await alice.ended;
      const ops = relayClient(relay, { tls: clientTls(pki, "alice") });
      // The upstream lingers out and closes: the source sees the relay's subscription end.
      await eventually(async () => (await ops.listSessions()).sessions.length === 0, 10_000, 20);
      const src = sourceClient(source, { tls: clientTls(pki, "alice") });
      await eventually(async () => (await src.listUsage("clock")).length > 0, 10_000, 20);
      const records = await src.listUsage("clock");
      assert.deepEqual(
        records.map((r) => [r.subscriberId, r.relayId]),
        [["alice", "relay-1"]],
        "one record: alice's, reported by the relay; none for the relay's own upstream subscription",
      );
      assert.equal(Number(records[0]?.frames), alice.frames.length);
      assert.equal(records[0]?.leaveReason, LeaveReason.CANCELLED);
    });

    it("refuses a certificate whose CN claims to be a relay without being listed", async function () {
      this.timeout(30_000);
      const { source } = await mtlsPair(pki);
      const mallory = new RecordingSubscriber(sourceClient(source, { tls: clientTls(pki, "relay:mallory") }), "clock", "");
      const end = await mallory.ended;
      assert.equal(end.code, Status.PERMISSION_DENIED);
      assert.equal(end.reason, "RELAY_IDENTITY_NOT_TRUSTED");
    });
  });

  describe("ReportUsage", () => {
    it("is refused to a certificate not listed in relayIdentities", async function () {
      this.timeout(30_000);
      const { source } = await mtlsPair(pki);
      const src = sourceClient(source, { tls: clientTls(pki, "alice") });
      const forged = {
        recordId: "forged-1",
        subscriberId: "bob",
        stream: "clock",
        bytes: 1n,
        frames: 1n,
        startedAt: new Date(),
        endedAt: new Date(),
        relayId: "relay-1",
        droppedFrames: 0n,
        leaveReason: LeaveReason.CANCELLED,
      };
      const err = await src.reportUsage([forged]).then(
        () => assert.fail("a forged report was accepted"),
        (e: unknown) => parseRichError(e),
      );
      assert.equal(err.code, Status.PERMISSION_DENIED);
      assert.equal(err.errorInfo?.reason, "RELAY_IDENTITY_NOT_TRUSTED");
      assert.deepEqual(await src.listUsage(), []);
    });
  });
});
