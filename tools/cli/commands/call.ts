/**
 * `switchyard list|describe|call`: grpcurl-like access to any node through server
 * reflection, for operators on machines without grpcurl.
 */
import type { Command } from "commander";
import { ReflectionClient } from "../../../clients/reflection/index.js";
import { describeError } from "../../../clients/grpc/call.js";
import type { JsonValue } from "@bufbuild/protobuf";
import { clientSettings } from "../settings.js";

async function withReflection(address: string, fn: (r: ReflectionClient) => Promise<void>): Promise<void> {
  const r = new ReflectionClient(address, clientSettings());
  try {
    await fn(r);
  } catch (err) {
    process.stderr.write(`${describeError(err)}\n`);
    process.exitCode = 1;
  } finally {
    r.close();
  }
}

/** Registers `list`, `describe` and `call`. */
export function registerCall(program: Command): void {
  program
    .command("list")
    .description("list the services a node serves (through reflection)")
    .argument("<address>", "node address host:port")
    .action((address: string) =>
      withReflection(address, async (r) => {
        for (const s of await r.listServices()) process.stdout.write(`${s}\n`);
      }),
    );
  program
    .command("describe")
    .description("show a service's methods with their documentation (through reflection)")
    .argument("<address>", "node address host:port")
    .argument("<service>", "fully-qualified service name, e.g. switchyard.node.v1.NodeService")
    .action((address: string, service: string) =>
      withReflection(address, async (r) => {
        const svc = await r.service(service);
        const comments = new Map<string, string>();
        for (const loc of svc.file.proto.sourceCodeInfo?.location ?? []) {
          // [6, serviceIndex, 2, methodIndex] is a method's path in its FileDescriptorProto.
          if (loc.path.length === 4 && loc.path[0] === 6 && loc.path[2] === 2) {
            const s = svc.file.proto.service[loc.path[1] ?? -1];
            const m = s?.method[loc.path[3] ?? -1];
            if (s && m && `${svc.file.proto.package}.${s.name}` === service) comments.set(m.name, loc.leadingComments.trim());
          }
        }
        process.stdout.write(`service ${service}\n`);
        for (const m of svc.methods) {
          const stream = (b: boolean): string => (b ? "stream " : "");
          const kind = m.methodKind;
          process.stdout.write(
            `\n  rpc ${m.name}(${stream(kind === "client_streaming" || kind === "bidi_streaming")}${m.input.typeName}) returns (${stream(kind === "server_streaming" || kind === "bidi_streaming")}${m.output.typeName})\n`,
          );
          for (const line of (comments.get(m.name) ?? "").split("\n")) if (line.trim()) process.stdout.write(`    // ${line.trim()}\n`);
        }
      }),
    );
  program
    .command("call")
    .description("call a unary or server-streaming method with a JSON request (through reflection)")
    .argument("<address>", "node address host:port")
    .argument("<method>", "Service/Method, e.g. switchyard.node.v1.NodeService/GetLoad")
    .argument("[json]", "request as JSON (proto3 JSON mapping)", "{}")
    .option("--max <n>", "stop a stream after n messages", (v) => Number(v))
    .option("--timeout <seconds>", "deadline", (v) => Number(v), 10)
    .action((address: string, method: string, json: string, opts: { max?: number; timeout: number }) =>
      withReflection(address, async (r) => {
        let request: JsonValue;
        try {
          request = JSON.parse(json) as JsonValue;
        } catch {
          throw new Error(`the request is not valid JSON: ${json}`);
        }
        const res = await r.call(method, request, { deadlineMs: opts.timeout * 1000, ...(opts.max ? { maxMessages: opts.max } : {}) });
        for (const m of res) process.stdout.write(JSON.stringify(m, null, 2) + "\n");
      }),
    );
}
