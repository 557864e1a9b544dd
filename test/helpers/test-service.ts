/**
 * A raw-bytes service used only by the runtime tests: its handlers throw chosen domain
 * errors, stream ticks, and ignore cancellation, so the error boundary and the shutdown
 * stages can be observed through the real gRPC stack.
 */
import { makeGenericClientConstructor, type ServiceDefinition } from "@grpc/grpc-js";
import { z } from "zod";
import type { RoleDefinition } from "../../servers/runtime/role.js";
import {
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
} from "../../servers/runtime/errors.js";

const raw = { requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b };

/** The test service definition (bytes in, bytes out). */
export const TestServiceDefinition = {
  fail: { path: "/switchyard.test.v1.TestService/Fail", requestStream: false as const, responseStream: false as const, ...raw },
  ticks: { path: "/switchyard.test.v1.TestService/Ticks", requestStream: false as const, responseStream: true as const, ...raw },
  stubbornTicks: { path: "/switchyard.test.v1.TestService/StubbornTicks", requestStream: false as const, responseStream: true as const, ...raw },
  sum: { path: "/switchyard.test.v1.TestService/Sum", requestStream: true as const, responseStream: false as const, ...raw },
} satisfies ServiceDefinition;

/** Client class for the test service. */
export const TestServiceClient = makeGenericClientConstructor(TestServiceDefinition, "TestService");

/** A role serving the test service. */
export const testRole: RoleDefinition<Record<string, never>> = {
  role: "test",
  summary: "runtime test service",
  configSchema: z.strictObject({}),
  create: async (ctx) => ({
    services: [
      ctx.implement(TestServiceDefinition, {
        fail: async (req) => {
          switch (req.toString()) {
            case "bad-field":
              throw InvalidArgumentError.field("interval", "must be positive", { reason: "INTERVAL_NOT_POSITIVE" });
            case "busy":
              throw new ResourceExhaustedError("all servers busy", { reason: "ALL_BUSY", retryDelayMs: 1500, metadata: { queue: "3" } });
            case "missing":
              throw new NotFoundError("item x not found", { reason: "ITEM_NOT_FOUND", resourceInfo: { resourceType: "item", resourceName: "x" } });
            case "crash":
              throw new TypeError("secret internal detail /etc/passwd at line 42");
            default:
              return req;
          }
        },
        ticks: async (_req, sink, c) => {
          for (let i = 0; !c.signal.aborted; i++) {
            await sink.send(Buffer.from(String(i)));
            await new Promise((r) => setTimeout(r, 20));
          }
        },
        stubbornTicks: async (_req, sink) => {
          // Ignores the abort signal on purpose; the runtime must still end the stream.
          for (let i = 0; i < 500; i++) {
            sink.write(Buffer.from(String(i)));
            await new Promise((r) => setTimeout(r, 20));
          }
        },
        sum: async (requests) => {
          let total = 0;
          for await (const r of requests) total += Number(r.toString());
          return Buffer.from(String(total));
        },
      }),
    ],
    load: () => ({ figures: { widgets: 7 }, utilization: 0.25 }),
  }),
};
