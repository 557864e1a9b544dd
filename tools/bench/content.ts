/**
 * `npm run bench -- content [SIZE_MIB] [LIMIT_MIB_PER_S] [--unlimited-only] [--threads=N]`:
 * the content system's throughput, each row with its anchor measured in the same run.
 * SIZE (default 1024 MiB) is the unlimited rows' file, uploaded as `switchyard content
 * upload` does: content-defined pieces of the size the manager picks for it (8 MiB for
 * 1 GiB). A GiB takes ~1 s to download; with 256 MiB the start and the end of a download
 * (pieces not all in flight yet, the last ones finishing) weighed on the rate.
 * `--unlimited-only` skips the limited rows (shorter runs while iterating); `--threads=N`
 * sets the fetch workers of the timed file downloads (default: downloadToFile's own).
 *
 * - limited_download_vs_limits: 4 distribution nodes, each paced to LIMIT, download vs
 *   the sum of the limits (the most the nodes can deliver).
 * - limited_download_vs_aria2c: the same download vs aria2c fetching the same file from
 *   4 HTTP servers each paced to the same LIMIT (multi-source segmented download).
 * - unlimited_download_vs_disk: a file download over loopback into /dev/null
 *   (ContentClient.downloadToFile, what `switchyard content download ID --out FILE` runs,
 *   with its default fetch workers) vs reading the same file from disk into /dev/null
 *   (dd with O_DIRECT, so the page cache does not answer for the disk). Both discard the
 *   bytes; both best of 3, each dd round right before a download round. One file
 *   download before them is checked byte-exactly against the file's SHA-256 (its rate,
 *   cold, is printed), then 3 more warm the client and the nodes up.
 * - unlimited_download_cpu_per_mib: CPU time (client + the 4 nodes, from process.cpuUsage
 *   and /proc/<pid>/stat) per MiB of that download, lowest of 3, vs the CPU time of the
 *   crypto a downloader cannot avoid (AES-256-GCM decrypt): a figure that depends little
 *   on how loaded the machine is.
 * - unlimited_file_download_workers_vs_in_thread: the same file download with its
 *   default fetch workers vs threads: 0 (everything in this thread), best of 3 (after the
 *   rounds against dd).
 * - unlimited_stream_vs_file_download: the download read as a stream by JavaScript
 *   (ContentClient.download, threads: 0, bytes only counted) vs the file download:
 *   what handing every byte to a reader in this thread costs.
 * - upload_vs_disk: upload (split, encrypt, replicate x2 to the nodes) vs writing the same
 *   bytes to a local file with fsync.
 *
 * Every server is its own process (the compiled build); the client runs here.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, statSync, openSync, readSync, fsyncSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { ChunkingMode } from "../../gen/switchyard/content/v1/content.js";
import { ContentClient } from "../../clients/content/index.js";
import { startBenchNode, type BenchProcess } from "./processes.js";
import { generateGrantKey } from "../../servers/content/grant.js";
import { row, type BenchRow } from "./harness.js";

const run = promisify(execFile);
const MiB = 1024 * 1024;
const KEY = generateGrantKey("bench");
const TOKEN = randomBytes(16).toString("hex");

/** A node from the compiled build (startBenchNode), its data folder under `dir`. */
export function startNode(dir: string, cfg: Record<string, unknown>): Promise<BenchProcess> {
  mkdirSync(dir, { recursive: true });
  return startBenchNode(dir, cfg);
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

/** Throughput (MiB/s) of one download, with the CPU ms per MiB of this process and `children`, and of this process alone. */
export type Measured = number & { cpuPerMiB: number; clientCpuPerMiB: number; bytes: number };

/** Times `run` (which returns the bytes it delivered), counting this process's and `children`'s CPU. */
async function measure(children: ChildProcess[], run: () => Promise<number>): Promise<Measured> {
  const c0 = process.cpuUsage();
  const n0 = children.reduce((a, c) => a + childCpuMs(c.pid), 0);
  const t0 = performance.now();
  const n = await run();
  const s = (performance.now() - t0) / 1000;
  const cu = process.cpuUsage(c0);
  const client = (cu.user + cu.system) / 1000;
  const cpu = client + children.reduce((a, c) => a + childCpuMs(c.pid), 0) - n0;
  return Object.assign(n / MiB / s, { cpuPerMiB: cpu / (n / MiB), clientCpuPerMiB: client / (n / MiB), bytes: n });
}

/**
 * Downloads as a stream read here; with `verify` the bytes are hashed and compared with
 * `want`, without they are only counted.
 */
export function download(client: ContentClient, id: string, want: string, concurrency: number, children: ChildProcess[] = [], verify = true, threads?: number): Promise<Measured> {
  return measure(children, async () => {
    const h = createHash("sha256");
    let n = 0;
    for await (const b of await client.download(id, { concurrency, ...(threads !== undefined ? { threads } : {}) })) {
      if (verify) h.update(b as Buffer);
      n += (b as Buffer).length;
    }
    if (verify && h.digest("hex") !== want) throw new Error("downloaded bytes differ");
    return n;
  });
}

/** Downloads into a file (downloadToFile, its default fetch workers unless `threads`). */
function downloadFile(client: ContentClient, id: string, path: string, children: ChildProcess[], threads?: number): Promise<Measured> {
  return measure(children, async () => (await client.downloadToFile(id, path, { concurrency: 8, ...(threads !== undefined ? { threads } : {}) })).bytes);
}

/** Lower-case hex SHA-256 of a file, read in 8 MiB blocks. */
function sha256File(path: string): string {
  const h = createHash("sha256");
  const fd = openSync(path, "r");
  const block = Buffer.allocUnsafe(8 * MiB);
  try {
    for (let n; (n = readSync(fd, block)) > 0; ) h.update(block.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest("hex");
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
  const size = Number(positional[0] ?? 1024) * MiB;
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
    // No piece size named: the manager picks it from the stated size (uploadFile states
    // it), as for the CLI's upload.
    const uc = await un.client.uploadFile(file, { chunking: ChunkingMode.CONTENT_DEFINED });
    const up = size / MiB / ((performance.now() - t0) / 1000);
    process.stderr.write(`uploaded: ${uc.pieceCount} pieces, ${(size / uc.pieceCount / MiB).toFixed(1)} MiB on average\n`);
    const nodeChildren = un.children.slice(0, 4);
    // One verified file download (byte-exact against the file's SHA-256; it also opens
    // the connections and starts the fetch workers). The stream download is verified
    // after the rounds against dd, with the other modes.
    const check = join(dir, "check.bin");
    const first = await downloadFile(un.client, uc.contentId, check, nodeChildren, threads);
    if (sha256File(check) !== want) throw new Error("the downloaded file differs");
    rmSync(check);
    process.stderr.write(`first download (connections, fetch workers and JIT cold; into a file): ${first.toFixed(0)} MiB/s, ${first.cpuPerMiB.toFixed(2)} ms CPU/MiB\n`);
    // Warm-up: the rounds measure a warm client and warm nodes, as in a large download or
    // a long-lived client. The first downloads of a fresh process run while V8 still
    // optimizes the per-piece code of the workers and nodes (each handles a few dozen
    // pieces per download); without this, round 1 was the slowest of 3 in every run.
    for (let i = 0; i < 3; i++) await downloadFile(un.client, uc.contentId, "/dev/null", [], threads);
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
    // The other modes run after these rounds: their garbage (the stream download hands
    // every byte to this thread) would otherwise be collected during the file rounds.
    let diskRead = 0;
    const files: Measured[] = [];
    for (let i = 0; i < 3; i++) {
      t0 = performance.now();
      await run("dd", [`if=${copy}`, "of=/dev/null", "bs=4M", "iflag=direct"]);
      const dd = size / MiB / ((performance.now() - t0) / 1000);
      diskRead = Math.max(diskRead, dd);
      const d = await downloadFile(un.client, uc.contentId, "/dev/null", nodeChildren, threads);
      if (d.bytes !== size) throw new Error(`download delivered ${d.bytes} bytes, expected ${size}`);
      process.stderr.write(`unlimited round ${i + 1}: dd ${dd.toFixed(0)} MiB/s, download ${d.toFixed(0)} MiB/s (${d.cpuPerMiB.toFixed(2)} ms CPU/MiB, client ${d.clientCpuPerMiB.toFixed(2)}); load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}\n`);
      files.push(d);
    }
    await download(un.client, uc.contentId, want, 8, [], true, 0);
    const inThread: Measured[] = [];
    const streams: Measured[] = [];
    for (let i = 0; i < 3; i++) {
      inThread.push(await downloadFile(un.client, uc.contentId, "/dev/null", nodeChildren, 0));
      streams.push(await download(un.client, uc.contentId, want, 8, nodeChildren, false, 0));
    }
    const best = (ms: Measured[]): number => Math.max(...ms);
    un.client.close();

    rows.push(row("unlimited_download_vs_disk", "MiB/s", best(files), diskRead, "dd iflag=direct read of the same file to /dev/null, best of 3", true));
    rows.push(row("unlimited_download_cpu_per_mib", "ms CPU/MiB", Math.min(...files.map((d) => d.cpuPerMiB)), cryptoFloorPerMiB(), "AES-256-GCM decrypt of the same bytes in one process", false));
    rows.push(row("unlimited_file_download_workers_vs_in_thread", "MiB/s", best(files), best(inThread), "the same file download with threads: 0, best of 3", true));
    rows.push(row("unlimited_stream_vs_file_download", "MiB/s", best(streams), best(files), "the file download; stream read here (threads: 0, bytes counted), best of 3", true));
    rows.push(row("upload_vs_disk", "MiB/s", up, diskWrite, "write + fsync of the same bytes", true));
  } finally {
    for (const c of all) if (c.exitCode === null) c.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}
