/**
 * A downloader fetch worker (worker thread): owns its own gRPC channels (HTTP/2
 * sessions) to the nodes, and for each attempt the downloader hands it, streams the
 * piece, decrypts and authenticates it (piece-fetch.ts) and sends the plaintext back as
 * transferred ArrayBuffers (no copy). Everything else — choosing replicas, hedging,
 * re-routing, grant renewal, order — stays with the downloader in the main thread.
 */
import { parentPort, workerData } from "node:worker_threads";
import type { ChannelSettings } from "../grpc/channel.js";
import { encodeWorkerError, type WorkerReply, type WorkerRequest } from "./fetch-workers.js";
import { NodeClientPool } from "./node-client.js";
import { fetchPieceFrom } from "./piece-fetch.js";

const port = parentPort;
if (!port) throw new Error("piece-worker.js runs as a worker thread");
const pool = new NodeClientPool((workerData as { channel?: ChannelSettings } | undefined)?.channel ?? {});
const running = new Map<number, AbortController>();

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
  const c = new AbortController();
  running.set(msg.id, c);
  let fallback = false;
  fetchPieceFrom(pool.get(msg.address), msg.req, c.signal, msg.direct ? pool.direct : undefined, () => (fallback = true)).then(
    (plain) => {
      running.delete(msg.id);
      const bufs = detachable(plain);
      const reply: WorkerReply = { t: "ok", id: msg.id, bufs, fallback };
      port.postMessage(reply, bufs);
    },
    (err: unknown) => {
      running.delete(msg.id);
      const reply: WorkerReply = { t: "err", id: msg.id, error: encodeWorkerError(err), fallback };
      port.postMessage(reply);
    },
  );
});
