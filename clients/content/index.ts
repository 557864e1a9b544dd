/**
 * Client library of the content system: upload to and manage through the content
 * manager, and download with the parallel, verifying, progressive downloader.
 */
import { randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { availableParallelism } from "node:os";
import type { Readable } from "node:stream";
import type { ChannelSettings } from "../grpc/channel.js";
import { ContentManagerClient, type Content, type Manifest, type UploadHeader } from "./manager-client.js";
import { downloadManifest, downloadManifestToFile, downloadThreads, type DownloadOptions, type DownloadStats } from "./downloader.js";
import { PieceWorkers } from "./fetch-workers.js";
import { NodeClientPool } from "./node-client.js";

export * from "./manager-client.js";
export * from "./downloader.js";
export * from "./node-client.js";
export { PieceWorkers } from "./fetch-workers.js";
export { Chunker, cdcLimits, MAX_PIECE_BYTES, type ChunkerOptions } from "./chunker.js";
export { decryptPiece, encryptPiece, derivePieceKey, sha256Hex, PIECE_ID, PieceAuthError, TAG_BYTES } from "./crypto.js";

/** Fetch workers of a file download unless its options say otherwise (on 2 or more cores). */
const FILE_DOWNLOAD_THREADS = 2;

/** Options of a ContentClient. */
export interface ContentClientOptions {
  /** Bearer token of the caller. */
  token: string;
  /** Channel settings for the manager and the nodes. */
  channel?: ChannelSettings;
}

/** Uploads and downloads content through one manager. */
export class ContentClient {
  /** The manager client (membership, history, listing). */
  readonly manager: ContentManagerClient;
  private readonly pool: NodeClientPool;
  /** Fetch workers by thread count, started by the first large download and reused. */
  private readonly workers = new Map<number, PieceWorkers>();

  constructor(
    managerAddress: string,
    private readonly opts: ContentClientOptions,
  ) {
    this.manager = new ContentManagerClient(managerAddress, { credentials: { kind: "token", token: opts.token }, ...(opts.channel ? { channel: opts.channel } : {}) });
    this.pool = new NodeClientPool(opts.channel ?? {});
  }

  /** Uploads a file (streamed from disk). */
  async uploadFile(path: string, header: Partial<UploadHeader> = {}, onBytes?: (sent: number, total: number) => void): Promise<Content> {
    const size = (await stat(path)).size;
    const res = await this.manager.upload(
      { name: header.name ?? path.split("/").pop() ?? "upload", requestId: header.requestId ?? randomUUID(), expectedSize: BigInt(size), ...header },
      createReadStream(path, { highWaterMark: 1024 * 1024 }),
      onBytes ? { onBytes: (n) => onBytes(n, size) } : {},
    );
    if (!res.content) throw new Error("manager answered without content");
    return res.content;
  }

  /** Uploads from any byte source. */
  async upload(name: string, source: AsyncIterable<Uint8Array>, header: Partial<UploadHeader> = {}): Promise<Content> {
    const res = await this.manager.upload({ name, requestId: header.requestId ?? randomUUID(), ...header }, source);
    if (!res.content) throw new Error("manager answered without content");
    return res.content;
  }

  /**
   * Downloads a content as an ordered Readable (readable while later pieces arrive).
   * `grantTtlMs` asks for a grant lifetime (the manager caps it); a grant that expires
   * before the download is over is renewed by fetching a fresh manifest. The finished
   * download is reported to the manager's history.
   */
  async download(contentId: string, opts: DownloadOptions & { grantTtlMs?: number } = {}): Promise<Readable & { stats: DownloadStats; manifest: Manifest }> {
    const { manifest, options, report } = await this.prepare(contentId, opts);
    const stream = downloadManifest(manifest, options) as Readable & { stats: DownloadStats; manifest: Manifest };
    stream.manifest = manifest;
    stream.once("end", () => report(stream.stats));
    return stream;
  }

  /**
   * Downloads a content into a file (created or truncated), each piece written at its
   * offset as soon as it is authenticated. Unless `threads` says otherwise it uses 2
   * fetch workers on a machine with 2 or more cores: they write what they decrypt, so
   * the plaintext never reaches this thread (docs/content.md, "File downloads").
   */
  async downloadToFile(contentId: string, path: string, opts: DownloadOptions & { grantTtlMs?: number } = {}): Promise<DownloadStats & { manifest: Manifest }> {
    const threads = opts.threads ?? (opts.workers ? undefined : availableParallelism() >= 2 ? FILE_DOWNLOAD_THREADS : 0);
    const { manifest, options, report } = await this.prepare(contentId, { ...opts, ...(threads !== undefined ? { threads } : {}) });
    const stats = await downloadManifestToFile(manifest, path, options);
    report(stats);
    return { ...stats, manifest };
  }

  /** The manifest, the downloader's options (grant renewal, pool, reused workers) and the history report. */
  private async prepare(contentId: string, opts: DownloadOptions & { grantTtlMs?: number }): Promise<{ manifest: Manifest; options: DownloadOptions; report: (s: DownloadStats) => void }> {
    const { grantTtlMs, ...rest } = opts;
    const manifest = await this.manager.getManifest(contentId, grantTtlMs);
    const started = Date.now();
    // A grant that expires mid-download is renewed with a fresh manifest (same caller).
    const renewManifest = (): Promise<Manifest> => this.manager.getManifest(contentId, grantTtlMs);
    // With `threads`, pieces are fetched in worker threads, kept for the client's next downloads.
    const threads = downloadThreads(rest);
    let workers = rest.workers;
    if (threads > 0 && !workers) {
      workers = this.workers.get(threads);
      if (!workers) {
        workers = new PieceWorkers(threads, this.opts.channel ?? {});
        this.workers.set(threads, workers);
      }
    }
    const report = (s: DownloadStats): void => {
      void this.manager.reportDownload(contentId, s.bytes, Date.now() - started, randomUUID()).catch(() => undefined);
    };
    return { manifest, options: { pool: this.pool, renewManifest, ...rest, threads, ...(workers ? { workers } : {}) }, report };
  }

  /** Closes every channel. */
  close(): void {
    this.manager.close();
    this.pool.close();
    for (const w of this.workers.values()) w.close();
    this.workers.clear();
  }
}
