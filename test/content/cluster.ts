/** Test helpers for the content subsystem: an in-process manager with N nodes. */
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import type { RunningNode } from "../../servers/runtime/node.js";
import { contentManagerRole } from "../../servers/content/role-content-manager.js";
import { distributionNodeRole } from "../../servers/content/role-distribution-node.js";
import type { Manager } from "../../servers/content/manager.js";
import { ContentClient } from "../../clients/content/index.js";
import { ChunkingMode, type ManifestPiece } from "../../gen/switchyard/content/v1/content.js";
import { onCleanup, startTestNode } from "../helpers/nodes.js";

/** The manager's Ed25519 grant key (tests only). */
export const GRANT_KEYS = [{ id: "k1", privateKey: "5jK7/h5RLwmMcRCuF8oQ+XjJzrlaPympmTh4k2c4MZ0=" }];
/** Its public half: all a node holds. */
export const NODE_GRANT_KEYS = [{ id: "k1", publicKey: "snfWE7RTkbP/eLnb/zH88Nk1cgmUHQBFvGRVDI68AzY=" }];
export const ADMIN_TOKEN = "admin-token-0123456789";
export const READER_TOKEN = "reader-token-0123456789";
export const NODE_TOKEN = "node-register-token-0123456789";
export const TOKENS = [
  { principal: "admin", token: ADMIN_TOKEN, permissions: ["admin"] },
  { principal: "reader", token: READER_TOKEN, permissions: ["download"] },
  { principal: "nodes", token: NODE_TOKEN, permissions: ["register"] },
];

/** A running content cluster. */
export interface ContentCluster {
  manager: RunningNode;
  nodes: RunningNode[];
  client: ContentClient;
  /** The manager's domain object. */
  domain: Manager;
  clientFor(token: string): ContentClient;
}

/** Node role config with the test grant keys. */
export function nodeConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { grantKeys: NODE_GRANT_KEYS, ...extra };
}

/** Manager role config with the test tokens and keys. */
export function managerConfig(nodes: string[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { tokens: TOKENS, grantKeys: GRANT_KEYS, nodes, nodePollInterval: "500ms", mirror: { interval: 0 }, ...extra };
}

/** Starts `count` nodes and a manager that knows them. */
export async function startContentCluster(
  count = 4,
  opts: { node?: (i: number) => Record<string, unknown>; manager?: Record<string, unknown>; managerDataDir?: string } = {},
): Promise<ContentCluster> {
  const nodes: RunningNode[] = [];
  for (let i = 0; i < count; i++) {
    nodes.push(await startTestNode(distributionNodeRole, { id: `dn-${i + 1}`, roleConfig: nodeConfig(opts.node?.(i)) }));
  }
  const manager = await startTestNode(contentManagerRole, {
    id: "cm-1",
    roleConfig: managerConfig(nodes.map((n) => n.address), opts.manager),
    ...(opts.managerDataDir ? { dataDir: opts.managerDataDir } : {}),
  });
  const clients: ContentClient[] = [];
  const clientFor = (token: string): ContentClient => {
    const c = new ContentClient(manager.address, { token });
    clients.push(c);
    return c;
  };
  onCleanup(() => clients.forEach((c) => c.close()));
  const client = clientFor(ADMIN_TOKEN);
  return { manager, nodes, client, domain: (manager.role as unknown as { manager: Manager }).manager, clientFor };
}

/** Random bytes (a repeated random block above 64 MiB, where content-defined
 *  boundaries may then be missing: use small sizes for chunking tests). */
export function testBytes(size: number, seed = 1): Buffer {
  if (size <= 64 * 1024 * 1024) return randomBytes(size);
  const block = randomBytes(64 * 1024 + seed);
  const out = Buffer.allocUnsafe(size);
  for (let off = 0; off < size; off += block.length) block.copy(out, off, 0, Math.min(block.length, size - off));
  return out;
}

/** Flips one byte in the middle of a stored piece on one node. */
export function tamper(c: ContentCluster, nodeId: string, pieceId: string): void {
  const node = c.nodes.find((n) => n.config.node.id === nodeId);
  const path = `${node?.config.dataDir}/pieces/${pieceId.slice(0, 2)}/${pieceId}`;
  const b = readFileSync(path);
  const at = Math.floor(b.length / 2);
  b[at] = (b[at] ?? 0) ^ 0xff;
  writeFileSync(path, b);
}

/**
 * Six 64 KiB fixed pieces on a 2-node cluster, with one replica of piece 1 tampered (a
 * download fails over to the other); tamper every replica of piece 0 to make it fail.
 */
export async function contentWithTamperedReplica(): Promise<{ c: ContentCluster; data: Buffer; contentId: string; p0: ManifestPiece }> {
  const c = await startContentCluster(2);
  const data = testBytes(6 * 64 * 1024);
  const content = await c.client.upload("tampered", chunks(data), { chunking: ChunkingMode.FIXED, pieceSize: 64 * 1024 });
  const m = await c.client.manager.getManifest(content.contentId);
  const [p0, p1] = m.pieces;
  if (!p0 || !p1) throw new Error("expected 6 pieces");
  tamper(c, p1.replicas[0]?.nodeId as string, p1.pieceId);
  return { c, data, contentId: content.contentId, p0 };
}

/** Collects a Readable into one Buffer. */
export async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}

/** Yields `data` in chunks of `size`. */
export async function* chunks(data: Buffer, size = 256 * 1024): AsyncGenerator<Buffer> {
  for (let off = 0; off < data.length; off += size) yield data.subarray(off, off + size);
}
