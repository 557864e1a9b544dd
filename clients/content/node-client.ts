/**
 * Client of one distribution node (DistributionNodeService): used by downloaders, by the
 * manager, and by nodes copying from their peers.
 */
import { Metadata, type ClientReadableStream } from "@grpc/grpc-js";
import {
  DistributionNodeServiceClient,
  DistributionNodeServiceService,
  type GetNodeStatusResponse,
  type GetPieceResponse,
} from "../../gen/switchyard/content/v1/distribution_node_service.js";
import { dial, type ChannelSettings } from "../grpc/channel.js";
import { unary, type CallSettings } from "../grpc/call.js";
import { DirectPiecePool } from "./direct-piece.js";
import { PieceBufferPool } from "./piece-fetch.js";
import { deserializePieceResponse } from "./piece-wire.js";

export type { GetNodeStatusResponse };

/** A connection to one distribution node. */
export class DistributionNodeClient {
  /** The generated client, for calls this wrapper does not cover. */
  readonly raw: DistributionNodeServiceClient;

  constructor(
    readonly address: string,
    settings: ChannelSettings = {},
  ) {
    this.raw = dial(DistributionNodeServiceClient, address, settings);
  }

  /** The node's id, capacity and use. */
  status(s?: CallSettings): Promise<GetNodeStatusResponse> {
    return unary(this.raw, this.raw.getNodeStatus, {}, s);
  }

  /** Stores a piece; true when it was new. */
  async put(grant: Uint8Array, pieceId: string, data: Uint8Array, s?: CallSettings): Promise<boolean> {
    const res = await unary(this.raw, this.raw.putPiece, { grant: Buffer.from(grant), pieceId, data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) }, s);
    return res.created;
  }

  /**
   * Streams a piece's stored bytes as they arrive (each chunk a view into the received
   * message, not a copy). `maxBytes` bounds what a peer may send. Cancelled through
   * `signal`, or by leaving the loop early.
   */
  async *stream(
    req: { grant: Uint8Array; pieceId: string; accessTag?: Uint8Array; maxBytes: number },
    opts: { signal?: AbortSignal; deadline?: Date | number } = {},
  ): AsyncGenerator<Buffer> {
    const def = DistributionNodeServiceService.getPiece;
    const call: ClientReadableStream<GetPieceResponse> = this.raw.makeServerStreamRequest(
      def.path,
      def.requestSerialize,
      deserializePieceResponse,
      { grant: Buffer.from(req.grant), pieceId: req.pieceId, accessTag: Buffer.from(req.accessTag ?? []) },
      new Metadata(),
      opts.deadline !== undefined ? { deadline: opts.deadline } : {},
    );
    const onAbort = (): void => call.cancel();
    if (opts.signal?.aborted) call.cancel();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    let total = 0;
    try {
      for await (const msg of call as AsyncIterable<GetPieceResponse>) {
        total += msg.data.length;
        if (total > req.maxBytes) throw new Error(`node ${this.address} sent more than ${req.maxBytes} bytes for piece ${req.pieceId}`);
        yield msg.data;
      }
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
      call.cancel();
    }
  }

  /** A piece's stored bytes, whole (see `stream`). */
  async get(
    req: { grant: Uint8Array; pieceId: string; accessTag?: Uint8Array; maxBytes: number },
    opts: { signal?: AbortSignal; deadline?: Date | number } = {},
  ): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const c of this.stream(req, opts)) {
      chunks.push(c);
      total += c.length;
    }
    return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total);
  }

  /** Which of these pieces the node holds (and, with verify, which are corrupt). */
  async has(grant: Uint8Array, pieceIds: string[], verify = false, s?: CallSettings): Promise<{ held: string[]; corrupt: string[] }> {
    const res = await unary(this.raw, this.raw.hasPieces, { grant: Buffer.from(grant), pieceIds, verify }, s);
    return { held: res.held, corrupt: res.corrupt };
  }

  /** Every piece id the node holds. */
  async listAll(grant: () => Uint8Array, s?: CallSettings): Promise<string[]> {
    const out: string[] = [];
    let pageToken = "";
    do {
      const res = await unary(this.raw, this.raw.listPieces, { grant: Buffer.from(grant()), pageSize: 10_000, pageToken }, s);
      out.push(...res.pieceIds);
      pageToken = res.nextPageToken;
    } while (pageToken);
    return out;
  }

  /** Deletes a piece; true when it existed. */
  async delete(grant: Uint8Array, pieceId: string, s?: CallSettings): Promise<boolean> {
    return (await unary(this.raw, this.raw.deletePiece, { grant: Buffer.from(grant), pieceId }, s)).existed;
  }

  /** Makes the node copy a piece from a peer. */
  async copyFromPeer(grant: Uint8Array, pieceId: string, sourceAddress: string, sourceGrant: Uint8Array, s?: CallSettings): Promise<boolean> {
    const res = await unary(
      this.raw,
      this.raw.copyFromPeer,
      { grant: Buffer.from(grant), pieceId, sourceAddress, sourceGrant: Buffer.from(sourceGrant) },
      s,
    );
    return res.copied;
  }

  /** Closes the channel. */
  close(): void {
    this.raw.close();
  }
}

/** Node clients by address, opened on first use and closed together. */
export class NodeClientPool {
  private readonly clients = new Map<string, DistributionNodeClient>();
  /** Direct piece readers (direct-piece.ts), for plaintext channels only. */
  readonly direct: DirectPiecePool | undefined;
  /** Reused buffers for pieces' stored bytes (piece-fetch.ts). */
  readonly buffers = new PieceBufferPool();

  private readonly settings: ChannelSettings;

  constructor(settings: ChannelSettings = {}) {
    // grpc-js keeps HTTP/2 at a 64 KiB receive window unless told otherwise, which caps a
    // piece stream at one window per round trip; pieces are MiB-sized.
    this.settings = { ...settings, extra: { "grpc-node.flow_control_window": 16 * 1024 * 1024, ...settings.extra } };
    this.direct = settings.tls ? undefined : new DirectPiecePool();
  }

  /** The client of `address`. */
  get(address: string): DistributionNodeClient {
    let c = this.clients.get(address);
    if (!c) {
      c = new DistributionNodeClient(address, this.settings);
      this.clients.set(address, c);
    }
    return c;
  }

  /** Closes every channel. */
  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
    this.direct?.close();
    this.buffers.clear();
  }
}
