/**
 * `switchyard content ...`: upload, download, list, delete, node membership, history,
 * locate and repair against a content manager. Manager address: --manager, else
 * SWITCHYARD_CONTENT_MANAGER, else the content-manager of the cluster `switchyard up`
 * started, else 127.0.0.1:7420. Token: --token or SWITCHYARD_CONTENT_TOKEN.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { Command } from "commander";
import cliProgress from "cli-progress";
import Table from "cli-table3";
import { ContentClient, type DistributionNode, type DownloadOptions } from "../../../clients/content/index.js";
import { describeError } from "../../../clients/grpc/call.js";
import { ChunkingMode, HistoryKind, NodeState } from "../../../gen/switchyard/content/v1/content.js";
import type { ClusterEntry } from "../../cluster/launcher.js";
import { clientSettings } from "../settings.js";
import { generateGrantKey } from "../../../servers/content/grant.js";

interface Common {
  manager?: string;
  token?: string;
  data: string;
}

function managerAddress(o: Common): string {
  if (o.manager) return o.manager;
  if (process.env["SWITCHYARD_CONTENT_MANAGER"]) return process.env["SWITCHYARD_CONTENT_MANAGER"];
  try {
    const state = JSON.parse(readFileSync(join(o.data, "cluster.json"), "utf8")) as { nodes: ClusterEntry[] };
    const m = state.nodes.find((n) => n.role === "content-manager");
    if (m) return m.address;
  } catch {
    // no running cluster: fall through to the default port
  }
  return "127.0.0.1:7420";
}

function client(o: Common): ContentClient {
  const token = o.token ?? process.env["SWITCHYARD_CONTENT_TOKEN"];
  if (!token) throw new Error("no token: pass --token or set SWITCHYARD_CONTENT_TOKEN");
  return new ContentClient(managerAddress(o), { token, channel: clientSettings() });
}

function human(n: number): string {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

function bar(label: string): cliProgress.SingleBar {
  return new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% | {done}/{size} | {speed}/s`, stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
}

async function run(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    process.stderr.write(`error: ${(err as { code?: unknown }).code !== undefined ? describeError(err) : (err as Error).message}\n`);
    process.exitCode = 1;
  }
}

const stateName = (s: NodeState): string => NodeState[s]?.toLowerCase() ?? String(s);

/** Registers `content` and its subcommands. */
export function registerContent(program: Command): void {
  const content = program
    .command("content")
    .description("split, encrypted, replicated content: upload, download, nodes")
    .option("--manager <host:port>", "content manager (default: SWITCHYARD_CONTENT_MANAGER, the local cluster, or 127.0.0.1:7420)")
    .option("--token <token>", "bearer token (default: SWITCHYARD_CONTENT_TOKEN)")
    .option("--data <dir>", "data folder of 'switchyard up'", "data");
  const common = (): Common => content.opts<Common>();

  content
    .command("upload <file>")
    .description("upload a file (streamed; split, encrypted and placed by the manager)")
    .option("--name <name>", "name to record (default: the file name)")
    .option("--fixed", "fixed-size pieces instead of content-defined ones")
    .option("--piece-size <bytes>", "piece (average) size in bytes", (v) => parseInt(v, 10))
    .option("--replicas <n>", "replication factor", (v) => parseInt(v, 10))
    .option("--min-rank <n>", "lowest node security rank", (v) => parseInt(v, 10))
    .action((file: string, o: { name?: string; fixed?: boolean; pieceSize?: number; replicas?: number; minRank?: number }) =>
      run(async () => {
        const c = client(common());
        const b = bar("upload");
        const t0 = Date.now();
        let started = false;
        try {
          const res = await c.uploadFile(
            file,
            {
              ...(o.name ? { name: o.name } : {}),
              ...(o.fixed ? { chunking: ChunkingMode.FIXED } : {}),
              ...(o.pieceSize ? { pieceSize: o.pieceSize } : {}),
              ...(o.replicas ? { replicationFactor: o.replicas } : {}),
              ...(o.minRank ? { minSecurityRank: o.minRank } : {}),
            },
            (sent, total) => {
              if (!started) {
                b.start(total, 0, { done: human(0), size: human(total), speed: human(0) });
                started = true;
              }
              b.update(sent, { done: human(sent), size: human(total), speed: human(sent / Math.max(0.001, (Date.now() - t0) / 1000)) });
            },
          );
          b.stop();
          process.stdout.write(`${res.contentId}  ${res.name}  ${human(Number(res.size))}  ${res.pieceCount} pieces  x${res.replicationFactor}  re-used ${human(Number(res.reusedBytes))}\n`);
        } finally {
          b.stop();
          c.close();
        }
      }),
    );

  content
    .command("download <id>")
    .description("download a content (parallel, verified) to a file or stdout")
    .requiredOption("--out <file>", "output file, or - for stdout")
    .option("--concurrency <n>", "pieces fetched in parallel", (v) => parseInt(v, 10), 8)
    .option("--threads <n>", "worker threads that fetch and decrypt (default: 2 when writing a file on a machine with 2+ cores, 0 for stdout)", (v) => parseInt(v, 10))
    .action((id: string, o: { out: string; concurrency: number; threads?: number }) =>
      run(async () => {
        const c = client(common());
        const b = bar("download");
        try {
          const t0 = Date.now();
          const opts: DownloadOptions = {
            concurrency: o.concurrency,
            ...(o.threads !== undefined ? { threads: o.threads } : {}),
            onEvent: (e) => {
              if (e.type === "start" && o.out !== "-") b.start(e.bytes, 0, { done: human(0), size: human(e.bytes), speed: human(0) });
              else if (e.type === "piece") b.update(e.delivered, { done: human(e.delivered), speed: human(e.delivered / Math.max(0.001, (Date.now() - t0) / 1000)) });
              else if (e.type === "failover") process.stderr.write(`\nnode ${e.node} failed for piece ${e.index}: ${e.error}; trying another replica\n`);
            },
          };
          if (o.out === "-") {
            await pipeline(await c.download(id, opts), process.stdout);
            return;
          }
          // Into a file: each piece is written at its offset by the thread that decrypted it.
          const st = await c.downloadToFile(id, o.out, opts);
          b.stop();
          process.stderr.write(`${human(st.bytes)} in ${((Date.now() - t0) / 1000).toFixed(1)} s from ${Object.keys(st.byNode).length} nodes (${st.failovers} failovers, ${st.hedges} hedges)\n`);
        } finally {
          b.stop();
          c.close();
        }
      }),
    );

  content
    .command("rm <id>")
    .description("delete a content on every node")
    .action((id: string) =>
      run(async () => {
        const c = client(common());
        try {
          const r = await c.manager.deleteContent(id);
          process.stdout.write(`deleted ${id}: ${r.piecesDeleted} pieces removed, ${r.piecesShared} shared kept, ${r.deletionsPending} pending\n`);
        } finally {
          c.close();
        }
      }),
    );

  content
    .command("ls")
    .description("list contents")
    .action(() =>
      run(async () => {
        const c = client(common());
        try {
          const t = new Table({ head: ["id", "name", "size", "pieces", "replicas", "mirrors", "owner", "created"] });
          for (const x of await c.manager.listContents()) {
            t.push([x.contentId, x.name, human(Number(x.size)), x.pieceCount, x.replicationFactor, x.mirrorReplicas, x.owner, x.createdAt?.toISOString() ?? ""]);
          }
          process.stdout.write(t.toString() + "\n");
        } finally {
          c.close();
        }
      }),
    );

  const nodeTable = (nodes: DistributionNode[]): string => {
    const t = new Table({ head: ["node", "address", "state", "rank", "used", "capacity", "pieces", "reachable", "drain"] });
    for (const n of nodes) {
      const drain = n.state === NodeState.ACTIVE ? "" : `${n.drainedPieces} moved, ${n.drainRemainingPieces} left${n.drainError ? ` (${n.drainError})` : ""}`;
      t.push([n.nodeId, n.address, stateName(n.state), n.securityRank, human(Number(n.usedBytes)), human(Number(n.capacityBytes)), Number(n.pieceCount), n.reachable ? "yes" : "NO", drain]);
    }
    return t.toString();
  };

  content
    .command("nodes")
    .description("list distribution nodes with state, space and drain progress")
    .action(() =>
      run(async () => {
        const c = client(common());
        try {
          process.stdout.write(nodeTable(await c.manager.listNodes()) + "\n");
        } finally {
          c.close();
        }
      }),
    );

  content
    .command("drain <node>")
    .description("move every piece off a node (copy, verify, switch, delete) and wait for the end")
    .option("--no-wait", "return once the drain has started")
    .action((node: string, o: { wait: boolean }) =>
      run(async () => {
        const c = client(common());
        try {
          const n = await c.manager.drainNode(node);
          if (!o.wait || !n) {
            process.stdout.write(nodeTable(n ? [n] : []) + "\n");
            return;
          }
          const total = Number(n.drainRemainingPieces) + Number(n.drainedPieces);
          const b = new cliProgress.SingleBar({ format: `drain ${node} [{bar}] {value}/{total} pieces`, stream: process.stderr }, cliProgress.Presets.shades_classic);
          b.start(Math.max(1, total), 0);
          for (;;) {
            const cur = (await c.manager.listNodes()).find((x) => x.nodeId === node);
            if (!cur) break;
            b.setTotal(Math.max(1, Number(cur.drainedPieces) + Number(cur.drainRemainingPieces)));
            b.update(Number(cur.drainedPieces));
            if (cur.state === NodeState.DRAINED) break;
            await new Promise((r) => setTimeout(r, 500));
          }
          b.stop();
          process.stdout.write(`${node} drained; remove it with: switchyard content remove ${node}\n`);
        } finally {
          c.close();
        }
      }),
    );

  content
    .command("remove <node>")
    .description("forget a node (refused while pieces would fall under their minimum replicas)")
    .action((node: string) =>
      run(async () => {
        const c = client(common());
        try {
          const n = await c.manager.removeNode(node);
          process.stdout.write(`removed ${node} (${n} placements dropped)\n`);
        } finally {
          c.close();
        }
      }),
    );

  content
    .command("add-node <address>")
    .description("register a distribution node")
    .option("--rank <n>", "security rank (default: the node's own)", (v) => parseInt(v, 10), 0)
    .action((address: string, o: { rank: number }) =>
      run(async () => {
        const c = client(common());
        try {
          const r = await c.manager.addNode(address, o.rank);
          process.stdout.write(nodeTable(r.node ? [r.node] : []) + "\n");
        } finally {
          c.close();
        }
      }),
    );

  content
    .command("keygen [id]")
    .description("print a fresh Ed25519 grant key: privateKey for contentManager.grantKeys, publicKey for distributionNode.grantKeys")
    .action((id: string | undefined) => {
      const k = generateGrantKey(id ?? `k${new Date().toISOString().slice(0, 10).replaceAll("-", "")}`);
      process.stdout.write(
        `# contentManager.grantKeys (keep secret; put it first to sign with it):\n- { id: ${k.id}, privateKey: "${k.privateKey}" }\n` +
          `# distributionNode.grantKeys (public):\n- { id: ${k.id}, publicKey: "${k.publicKey}" }\n`,
      );
    });

  content
    .command("history")
    .description("upload/download history, newest first")
    .option("--id <contentId>", "only this content")
    .option("--principal <name>", "only this principal")
    .option("--limit <n>", "most entries", (v) => parseInt(v, 10), 50)
    .action((o: { id?: string; principal?: string; limit: number }) =>
      run(async () => {
        const c = client(common());
        try {
          const r = await c.manager.listHistory({ contentId: o.id ?? "", principal: o.principal ?? "", pageSize: o.limit });
          const t = new Table({ head: ["when", "kind", "who", "content", "name", "bytes", "peer"] });
          for (const e of r.entries) t.push([e.at?.toISOString() ?? "", HistoryKind[e.kind]?.toLowerCase() ?? "", e.principal, e.contentId, e.name, human(Number(e.bytes)), e.peer]);
          process.stdout.write(t.toString() + "\n");
        } finally {
          c.close();
        }
      }),
    );

  content
    .command("locate <pieceId>")
    .description("which nodes hold a piece: records and every node's answer")
    .action((pieceId: string) =>
      run(async () => {
        const c = client(common());
        try {
          const r = await c.manager.locatePiece(pieceId, true);
          process.stdout.write(
            `recorded: ${r.recorded.map((x) => x.nodeId + (x.mirror ? " (mirror)" : "")).join(", ") || "-"}\nreported: ${r.reportedNodeIds.join(", ") || "-"}\nunreachable: ${r.unreachableNodeIds.join(", ") || "-"}\ncontents: ${r.contentIds.join(", ") || "-"}\nconfirmed: ${r.confirmedAt?.toISOString() ?? "-"}\n`,
          );
        } finally {
          c.close();
        }
      }),
    );

  content
    .command("repair")
    .description("compare every node with the records; re-create missing replicas, delete orphans")
    .option("--dry-run", "only report")
    .action((o: { dryRun?: boolean }) =>
      run(async () => {
        const c = client(common());
        try {
          const r = await c.manager.repair(o.dryRun ?? false);
          process.stdout.write(
            `checked ${r.piecesChecked} pieces: ${r.missingReplicas} missing replicas, ${r.replicasCreated} created, ${r.orphansDeleted} orphans, ${r.piecesLost} lost; unreachable: ${r.unreachableNodeIds.join(", ") || "none"}\n`,
          );
        } finally {
          c.close();
        }
      }),
    );
}
