import assert from "node:assert/strict";
import { createServer, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { connect } from "node:net";
import { H2, H2_FLAG, h2ClientStart, h2Frame, h2GrpcRequestHeaders } from "../../clients/grpc/h2-wire.js";
import { onCleanup } from "../helpers/nodes.js";

describe("h2-wire", () => {
  describe("h2ClientStart + h2GrpcRequestHeaders", () => {
    it("open a call that node:http2 reads as a gRPC request, headers and body intact", async () => {
      const server = createServer();
      onCleanup(() => new Promise<void>((r) => server.close(() => r())));
      const got = new Promise<{ headers: IncomingHttpHeaders; body: Buffer }>((resolve) => {
        server.on("stream", (stream: ServerHttp2Stream, headers) => {
          const parts: Buffer[] = [];
          stream.on("data", (c: Buffer) => parts.push(c));
          stream.on("end", () => {
            stream.respond({ ":status": 200 });
            stream.end();
            resolve({ headers, body: Buffer.concat(parts) });
          });
        });
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      const port = (server.address() as { port: number }).port;
      const socket = connect({ host: "127.0.0.1", port });
      onCleanup(() => void socket.destroy());
      socket.on("error", () => undefined);
      // A long path (past HPACK's 7-bit length prefix) checks the integer encoding.
      const path = `/switchyard.test.v1.Service/${"Method".repeat(30)}`;
      const body = Buffer.from("\u0000\u0000\u0000\u0000\u0003abc", "latin1");
      socket.write(Buffer.concat([h2ClientStart(1 << 20, 1 << 24), h2GrpcRequestHeaders(1, `127.0.0.1:${port}`, path), h2Frame(H2.DATA, H2_FLAG.END_STREAM, 1, body)]));
      const { headers, body: received } = await got;
      assert.equal(headers[":method"], "POST");
      assert.equal(headers[":scheme"], "http");
      assert.equal(headers[":path"], path);
      assert.equal(headers[":authority"], `127.0.0.1:${port}`);
      assert.equal(headers["content-type"], "application/grpc");
      assert.equal(headers["te"], "trailers");
      assert.deepEqual(received, body);
    });
  });
});
