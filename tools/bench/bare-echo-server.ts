/**
 * The runtime benchmark's anchor: a bare grpc-js server with the same NodeService.Echo
 * handler logic as a Switchyard node and nothing else (no interceptors, metrics or error
 * boundary). Prints its port on stdout.
 */
import { Server, ServerCredentials, status, type sendUnaryData, type ServerUnaryCall } from "@grpc/grpc-js";
import { NodeServiceService, type EchoRequest, type EchoResponse } from "../../gen/switchyard/node/v1/node_service.js";

const MAX_ECHO_BYTES = 1024 * 1024;
const server = new Server();
const unimplemented = (_call: unknown, cb: sendUnaryData<never>): void => cb({ code: status.UNIMPLEMENTED });
server.addService(NodeServiceService, {
  getNodeInfo: unimplemented,
  getLoad: unimplemented,
  watchLoad: (call: { emit(e: string, v: unknown): void }) => call.emit("error", { code: status.UNIMPLEMENTED }),
  echo: (call: ServerUnaryCall<EchoRequest, EchoResponse>, cb: sendUnaryData<EchoResponse>) => {
    if (call.request.payload.length > MAX_ECHO_BYTES) cb({ code: status.INVALID_ARGUMENT, details: "payload too large" });
    else cb(null, { payload: call.request.payload });
  },
});
server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.stdout.write(`${port}\n`);
});
process.on("SIGTERM", () => server.forceShutdown());
