import assert from "node:assert/strict";
import { credentials, Metadata, status as Status, type Client, type ServiceError } from "@grpc/grpc-js";
import { parseRichError, richServiceError } from "../../clients/grpc/rich-error.js";
import { retryDelayFor, withRetry } from "../../clients/grpc/retry.js";
import { startTestNode, onCleanup } from "../helpers/nodes.js";
import { testRole, TestServiceClient } from "../helpers/test-service.js";

type RawClient = Client & { fail(req: Buffer, md: Metadata, cb: (e: ServiceError | null, r?: Buffer) => void): void };

async function callFail(address: string, what: string): Promise<ServiceError> {
  const client = new TestServiceClient(address, credentials.createInsecure()) as unknown as RawClient;
  onCleanup(() => client.close());
  return new Promise((resolve, reject) => {
    client.fail(Buffer.from(what), new Metadata(), (err) => (err ? resolve(err) : reject(new Error("call succeeded"))));
  });
}

describe("error boundary", () => {
  describe("domain errors", () => {
    it("sends INVALID_ARGUMENT with BadRequest and a stable ErrorInfo reason", async () => {
      const node = await startTestNode(testRole);
      const st = parseRichError(await callFail(node.address, "bad-field"));
      assert.equal(st.code, Status.INVALID_ARGUMENT);
      assert.equal(st.errorInfo?.reason, "INTERVAL_NOT_POSITIVE");
      assert.equal(st.errorInfo?.domain, "switchyard");
      assert.deepEqual(st.fieldViolations, [{ field: "interval", description: "must be positive" }]);
    });

    it("sends RESOURCE_EXHAUSTED with the RetryInfo delay and ErrorInfo metadata", async () => {
      const node = await startTestNode(testRole);
      const err = await callFail(node.address, "busy");
      const st = parseRichError(err);
      assert.equal(st.code, Status.RESOURCE_EXHAUSTED);
      assert.equal(st.retryDelayMs, 1500);
      assert.deepEqual(st.errorInfo?.metadata, { queue: "3" });
      assert.equal(retryDelayFor(err, 1), 1500);
    });

    it("sends NOT_FOUND with ResourceInfo", async () => {
      const node = await startTestNode(testRole);
      const st = parseRichError(await callFail(node.address, "missing"));
      assert.equal(st.code, Status.NOT_FOUND);
      assert.equal(st.resourceInfo?.resourceName, "x");
    });
  });

  describe("unknown errors", () => {
    it("answers UNKNOWN with an error id and never the cause or a stack trace", async () => {
      const node = await startTestNode(testRole);
      const err = await callFail(node.address, "crash");
      const st = parseRichError(err);
      assert.equal(st.code, Status.UNKNOWN);
      assert.match(st.message, /^internal error \(error id [0-9a-f-]{36}\)$/);
      assert.equal(st.errorInfo?.reason, "INTERNAL_ERROR");
      assert.doesNotMatch(JSON.stringify(err.metadata.toJSON()) + err.details, /passwd|TypeError|at line/);
    });
  });

  describe("parseRichError", () => {
    it("returns code and message for errors without details and for garbage details", () => {
      const md = new Metadata();
      md.set("grpc-status-details-bin", Buffer.from([0xff, 0xff, 0xff]));
      const garbage = Object.assign(new Error("x"), { code: Status.INTERNAL, details: "boom", metadata: md });
      assert.deepEqual(parseRichError(garbage), { code: Status.INTERNAL, message: "boom" });
      assert.equal(parseRichError(new Error("plain")).code, Status.UNKNOWN);
    });

    it("round-trips every detail type through the trailer encoding", () => {
      const err = richServiceError(Status.FAILED_PRECONDITION, "nope", {
        errorInfo: { reason: "R", domain: "d", metadata: { a: "b" } },
        fieldViolations: [{ field: "f", description: "bad", reason: "WHY" }],
        retryDelayMs: 2250,
        preconditionViolations: [{ type: "T", subject: "s", description: "desc" }],
        resourceInfo: { resourceType: "t", resourceName: "n", owner: "o", description: "d" },
        quotaViolations: [{ subject: "q", description: "over" }],
      });
      const st = parseRichError(err);
      assert.equal(st.code, Status.FAILED_PRECONDITION);
      assert.equal(st.retryDelayMs, 2250);
      assert.deepEqual(st.fieldViolations, [{ field: "f", description: "bad", reason: "WHY" }]);
      assert.deepEqual(st.preconditionViolations, [{ type: "T", subject: "s", description: "desc" }]);
      assert.deepEqual(st.quotaViolations, [{ subject: "q", description: "over" }]);
      assert.equal(st.resourceInfo?.owner, "o");
    });
  });

  describe("withRetry", () => {
    it("waits the server's RetryInfo delay before retrying", async () => {
      let calls = 0;
      const waits: number[] = [];
      const res = await withRetry(
        async () => {
          calls++;
          if (calls < 3) throw richServiceError(Status.RESOURCE_EXHAUSTED, "busy", { retryDelayMs: 30 });
          return "ok";
        },
        { onRetry: (_a, _e, w) => waits.push(w) },
      );
      assert.equal(res, "ok");
      assert.deepEqual(waits, [30, 30]);
    });

    it("does not retry errors that cannot succeed later", async () => {
      let calls = 0;
      await assert.rejects(
        withRetry(async () => {
          calls++;
          throw richServiceError(Status.INVALID_ARGUMENT, "bad");
        }),
      );
      assert.equal(calls, 1);
    });
  });
});
