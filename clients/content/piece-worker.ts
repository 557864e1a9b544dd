/**
 * A downloader fetch worker (worker thread): owns its own gRPC channels (HTTP/2
 * sessions) to the nodes, and for each attempt the downloader hands it, streams the
 * piece, decrypts and authenticates it at once (piece-fetch.ts), then either writes the
 * plaintext into the download's file at the piece's offset (file downloads: the bytes
 * never reach the main thread) or sends it back as transferred ArrayBuffers (no copy).
 * Everything else — choosing replicas, hedging, re-routing, grant renewal, order — stays
 * with the downloader in the main thread.
 */
import { parentPort, workerData } from "node:worker_threads";
import type { ChannelSettings } from "../grpc/channel.js";
import { DirectPiecePool } from "./direct-piece.js";
import { SinkFiles } from "./file-sink.js";
import type { NodeClientPool } from "./node-client.js";
import { fetchStoredPiece, PieceBufferPool } from "./piece-fetch.js";
import { encodeWorkerError, type WorkerReply, type WorkerRequest } from "./worker-protocol.js";

const port = parentPort;
if (!port) throw new Error("piece-worker.js runs as a worker thread");
const channel = (workerData as { channel?: ChannelSettings } | undefined)?.channel ?? {};
// The direct reader serves plaintext channels; grpc-js (node-client.js) is loaded only
// when an attempt needs it (TLS, or a piece the direct reader handed over): it and the
// generated code are most of a worker's start-up cost.
const direct = channel.tls ? undefined : new DirectPiecePool();
const buffers = new PieceBufferPool();
let grpcPool: Promise<NodeClientPool> | undefined;
const grpcClient = (address: string): Promise<ReturnType<NodeClientPool["get"]>> => {
  grpcPool ??= import("./node-client.js").then((m) => new m.NodeClientPool(channel));
  return grpcPool.then((p) => p.get(address));
};
const running = new Map<number, AbortController>();
const files = new SinkFiles();

/** The plaintext as whole ArrayBuffers (decipher outputs own theirs; anything else is copied). */
function detachable(bufs: Buffer[]): ArrayBuffer[] {
  return bufs.map((b) => {
    const ab = b.buffer as ArrayBuffer;
    if (b.byteOffset === 0 && b.byteLength === ab.byteLength) return ab;
    const copy = new ArrayBuffer(b.byteLength);
    new Uint8Array(copy).set(b);
    return copy;
  });
}

port.on("message", (msg: WorkerRequest) => {
  if (msg.t === "cancel") {
    running.get(msg.id)?.abort();
    return;
  }
  if (msg.t === "stop") {
    // Idle lanes end with OK on the nodes rather than as cancelled calls.
    direct?.close();
    void grpcPool?.then((p) => p.close());
    port.close();
    return;
  }
  if (msg.t === "close") {
    void files.close(msg.sink).then(() => port.postMessage({ t: "closed", id: msg.id } satisfies WorkerReply));
    return;
  }
  const c = new AbortController();
  running.set(msg.id, c);
  let fallback = false;
  const out = msg.out;
  fetchStoredPiece(msg.address, () => grpcClient(msg.address), msg.req, c.signal, buffers, msg.direct ? direct : undefined, () => (fallback = true))
    .then(async (stored): Promise<WorkerReply> => {
      const plain = stored.open();
      if (!out) {
        const bufs = detachable(plain);
        return { t: "ok", id: msg.id, bufs, fallback };
      }
      // A cancelled attempt writes nothing (the piece may be written by its hedge meanwhile).
      if (c.signal.aborted) throw c.signal.reason;
      await files.write(out, plain, out.position);
      return { t: "ok", id: msg.id, bufs: [], fallback };
    })
    .then(
      (reply) => {
        running.delete(msg.id);
        port.postMessage(reply, reply.t === "ok" ? reply.bufs : []);
      },
      (err: unknown) => {
        running.delete(msg.id);
        const reply: WorkerReply = { t: "err", id: msg.id, error: encodeWorkerError(err), fallback };
        port.postMessage(reply);
      },
    );
});
