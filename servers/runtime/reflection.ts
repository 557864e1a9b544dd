/**
 * Server reflection (grpc.reflection.v1 and v1alpha) fed from the FileDescriptorSet that
 * `npm run generate` builds with buf. The raw FileDescriptorProtos are served as they are
 * (comments included), so grpcurl's `list`, `describe` and dynamic calls work without
 * proto files. (Loading them through proto-loader would merge files per package and
 * break dynamic clients.)
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { ReflectionService } from "@grpc/reflection";
import type { Server } from "@grpc/grpc-js";
import { packageRoot } from "./paths.js";

let cached: Buffer[] | undefined;

/** The encoded FileDescriptorProtos of every contract Switchyard serves. */
export function descriptorFiles(): Buffer[] {
  if (cached) return cached;
  const set = readFileSync(join(packageRoot(), "gen", "descriptor_set.binpb"));
  const files: Buffer[] = [];
  const reader = new BinaryReader(set);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1) files.push(Buffer.from(reader.bytes()));
    else reader.skip(wireType);
  }
  cached = files;
  return files;
}

/** Adds reflection v1 + v1alpha to `server`, listing exactly `services`. */
export function addReflection(server: Server, services: string[]): void {
  // ReflectionService reads `fileDescriptorProtos` from each entry of a package definition.
  const pkg = { switchyard: { fileDescriptorProtos: descriptorFiles() } };
  new ReflectionService(pkg as never, { services }).addToServer(server);
}
