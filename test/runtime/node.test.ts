import assert from "node:assert/strict";
import { credentials, Metadata, status as Status, type Client, type ClientReadableStream, type ServiceError } from "@grpc/grpc-js";
import { NodeClient, ServingStatus } from "../../clients/node/index.js";
import { ReflectionClient } from "../../clients/reflection/index.js";
import { parseRichError } from "../../clients/grpc/rich-error.js";
import { unary } from "../../clients/grpc/call.js";
import { msToDuration } from "../../clients/grpc/duration.js";
import { bareRole } from "../../servers/bare/role.js";
import { NodeStore } from "../../servers/runtime/store.js";
import { startTestNode, onCleanup, testLogger } from "../helpers/nodes.js";
import { testRole, TestServiceClient } from "../helpers/test-service.js";
import { join } from "node:path";

function nodeClient(address: string): NodeClient {
  const c = new NodeClient(address);
  onCleanup(() => c.close());
  return c;
}

function collect(stream: ClientReadableStream<Buffer>): Promise<{ messages: string[]; error?: ServiceError }> {
  const messages: string[] = [];
  return new Promise((resolve) => {
    stream.on("data", (b: Buffer) => messages.push(b.toString()));
    stream.on("error", (error: ServiceError) => resolve({ messages, error }));
    stream.on("end", () => resolve({ messages }));
  });
}

describe("node runtime", () => {
  describe("health", () => {
    it("reports SERVING for the node and each of its services", async () => {
      const node = await startTestNode(testRole);
      const c = nodeClient(node.address);
      assert.equal(await c.check(""), ServingStatus.SERVING);
      assert.equal(await c.check("switchyard.node.v1.NodeService"), ServingStatus.SERVING);
      assert.equal(await c.check("switchyard.test.v1.TestService"), ServingStatus.SERVING);
    });

    it("answers NOT_FOUND for a service the node does not serve", async () => {
      const node = await startTestNode(bareRole);
      await assert.rejects(nodeClient(node.address).check("no.such.Service"), (e: ServiceError) => e.code === Status.NOT_FOUND);
    });
  });

  describe("NodeService", () => {
    it("tells identity, role, version, uptime and services", async () => {
      const node = await startTestNode(testRole, { id: "t-1", config: { node: { labels: { zone: "a" } } } });
      const info = await nodeClient(node.address).info();
      assert.equal(info.nodeId, "t-1");
      assert.equal(info.role, "test");
      assert.match(info.version, /^\d+\.\d+\.\d+/);
      assert.deepEqual(info.labels, { zone: "a" });
      assert.equal(info.advertisedAddress, node.address);
      assert.ok(info.services.includes("switchyard.test.v1.TestService"));
      assert.ok(info.startedAt instanceof Date);
    });

    it("reports load with active calls, connections, memory and the role's figures", async () => {
      const node = await startTestNode(testRole);
      const load = await nodeClient(node.address).load();
      assert.ok(load.activeCalls >= 1, "the GetLoad call itself is active");
      assert.ok(load.connections >= 1);
      assert.ok(load.memoryRssBytes > 0n);
      assert.ok(load.cpuCount >= 1);
      assert.deepEqual(load.roleFigures, { widgets: 7 });
      assert.equal(load.utilization, 0.25);
    });

    it("streams load reports at the requested interval", async () => {
      const node = await startTestNode(bareRole);
      const c = nodeClient(node.address);
      const ac = new AbortController();
      const seen: Date[] = [];
      for await (const l of c.watchLoad(100, ac.signal)) {
        seen.push(l.observedAt ?? new Date(0));
        if (seen.length === 3) ac.abort();
      }
      assert.equal(seen.length, 3);
    });

    it("refuses a watch interval out of range with BadRequest", async () => {
      const node = await startTestNode(bareRole);
      const c = nodeClient(node.address);
      const stream = c.node.watchLoad({ interval: msToDuration(5) });
      const err = await new Promise<ServiceError>((resolve) => stream.on("error", resolve));
      const st = parseRichError(err);
      assert.equal(st.code, Status.INVALID_ARGUMENT);
      assert.equal(st.errorInfo?.reason, "WATCH_INTERVAL_OUT_OF_RANGE");
      assert.equal(st.fieldViolations?.[0]?.field, "interval");
    });

    it("echoes payloads and refuses ones over 1 MiB", async () => {
      const node = await startTestNode(bareRole);
      const c = nodeClient(node.address);
      const res = await unary(c.node, c.node.echo, { payload: Buffer.from("hello") });
      assert.equal(Buffer.from(res.payload).toString(), "hello");
      await assert.rejects(unary(c.node, c.node.echo, { payload: Buffer.alloc(1024 * 1024 + 1) }), (e: ServiceError) => e.code === Status.INVALID_ARGUMENT);
    });

    it("refuses a request larger than the configured receive limit with RESOURCE_EXHAUSTED", async () => {
      const node = await startTestNode(bareRole, { config: { grpc: { maxReceiveMessageBytes: "64KiB" } } });
      const c = nodeClient(node.address);
      await assert.rejects(unary(c.node, c.node.echo, { payload: Buffer.alloc(100 * 1024) }), (e: ServiceError) => e.code === Status.RESOURCE_EXHAUSTED);
      // The node keeps serving.
      assert.equal(await c.check(""), ServingStatus.SERVING);
    });
  });

  describe("reflection", () => {
    it("lists exactly the services the node serves", async () => {
      const node = await startTestNode(bareRole);
      const r = new ReflectionClient(node.address);
      onCleanup(() => r.close());
      assert.deepEqual((await r.listServices()).sort(), [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "switchyard.node.v1.NodeService",
      ]);
    });

    it("serves descriptors with comments that a dynamic client calls methods with, as grpcurl does", async () => {
      const node = await startTestNode(bareRole, { id: "reflect-me" });
      const r = new ReflectionClient(node.address);
      onCleanup(() => r.close());
      const svc = await r.service("switchyard.node.v1.NodeService");
      assert.deepEqual(svc.methods.map((m) => m.name), ["GetNodeInfo", "GetLoad", "WatchLoad", "Echo"]);
      const comments = svc.file.proto.sourceCodeInfo?.location.map((l) => l.leadingComments) ?? [];
      assert.ok(comments.some((c) => c.includes("served by every Switchyard node")), "proto comments travel with the descriptors");
      const [info] = await r.call("switchyard.node.v1.NodeService/GetNodeInfo", {});
      assert.equal((info as { info: { nodeId: string } }).info.nodeId, "reflect-me");
      const [echo] = await r.call("switchyard.node.v1.NodeService/Echo", { payload: Buffer.from("hi").toString("base64") });
      assert.deepEqual(echo, { payload: Buffer.from("hi").toString("base64") });
      const watched = await r.call("switchyard.node.v1.NodeService/WatchLoad", { interval: "0.100s" }, { maxMessages: 2 });
      assert.equal(watched.length, 2);
      // Health is described too, so `grpcurl describe grpc.health.v1.Health` works.
      const health = await r.service("grpc.health.v1.Health");
      assert.ok(health.methods.some((m) => m.name === "Check"));
    });
  });

  describe("shutdown", () => {
    it("ends open streams with UNAVAILABLE, finishes well before the grace period and releases the store", async () => {
      const node = await startTestNode(testRole, { config: { shutdown: { graceMs: 20_000 } } });
      const client = new TestServiceClient(node.address, credentials.createInsecure()) as unknown as Client & {
        ticks(req: Buffer): ClientReadableStream<Buffer>;
        stubbornTicks(req: Buffer): ClientReadableStream<Buffer>;
      };
      onCleanup(() => client.close());
      const health = nodeClient(node.address);
      const watch = health.health.watch({ service: "" });
      const healthSeen: number[] = [];
      watch.on("data", (m: { status: number }) => healthSeen.push(m.status));
      watch.on("error", () => undefined);
      const ticks = collect(client.ticks(Buffer.alloc(0)));
      const stubborn = collect(client.stubbornTicks(Buffer.alloc(0)));
      await new Promise((r) => setTimeout(r, 150));
      const started = Date.now();
      await node.stop("test");
      assert.ok(Date.now() - started < 5_000, `stop took ${Date.now() - started} ms`);
      for (const result of [await ticks, await stubborn]) {
        assert.ok(result.messages.length > 0);
        assert.equal(result.error?.code, Status.UNAVAILABLE);
        assert.equal(parseRichError(result.error).errorInfo?.reason, "NODE_SHUTTING_DOWN");
      }
      assert.deepEqual(healthSeen.slice(-1), [ServingStatus.NOT_SERVING]);
      // The LevelDB lock is released: the same store opens again.
      const again = await NodeStore.open(join(node.config.dataDir, "store"), { log: testLogger(), sweepIntervalMs: 0 });
      await again.close();
    });
  });

  describe("metrics", () => {
    it("exposes per-RPC counts, latency histograms, in-flight calls and process figures", async () => {
      const node = await startTestNode(bareRole, { config: { metrics: { listen: "127.0.0.1:0" } } });
      const c = nodeClient(node.address);
      await c.info();
      await c.info();
      const res = await fetch(`http://127.0.0.1:${node.metricsPort}/metrics`);
      const text = await res.text();
      assert.match(text, /grpc_server_handled_total\{[^}]*grpc_method="GetNodeInfo"[^}]*grpc_code="OK"[^}]*\} 2/);
      assert.match(text, /grpc_server_handling_seconds_bucket\{[^}]*grpc_method="GetNodeInfo"/);
      assert.match(text, /grpc_server_in_flight/);
      assert.match(text, /process_resident_memory_bytes/);
    });
  });

  describe("deadlines", () => {
    it("aborts a handler's signal when the caller's deadline passes", async () => {
      const node = await startTestNode(testRole);
      const client = new TestServiceClient(node.address, credentials.createInsecure()) as unknown as Client & {
        ticks(req: Buffer, md: Metadata, opts: { deadline: number }): ClientReadableStream<Buffer>;
      };
      onCleanup(() => client.close());
      const res = await collect(client.ticks(Buffer.alloc(0), new Metadata(), { deadline: Date.now() + 200 }));
      assert.equal(res.error?.code, Status.DEADLINE_EXCEEDED);
      const load = await nodeClient(node.address).load();
      assert.equal(load.activeCalls, 1, "only the GetLoad call is left running");
    });
  });
});
