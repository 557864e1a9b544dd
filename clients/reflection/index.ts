/**
 * A dynamic gRPC client driven by server reflection, the way grpcurl works: list the
 * services a node serves, fetch the descriptors of a symbol (and its imports), and call
 * any unary or server-streaming method with JSON in and JSON out. No proto files or
 * generated code of the target service are needed.
 */
import { Metadata, type Client, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import {
  create,
  createFileRegistry,
  fromBinary,
  fromJson,
  toBinary,
  toJson,
  type DescMethod,
  type DescService,
  type FileRegistry,
  type JsonValue,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import {
  ServerReflectionClient,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from "../../gen/grpc/reflection/v1/reflection.js";
import { dial, type ChannelSettings } from "../grpc/channel.js";

/** A reflection session with one node. */
export class ReflectionClient {
  private readonly client: ServerReflectionClient;
  private readonly files = new Map<string, FileDescriptorProto>();

  constructor(
    readonly target: string,
    settings: ChannelSettings = {},
  ) {
    this.client = dial(ServerReflectionClient, target, settings);
  }

  /** Sends one reflection request on a fresh stream and returns the answer. */
  private ask(request: ServerReflectionRequest["messageRequest"], deadlineMs = 10_000): Promise<ServerReflectionResponse> {
    return new Promise((resolve, reject) => {
      const stream: ClientDuplexStream<ServerReflectionRequest, ServerReflectionResponse> = this.client.serverReflectionInfo(
        new Metadata(),
        { deadline: Date.now() + deadlineMs },
      );
      stream.once("data", (res: ServerReflectionResponse) => {
        resolve(res);
        stream.end();
      });
      stream.once("error", (err: ServiceError) => reject(err));
      stream.write({ host: "", messageRequest: request });
    });
  }

  /** Fully-qualified names of every service the node serves. */
  async listServices(): Promise<string[]> {
    const res = await this.ask({ $case: "listServices", value: "*" });
    if (res.messageResponse?.$case !== "listServicesResponse") throw reflectionError(res);
    return res.messageResponse.value.service.map((s) => s.name);
  }

  private addFiles(res: ServerReflectionResponse): void {
    if (res.messageResponse?.$case !== "fileDescriptorResponse") throw reflectionError(res);
    for (const bytes of res.messageResponse.value.fileDescriptorProto) {
      const fd = fromBinary(FileDescriptorProtoSchema, bytes);
      this.files.set(fd.name, fd);
    }
  }

  /** A registry holding the file that defines `symbol` and everything it imports. */
  async registryFor(symbol: string): Promise<FileRegistry> {
    const res = await this.ask({ $case: "fileContainingSymbol", value: symbol });
    this.addFiles(res);
    if (res.messageResponse?.$case !== "fileDescriptorResponse") throw reflectionError(res);
    const first = fromBinary(FileDescriptorProtoSchema, res.messageResponse.value.fileDescriptorProto[0] ?? new Uint8Array());
    // Fetch imports the server did not send along.
    const missing = async (fd: FileDescriptorProto): Promise<void> => {
      for (const dep of fd.dependency) {
        if (this.files.has(dep)) continue;
        this.addFiles(await this.ask({ $case: "fileByFilename", value: dep }));
        const got = this.files.get(dep);
        if (got) await missing(got);
      }
    };
    await missing(first);
    // Dependencies first: createFileRegistry(file, resolver) can order a diamond of
    // imports wrongly, so hand it a FileDescriptorSet in topological order instead.
    const ordered: FileDescriptorProto[] = [];
    const placed = new Set<string>();
    const place = (fd: FileDescriptorProto): void => {
      if (placed.has(fd.name)) return;
      placed.add(fd.name);
      for (const dep of fd.dependency) {
        const d = this.files.get(dep);
        if (!d) throw new Error(`reflection did not provide ${dep}, imported by ${fd.name}`);
        place(d);
      }
      ordered.push(fd);
    };
    place(first);
    return createFileRegistry(create(FileDescriptorSetSchema, { file: ordered }));
  }

  /** The descriptor of a service, e.g. "switchyard.node.v1.NodeService". */
  async service(name: string): Promise<DescService> {
    const reg = await this.registryFor(name);
    const svc = reg.getService(name);
    if (!svc) throw new Error(`service ${name} not found through reflection`);
    return svc;
  }

  /**
   * Calls `Service/Method` (e.g. "switchyard.node.v1.NodeService/GetNodeInfo") with a
   * JSON request. Unary calls resolve with one JSON response; server-streaming calls with
   * the first `maxMessages` responses.
   */
  async call(fullMethod: string, request: JsonValue, opts: { deadlineMs?: number; maxMessages?: number } = {}): Promise<JsonValue[]> {
    const [serviceName, methodName] = fullMethod.replace(/^\//, "").split(/[/.](?=[^/.]+$)/);
    if (!serviceName || !methodName) throw new Error(`expected Service/Method, got ${fullMethod}`);
    const svc = await this.service(serviceName);
    const method: DescMethod | undefined = svc.methods.find((m) => m.name === methodName);
    if (!method) throw new Error(`${serviceName} has no method ${methodName}`);
    const reg = await this.registryFor(serviceName);
    const input = fromJson(method.input, request, { registry: reg });
    const path = `/${serviceName}/${method.name}`;
    const serialize = (): Buffer => Buffer.from(toBinary(method.input, input));
    const deserialize = (b: Buffer): JsonValue => toJson(method.output, fromBinary(method.output, b), { registry: reg });
    const client = this.client as unknown as Client;
    const deadline = Date.now() + (opts.deadlineMs ?? 10_000);
    if (method.methodKind === "unary") {
      return new Promise((resolve, reject) => {
        client.makeUnaryRequest(path, serialize, deserialize, {}, new Metadata(), { deadline }, (err, res) =>
          err ? reject(err) : resolve([res as JsonValue]),
        );
      });
    }
    if (method.methodKind === "server_streaming") {
      const max = opts.maxMessages ?? Infinity;
      const stream = client.makeServerStreamRequest(path, serialize, deserialize, {}, new Metadata(), { deadline });
      const out: JsonValue[] = [];
      for await (const m of stream as AsyncIterable<JsonValue>) {
        out.push(m);
        if (out.length >= max) {
          stream.cancel();
          break;
        }
      }
      return out;
    }
    throw new Error(`${fullMethod} is a ${method.methodKind} method; only unary and server-streaming calls are supported`);
  }

  /** Closes the channel. */
  close(): void {
    this.client.close();
  }
}

function reflectionError(res: ServerReflectionResponse): Error {
  if (res.messageResponse?.$case === "errorResponse") {
    return new Error(`reflection error ${res.messageResponse.value.errorCode}: ${res.messageResponse.value.errorMessage}`);
  }
  return new Error(`unexpected reflection answer ${res.messageResponse?.$case ?? "(empty)"}`);
}
