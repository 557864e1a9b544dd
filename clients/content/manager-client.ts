/**
 * Client of the content manager (ContentManagerService): uploads (streamed from any
 * byte source, with backpressure), manifests, listing, history and node membership.
 */
import { Metadata, type ClientWritableStream } from "@grpc/grpc-js";
import {
  ContentManagerServiceClient,
  ContentManagerServiceService,
  type AddNodeResponse,
  type DeleteContentResponse,
  type ListHistoryRequest,
  type LocatePieceResponse,
  type RepairResponse,
  type UploadHeader,
  type UploadRequest,
  type UploadResponse,
} from "../../gen/switchyard/content/v1/content_manager_service.js";
import type { Content, DistributionNode, HistoryEntry, Manifest, ReplicaPolicy } from "../../gen/switchyard/content/v1/content.js";
import { dial, type ChannelSettings } from "../grpc/channel.js";
import { unary, type CallSettings } from "../grpc/call.js";
import { msToDuration } from "../grpc/duration.js";
import { serializeUploadRequest } from "./upload-wire.js";

export type { Content, DistributionNode, HistoryEntry, Manifest, ReplicaPolicy, UploadHeader, LocatePieceResponse, RepairResponse, DeleteContentResponse };

/** How the client proves who it is. */
export type ManagerCredentials = { kind: "token"; token: string };

/** Options of a ContentManagerClient. */
export interface ManagerClientOptions {
  credentials: ManagerCredentials;
  channel?: ChannelSettings;
}

/** Largest data message an upload sends. */
export const UPLOAD_CHUNK_BYTES = 1024 * 1024;

/** A connection to the content manager. */
export class ContentManagerClient {
  /** The generated client. */
  readonly raw: ContentManagerServiceClient;

  constructor(
    readonly address: string,
    private readonly opts: ManagerClientOptions,
  ) {
    this.raw = dial(ContentManagerServiceClient, address, opts.channel ?? {});
  }

  /** Metadata with the caller's credentials. */
  metadata(): Metadata {
    const md = new Metadata();
    const c = this.opts.credentials;
    md.set("authorization", `Bearer ${c.token}`);
    return md;
  }

  private s(s?: CallSettings): CallSettings {
    return { ...s, metadata: this.metadata() };
  }

  /**
   * Uploads bytes from `source` (any async iterable of byte chunks: a file stream, a
   * generator). Chunks are re-cut to at most 1 MiB and written with backpressure, so
   * memory stays flat whatever the size. `onBytes` reports progress.
   */
  upload(
    header: Partial<UploadHeader> & { name: string; requestId: string },
    source: AsyncIterable<Uint8Array>,
    opts: { onBytes?: (sent: number) => void; signal?: AbortSignal; deadline?: Date | number } = {},
  ): Promise<UploadResponse> {
    return new Promise<UploadResponse>((resolve, reject) => {
      let settled = false;
      // Upload's own serializer: a data chunk costs one copy (upload-wire.ts).
      const def = ContentManagerServiceService.upload;
      const call: ClientWritableStream<UploadRequest> = this.raw.makeClientStreamRequest(
        def.path,
        serializeUploadRequest,
        def.responseDeserialize,
        this.metadata(),
        opts.deadline !== undefined ? { deadline: opts.deadline } : { deadline: Infinity },
        (err, res) => {
          settled = true;
          opts.signal?.removeEventListener("abort", onAbort);
          if (err) reject(err);
          else resolve(res as UploadResponse);
        },
      );
      const onAbort = (): void => call.cancel();
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      const write = (msg: UploadRequest): Promise<void> =>
        call.write(msg) ? Promise.resolve() : new Promise<void>((r) => call.once("drain", () => r()));
      void (async () => {
        const full: UploadHeader = {
          name: header.name,
          expectedSize: header.expectedSize ?? 0n,
          chunking: header.chunking ?? 0,
          pieceSize: header.pieceSize ?? 0,
          replicationFactor: header.replicationFactor ?? 0,
          minSecurityRank: header.minSecurityRank ?? 0,
          requestId: header.requestId,
        };
        await write({ part: { $case: "header", value: full } });
        let sent = 0;
        for await (const chunk of source) {
          for (let off = 0; off < chunk.length && !settled; off += UPLOAD_CHUNK_BYTES) {
            const part = chunk.subarray(off, off + UPLOAD_CHUNK_BYTES);
            await write({ part: { $case: "data", value: Buffer.from(part.buffer, part.byteOffset, part.byteLength) } });
            sent += part.length;
            opts.onBytes?.(sent);
          }
          if (settled) return;
        }
        call.end();
      })().catch((err: unknown) => {
        call.cancel();
        if (!settled) reject(err);
      });
    });
  }

  /** A content's record. */
  async getContent(contentId: string, s?: CallSettings): Promise<Content> {
    const res = await unary(this.raw, this.raw.getContent, { contentId }, this.s(s));
    if (!res.content) throw new Error("manager answered without content");
    return res.content;
  }

  /** The manifest (keys, replicas, grant) of a content. */
  async getManifest(contentId: string, grantTtlMs?: number, s?: CallSettings): Promise<Manifest> {
    const res = await unary(this.raw, this.raw.getManifest, { contentId, ...(grantTtlMs ? { grantTtl: msToDuration(grantTtlMs) } : {}) }, this.s(s));
    if (!res.manifest) throw new Error("manager answered without manifest");
    return res.manifest;
  }

  /** Deletes a content everywhere. */
  deleteContent(contentId: string, requestId = "", s?: CallSettings): Promise<DeleteContentResponse> {
    return unary(this.raw, this.raw.deleteContent, { contentId, requestId }, this.s(s));
  }

  /** Every content (all pages). */
  async listContents(s?: CallSettings): Promise<Content[]> {
    const out: Content[] = [];
    let pageToken = "";
    do {
      const res = await unary(this.raw, this.raw.listContents, { pageSize: 1000, pageToken }, this.s(s));
      out.push(...res.contents);
      pageToken = res.nextPageToken;
    } while (pageToken);
    return out;
  }

  /** Logs a finished download. */
  async reportDownload(contentId: string, bytes: number, elapsedMs: number, requestId = "", s?: CallSettings): Promise<void> {
    await unary(this.raw, this.raw.reportDownload, { contentId, bytes: BigInt(bytes), elapsed: msToDuration(elapsedMs), requestId }, this.s(s));
  }

  /** One page of history (newest first). */
  listHistory(req: Partial<ListHistoryRequest>, s?: CallSettings): Promise<{ entries: HistoryEntry[]; nextPageToken: string }> {
    return unary(
      this.raw,
      this.raw.listHistory,
      { contentId: "", principal: "", kind: 0, pageSize: 0, pageToken: "", ...req },
      this.s(s),
    );
  }

  /** Registers a node. */
  addNode(address: string, securityRank = 0, s?: CallSettings): Promise<AddNodeResponse> {
    return unary(this.raw, this.raw.addNode, { address, securityRank }, this.s(s));
  }

  /** Starts draining a node. */
  async drainNode(nodeId: string, s?: CallSettings): Promise<DistributionNode | undefined> {
    return (await unary(this.raw, this.raw.drainNode, { nodeId }, this.s(s))).node;
  }

  /** Removes a node (refused while pieces would be under-replicated). */
  async removeNode(nodeId: string, s?: CallSettings): Promise<number> {
    return Number((await unary(this.raw, this.raw.removeNode, { nodeId }, this.s(s))).placementsDropped);
  }

  /** Every registered node. */
  async listNodes(s?: CallSettings): Promise<DistributionNode[]> {
    return (await unary(this.raw, this.raw.listNodes, {}, this.s(s))).nodes;
  }

  /** Where a piece is. */
  locatePiece(pieceId: string, askNodes: boolean, s?: CallSettings): Promise<LocatePieceResponse> {
    return unary(this.raw, this.raw.locatePiece, { pieceId, askNodes }, this.s(s));
  }

  /** Runs a repair pass. */
  repair(dryRun = false, s?: CallSettings): Promise<RepairResponse> {
    return unary(this.raw, this.raw.repair, { dryRun }, { deadline: Date.now() + 600_000, ...this.s(s) });
  }

  /** The replica policy in force. */
  async getReplicaPolicy(s?: CallSettings): Promise<ReplicaPolicy | undefined> {
    return (await unary(this.raw, this.raw.getReplicaPolicy, {}, this.s(s))).policy;
  }

  /** Changes the replica policy (0 fields keep their value). */
  async setReplicaPolicy(policy: Partial<ReplicaPolicy>, s?: CallSettings): Promise<ReplicaPolicy | undefined> {
    const full: ReplicaPolicy = {
      defaultReplicationFactor: 0,
      minReplicas: 0,
      mirrorAbovePerMinute: 0,
      unmirrorBelowPerMinute: 0,
      maxMirrorReplicas: 0,
      ...policy,
    };
    return (await unary(this.raw, this.raw.setReplicaPolicy, { policy: full }, this.s(s))).policy;
  }

  /** Closes the channel. */
  close(): void {
    this.raw.close();
  }
}
