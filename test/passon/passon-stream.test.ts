import assert from "node:assert/strict";
import { Server, ServerCredentials, status, type ServerDuplexStream } from "@grpc/grpc-js";
import { pino } from "pino";
import { ControlServiceClient, ControlServiceService, type PassOnRequest, type PassOnResponse } from "../../gen/switchyard/passon/v1/control_service.js";
import type { InvokeResponse } from "../../gen/switchyard/passon/v1/app_gateway_service.js";
import { dial } from "../../clients/grpc/channel.js";
import { parseRichError } from "../../clients/grpc/rich-error.js";
import { PassOnLink, PassOnUnsupportedError } from "../../servers/passon/passon-stream.js";
import { onCleanup } from "../helpers/nodes.js";
import { maintenance, startTree, userAt } from "./tree.js";

const log = pino({ level: "silent" });

/** A parent that implements only PassOn, with `handler` (or none at all: UNIMPLEMENTED). */
async function fakeParent(handler?: (call: ServerDuplexStream<PassOnRequest, PassOnResponse>) => void): Promise<ControlServiceClient> {
  const server = new Server();
  server.addService(ControlServiceService, handler ? { passOn: handler } : {});
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  onCleanup(() => server.forceShutdown());
  const client = dial(ControlServiceClient, `127.0.0.1:${port}`);
  onCleanup(() => client.close());
  return client;
}

const reply = (request: Uint8Array): InvokeResponse => ({ response: Buffer.from(request), servedBy: "fake", hops: [], version: 1, recordId: "r" });
const invokeReq = (text: string) => ({ app: "echo", token: "t", request: Buffer.from(text), via: [] });

describe("Pass-on stream", () => {
  describe("PassOnLink.invoke", () => {
    it("matches answers to calls in flight, whatever order they come back in", async () => {
      const parent = await fakeParent((call) => {
        const held: PassOnRequest[] = [];
        call.on("data", (m: PassOnRequest) => {
          held.push(m);
          if (held.length === 3) for (const r of held.reverse()) call.write({ callId: r.callId, result: { $case: "response", value: reply(r.invoke?.request ?? Buffer.alloc(0)) } });
        });
      });
      const link = new PassOnLink(parent, log);
      onCleanup(() => link.close());
      const out = await Promise.all(["a", "b", "c"].map((x) => link.invoke(invokeReq(x), Date.now() + 5000)));
      assert.deepEqual(out.map((r) => r.response.toString()), ["a", "b", "c"]);
    });

    it("turns an error answer into the status and details Invoke would have returned", async () => {
      const parent = await fakeParent((call) => {
        call.on("data", (m: PassOnRequest) =>
          call.write({
            callId: m.callId,
            result: { $case: "error", value: { code: status.NOT_FOUND, message: 'no node serves app "x"', details: [] } },
          }),
        );
      });
      const link = new PassOnLink(parent, log);
      onCleanup(() => link.close());
      await assert.rejects(link.invoke(invokeReq("x"), Date.now() + 5000), (err: unknown) => {
        const st = parseRichError(err);
        assert.equal(st.code, status.NOT_FOUND);
        assert.match(st.message, /no node serves app "x"/);
        return true;
      });
    });

    it("fails a call with DEADLINE_EXCEEDED when the parent does not answer in time, and sends the time left", async () => {
      let timeoutMs = 0;
      const parent = await fakeParent((call) => {
        call.on("data", (m: PassOnRequest) => {
          timeoutMs = Number(m.timeout?.seconds ?? 0n) * 1000 + (m.timeout?.nanos ?? 0) / 1e6;
        });
      });
      const link = new PassOnLink(parent, log);
      onCleanup(() => link.close());
      await assert.rejects(link.invoke(invokeReq("x"), Date.now() + 300), (err: unknown) => parseRichError(err).code === status.DEADLINE_EXCEEDED);
      assert.ok(timeoutMs > 0 && timeoutMs <= 300, `timeout sent: ${timeoutMs} ms`);
    });

    it("fails calls in flight with UNAVAILABLE when the stream breaks, then opens a new one", async () => {
      let streams = 0;
      const parent = await fakeParent((call) => {
        streams++;
        const n = streams;
        call.on("data", (m: PassOnRequest) => {
          if (n === 1) call.emit("error", { code: status.INTERNAL, details: "stream broke" });
          else call.write({ callId: m.callId, result: { $case: "response", value: reply(m.invoke?.request ?? Buffer.alloc(0)) } });
        });
      });
      const link = new PassOnLink(parent, log);
      onCleanup(() => link.close());
      await assert.rejects(link.invoke(invokeReq("x"), Date.now() + 5000), (err: unknown) => parseRichError(err).code === status.UNAVAILABLE);
      const res = await link.invoke(invokeReq("again"), Date.now() + 5000);
      assert.equal(res.response.toString(), "again");
      assert.equal(streams, 2);
    });

    it("reports a parent without PassOn so the caller can use unary Invoke, and stops trying the stream", async () => {
      const parent = await fakeParent();
      const link = new PassOnLink(parent, log);
      onCleanup(() => link.close());
      assert.ok(link.accepts(invokeReq("x")));
      await assert.rejects(link.invoke(invokeReq("x"), Date.now() + 5000), PassOnUnsupportedError);
      assert.equal(link.accepts(invokeReq("x")), false);
    });
  });

  describe("ControlService.PassOn", () => {
    it("serves many concurrent passed-on calls, each with its own answer, and bills each exactly once", async () => {
      const t = await startTree();
      const alice = await userAt(t.local);
      const n = 100;
      const out = await Promise.all(Array.from({ length: n }, (_, i) => alice.invoke(i % 2 ? "upper" : "reverse", `call-${i}`)));
      out.forEach((r, i) => {
        const want = i % 2 ? `CALL-${i}` : [...`call-${i}`].reverse().join("");
        assert.equal(r.response.toString(), want);
        assert.equal(r.servedBy, i % 2 ? "center-1" : "upper-1");
      });
      const lines = (await maintenance(t.center).billing("alice")).lines;
      assert.equal(lines.find((l) => l.app === "upper" && l.nodeId === "center-1")?.calls, BigInt(n / 2));
    });
  });
});
