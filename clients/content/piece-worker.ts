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
import { encodeWorkerError, type WorkerReply, type WorkerRequest } from "./fetch-workers.js";
import { NodeClientPool } from "./node-client.js";
import { fetchStoredPiece } from "./piece-fetch.js";
import { SinkFiles } from "./file-sink.js";

const port = parentPort;
if (!port) throw new Error("piece-worker.js runs as a worker thread");
const pool = new NodeClientPool((workerData as { channel?: ChannelSettings } | undefined)?.channel ?? {});
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
  if (msg.t === "close") {
    void files.close(msg.sink).then(() => port.postMessage({ t: "closed", id: msg.id } satisfies WorkerReply));
    return;
  }
  const c = new AbortController();
  running.set(msg.id, c);
  let fallback = false;
  const out = msg.out;
  fetchStoredPiece(pool.get(msg.address), msg.req, c.signal, pool.buffers, msg.direct ? pool.direct : undefined, () => (fallback = true))
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
