/**
 * `npm run bench -- content [SIZE_MIB] [LIMIT_MIB_PER_S] [--unlimited-only] [--threads=N]`:
 * the content system's throughput, each row with its anchor measured in the same run.
 * `--unlimited-only` skips the limited rows (shorter runs while iterating); `--threads=N`
 * sets the downloader's fetch workers for the unlimited download (default: its own default).
 *
 * - limited_download_vs_limits: 4 distribution nodes, each paced to LIMIT, download vs
 *   the sum of the limits (the most the nodes can deliver).
 * - limited_download_vs_aria2c: the same download vs aria2c fetching the same file from
 *   4 HTTP servers each paced to the same LIMIT (multi-source segmented download).
 * - unlimited_download_vs_disk: download over loopback vs reading the same file from disk
 *   (O_DIRECT through dd to /dev/null, so the page cache does not answer for the disk).
 *   Both best of 3. The timed downloads only count the bytes, as dd only discards them;
 *   one download before them is checked byte-exactly against the file's SHA-256.
 * - unlimited_download_cpu_per_mib: CPU time (client + the 4 nodes, from process.cpuUsage
 *   and /proc/<pid>/stat) per MiB of that download, lowest of 3, vs the CPU time of the
 *   crypto a downloader cannot avoid (AES-256-GCM decrypt): a figure that depends little
 *   on how loaded the machine is.
 * - unlimited_download_workers_vs_in_thread: the same download with 2 fetch workers
 *   (worker threads) vs all in this thread (threads: 0), alternating rounds, best of 3
 *   each; unlimited_download_busiest_thread_cpu_per_mib: CPU per MiB of the busiest
 *   client thread in the two modes (what caps the client when it has cores to spare).
 * - upload_vs_disk: upload (split, encrypt, replicate x2 to the nodes) vs writing the same
 *   bytes to a local file with fsync.
 *
 * Every server is its own process (the compiled build); the client runs here.
 */
import { execFile, fork, spawn, type ChildProcess } from "node:child_process";
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, statSync, openSync, fsyncSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { stringify as toYaml } from "yaml";
import { ChunkingMode } from "../../gen/switchyard/content/v1/content.js";
import { ContentClient } from "../../clients/content/index.js";
import { nodeEntryPoint } from "../cluster/launcher.js";
import { generateGrantKey } from "../../servers/content/grant.js";
import { row, type BenchRow } from "./harness.js";

const run = promisify(execFile);
const MiB = 1024 * 1024;
const KEY = generateGrantKey("bench");
const TOKEN = randomBytes(16).toString("hex");

export function startNode(dir: string, cfg: Record<string, unknown>): Promise<{ child: ChildProcess; address: string }> {
  const node = cfg["node"] as Record<string, unknown>;
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${String(node["id"])}.yaml`);
  writeFileSync(file, toYaml({ log: { level: "warn" }, metrics: { listen: "" }, ...cfg, node: { listen: "127.0.0.1:0", dataDir: join(dir, String(node["id"])), ...node } }));
  const child = fork(nodeEntryPoint(), ["--config", file], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  return new Promise((resolve, reject) => {
    child.once("message", (m: { address: string }) => resolve({ child, address: m.address }));
    child.once("exit", (c) => reject(new Error(`node ${String(node["id"])} exited ${c}`)));
  });
}

export async function cluster(dir: string, limit: number): Promise<{ client: ContentClient; children: ChildProcess[] }> {
  const children: ChildProcess[] = [];
  const nodes: string[] = [];
  for (let i = 1; i <= 4; i++) {
    const n = await startNode(dir, { node: { id: `bn-${i}`, role: "distribution-node" }, distributionNode: { grantKeys: [{ id: KEY.id, publicKey: KEY.publicKey }], bandwidthLimit: limit } });
    children.push(n.child);
    nodes.push(n.address);
  }
  const m = await startNode(dir, {
    node: { id: "bcm", role: "content-manager" },
    contentManager: { tokens: [{ principal: "bench", token: TOKEN, permissions: ["admin"] }], grantKeys: [{ id: KEY.id, privateKey: KEY.privateKey }], nodes, mirror: { interval: 0 }, uploadConcurrency: 8 },
  });
  children.push(m.child);
  return { client: new ContentClient(m.address, { token: TOKEN }), children };
}

export function makeFile(path: string, size: number): string {
  const block = randomBytes(8 * MiB);
  const fd = openSync(path, "w");
  const out = createHash("sha256");
  for (let off = 0; off < size; off += block.length) {
    const b = block.subarray(0, Math.min(block.length, size - off));
    writeFileSync(fd, b);
    out.update(b);
  }
  closeSync(fd);
  return out.digest("hex");
}

/** CPU ms (user + system) a child process used so far, from /proc/<pid>/stat. */
function childCpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  const f = (readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1] ?? "").split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // clock ticks (USER_HZ = 100)
}

/** CPU ms (user + system) of each thread of this process so far, by thread id. */
function threadCpuMs(): Map<string, number> {
  const out = new Map<string, number>();
  for (const t of readdirSync("/proc/self/task")) {
    try {
      const f = (readFileSync(`/proc/self/task/${t}/stat`, "utf8").split(") ")[1] ?? "").split(" ");
      out.set(t, ((Number(f[11]) + Number(f[12])) * 1000) / 100);
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

/**
 * Downloads; returns MiB/s and CPU ms per MiB of this process and of `children`, and
 * the CPU ms per MiB of this process's busiest thread (what bounds the client when it
 * has cores to spare). With
 * `verify` the bytes are hashed and compared with `want`; without, they are only counted
 * (the timed unlimited rounds: the disk anchor, dd to /dev/null, does not hash either).
 */
export async function download(
  client: ContentClient,
  id: string,
  want: string,
  concurrency: number,
  children: ChildProcess[] = [],
  verify = true,
  threads?: number,
): Promise<number & { cpuPerMiB?: number; busiestThreadPerMiB?: number; bytes?: number }> {
  const k0 = threadCpuMs();
  const c0 = process.cpuUsage();
  const n0 = children.reduce((a, c) => a + childCpuMs(c.pid), 0);
  const t0 = performance.now();
  const h = createHash("sha256");
  let n = 0;
  for await (const b of await client.download(id, { concurrency, ...(threads !== undefined ? { threads } : {}) })) {
    if (verify) h.update(b as Buffer);
    n += (b as Buffer).length;
  }
  const s = (performance.now() - t0) / 1000;
  const cu = process.cpuUsage(c0);
  const cpu = (cu.user + cu.system) / 1000 + children.reduce((a, c) => a + childCpuMs(c.pid), 0) - n0;
  const busiest = Math.max(...[...threadCpuMs()].map(([t, ms]) => ms - (k0.get(t) ?? 0)));
  if (verify && h.digest("hex") !== want) throw new Error("downloaded bytes differ");
  return Object.assign(n / MiB / s, { cpuPerMiB: cpu / (n / MiB), busiestThreadPerMiB: busiest / (n / MiB), bytes: n });
}

/** CPU ms per MiB of the least a downloader must do: AES-256-GCM decrypt (and authenticate). */
function cryptoFloorPerMiB(): number {
  const block = randomBytes(4 * MiB);
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const enc = createCipheriv("aes-256-gcm", key, iv);
  const ct = Buffer.concat([enc.update(block), enc.final()]);
  const tag = enc.getAuthTag();
  let best = Infinity;
  for (let round = 0; round < 3; round++) {
    const c0 = process.cpuUsage();
    const rounds = 16;
    for (let i = 0; i < rounds; i++) {
      const d = createDecipheriv("aes-256-gcm", key, iv);
      d.setAuthTag(tag);
      d.update(ct);
      d.final();
    }
    const cu = process.cpuUsage(c0);
    best = Math.min(best, (cu.user + cu.system) / 1000 / (rounds * 4));
  }
  return best;
}

async function aria2(urls: string[], dir: string, size: number): Promise<number> {
  rmSync(join(dir, "aria-out"), { force: true });
  const t0 = performance.now();
  await run("aria2c", [
    "--quiet=true", "--allow-overwrite=true", "--file-allocation=none", "--auto-file-renaming=false",
    // The best of the settings tried on this machine: with fewer connections per server, or
    // the default "feedback" URI selector, aria2c leaves sources idle (8-16 of 32 MiB/s).
    `--split=${urls.length * 4}`, "--max-connection-per-server=4", "--min-split-size=1M", "--uri-selector=inorder",
    "-d", dir, "-o", "aria-out", ...urls,
  ]);
  const s = (performance.now() - t0) / 1000;
  if (statSync(join(dir, "aria-out")).size !== size) throw new Error("aria2c output has the wrong size");
  return size / MiB / s;
}

async function spawnHttp(file: string, rate: number): Promise<{ child: ChildProcess; url: string }> {
  const script = join(dirname(fileURLToPath(import.meta.url)), "limited-http-server.js");
  const child = spawn(process.execPath, [script, file, String(rate)], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<string>((resolve, reject) => {
    child.stdout?.once("data", (b: Buffer) => resolve(b.toString().trim()));
    child.once("exit", (c) => reject(new Error(`http server exited ${c}`)));
  });
  return { child, url: `http://127.0.0.1:${port}/file` };
}

export default async function content(args: string[]): Promise<BenchRow[]> {
  const flags = args.filter((a) => a.startsWith("--"));
  const positional = args.filter((a) => !a.startsWith("--"));
  const size = Number(positional[0] ?? 256) * MiB;
  const limit = Number(positional[1] ?? 8) * MiB;
  const unlimitedOnly = flags.includes("--unlimited-only");
  const threadsFlag = flags.find((f) => f.startsWith("--threads="));
  const threads = threadsFlag ? Number(threadsFlag.slice("--threads=".length)) : undefined;
  const limitedSize = Math.round((limit * 4 * 8) / MiB) * MiB; // about 8 s at the summed limits
  const dir = mkdtempSync(join(tmpdir(), "switchyard-bench-content-"));
  const all: ChildProcess[] = [];
  const rows: BenchRow[] = [];
  try {
    const file = join(dir, "payload.bin");
    const want = makeFile(file, size);

    // --- limited nodes vs the sum of limits and vs aria2c
    if (!unlimitedOnly) {
      const limitedFile = join(dir, "limited.bin");
      const wantLimited = makeFile(limitedFile, limitedSize);
      const lim = await cluster(join(dir, "limited"), limit);
      all.push(...lim.children);
      const lc = await lim.client.uploadFile(limitedFile, { chunking: ChunkingMode.FIXED, pieceSize: MiB });
      await download(lim.client, lc.contentId, wantLimited, 16); // warm-up (connections, JIT)
      const ours = await download(lim.client, lc.contentId, wantLimited, 16);
      const http = [];
      for (let i = 0; i < 4; i++) http.push(await spawnHttp(limitedFile, limit));
      all.push(...http.map((h) => h.child));
      const aria = await aria2(http.map((h) => h.url), dir, limitedSize);
      const ours2 = await download(lim.client, lc.contentId, wantLimited, 16);
      const best = Math.max(ours, ours2);
      rows.push(row("limited_download_vs_limits", "MiB/s", best, (4 * limit) / MiB, `sum of 4 node limits (${limit / MiB} MiB/s each)`, true));
      rows.push(row("limited_download_vs_aria2c", "MiB/s", best, aria, "aria2c -s16 -x4, 4 HTTP sources at the same limit", true));
      lim.client.close();
      lim.children.forEach((c) => c.kill("SIGTERM"));
    }

    // --- unlimited: upload and download vs the local disk
    const un = await cluster(join(dir, "unlimited"), 0);
    all.push(...un.children);
    let t0 = performance.now();
    // 4 MiB average pieces: per-piece costs (a stream, a grant check, an index read) are
    // paid a quarter as often as with the 1 MiB default.
    const uc = await un.client.uploadFile(file, { chunking: ChunkingMode.CONTENT_DEFINED, pieceSize: 4 * MiB });
    const up = size / MiB / ((performance.now() - t0) / 1000);
    const nodeChildren = un.children.slice(0, 4);
    // One verified download (byte-exact against the file's SHA-256; it also opens the
    // connections), then 3 timed ones that count the bytes like dd to /dev/null. Every
    // piece of every round is still authenticated by its GCM tag in the downloader.
    await download(un.client, uc.contentId, want, 8, [], true, threads);
    // Alternating with the other mode: 2 fetch workers when the default (or --threads)
    // is in this thread, in this thread otherwise. The first round also starts the workers.
    const mainThreads = threads ?? 0;
    const otherThreads = mainThreads > 0 ? 0 : 2;
    // Disk write: the same bytes, streamed to a file and fsynced.
    t0 = performance.now();
    const copy = join(dir, "copy.bin");
    await new Promise<void>((resolve, reject) => {
      const ws = createWriteStream(copy);
      createReadStream(file, { highWaterMark: MiB }).pipe(ws).on("finish", resolve).on("error", reject);
    });
    const fd = openSync(copy, "r+");
    fsyncSync(fd);
    closeSync(fd);
    const diskWrite = size / MiB / ((performance.now() - t0) / 1000);
    // The disk anchor: a read of that copy that the page cache does not answer (O_DIRECT),
    // best of 3 like the download. The disk here is virtual and its speed drifts by the
    // minute (0.9-2.4 GB/s seen), so each dd round runs right before a download round.
    let diskRead = 0;
    type Round = Awaited<ReturnType<typeof download>>;
    const downs: Round[] = [];
    const others: Round[] = [];
    for (let i = 0; i < 3; i++) {
      t0 = performance.now();
      await run("dd", [`if=${copy}`, "of=/dev/null", "bs=4M", "iflag=direct"]);
      const dd = size / MiB / ((performance.now() - t0) / 1000);
      diskRead = Math.max(diskRead, dd);
      const d = await download(un.client, uc.contentId, want, 8, nodeChildren, false, mainThreads);
      if (d.bytes !== size) throw new Error(`download delivered ${d.bytes} bytes, expected ${size}`);
      process.stderr.write(`unlimited round ${i + 1}: dd ${dd.toFixed(0)} MiB/s, download ${Number(d).toFixed(0)} MiB/s (${(d.cpuPerMiB ?? NaN).toFixed(2)} ms CPU/MiB); load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}\n`);
      downs.push(d);
      others.push(await download(un.client, uc.contentId, want, 8, nodeChildren, false, otherThreads));
    }
    const [workers, inThread] = mainThreads > 0 ? [downs, others] : [others, downs];
    const down = Math.max(...downs);
    const cpu = Math.min(...downs.map((d) => d.cpuPerMiB ?? Infinity));
    un.client.close();

    rows.push(row("unlimited_download_vs_disk", "MiB/s", down, diskRead, "dd iflag=direct read of the same file to /dev/null, best of 3", true));
    rows.push(row("unlimited_download_cpu_per_mib", "ms CPU/MiB", cpu, cryptoFloorPerMiB(), "AES-256-GCM decrypt of the same bytes in one process", false));
    const busiest = (ds: Round[]): number => Math.min(...ds.map((d) => d.busiestThreadPerMiB ?? Infinity));
    rows.push(row("unlimited_download_workers_vs_in_thread", "MiB/s", Math.max(...workers), Math.max(...inThread), "the same download with threads: 0 (all in one thread), alternating, best of 3", true));
    rows.push(row("unlimited_download_busiest_thread_cpu_per_mib", "ms CPU/MiB", busiest(workers), busiest(inThread), "busiest client thread with threads: 0 (lowest of 3)", false));
    rows.push(row("upload_vs_disk", "MiB/s", up, diskWrite, "write + fsync of the same bytes", true));
  } finally {
    for (const c of all) if (c.exitCode === null) c.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}
