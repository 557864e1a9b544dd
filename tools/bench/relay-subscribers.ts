/**
 * Subscriber host for the relay benchmark: a child process that opens subscriptions on
 * command (IPC) and meters what they receive, so the subscribers of a run are spread over
 * several processes instead of saturating one event loop.
 *
 * Messages in: {cmd:"open", target, stream, count, first} → {ok:"open"} once every
 * subscription started; {cmd:"measure", on:true|false}; {cmd:"report"} →
 * {frames, bytes, latencies}; {cmd:"close"} → exits.
 */
import type { ClientReadableStream } from "@grpc/grpc-js";
import { decodeEvent, StreamSourceClient } from "../../clients/relay/index.js";

type Msg =
  | { cmd: "open"; target: string; stream: string; count: number; first: number }
  | { cmd: "measure"; on: boolean }
  | { cmd: "report" }
  | { cmd: "close" };

const calls: ClientReadableStream<Buffer>[] = [];
const clients: StreamSourceClient[] = [];
let measuring = false;
let frames = 0;
let bytes = 0;
let latencies: number[] = [];

function reply(m: unknown): void {
  process.send?.(m);
}

async function open(target: string, stream: string, count: number, first: number): Promise<void> {
  const channels = Math.max(1, Math.min(4, Math.ceil(count / 125)));
  for (let i = 0; i < channels; i++) clients.push(new StreamSourceClient(target, { extra: { "grpc.use_local_subchannel_pool": 1 } }));
  const starts: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const call = (clients[i % channels] as StreamSourceClient).subscribeRaw(stream, { subscriberId: `bench-${first + i}` });
    starts.push(
      new Promise<void>((resolve, reject) => {
        call.once("data", () => resolve());
        call.once("error", reject);
      }),
    );
    call.on("data", (buf: Buffer) => {
      // Field 2 (frame), length-delimited: tag byte 0x12. Only a sample is decoded.
      if (!measuring || buf[0] !== 0x12) return;
      frames++;
      bytes += buf.length;
      if ((frames & 15) === 0) {
        const ev = decodeEvent(buf);
        if (ev.type === "frame" && ev.frame.publishedAt) latencies.push(Date.now() - ev.frame.publishedAt.getTime());
      }
    });
    call.on("error", () => undefined);
    calls.push(call);
  }
  await Promise.all(starts);
}

process.on("message", (m: Msg) => {
  if (m.cmd === "open") {
    open(m.target, m.stream, m.count, m.first).then(
      () => reply({ ok: "open" }),
      (err: unknown) => reply({ error: String(err) }),
    );
  } else if (m.cmd === "measure") {
    measuring = m.on;
  } else if (m.cmd === "report") {
    reply({ frames, bytes, latencies });
    frames = 0;
    bytes = 0;
    latencies = [];
  } else {
    for (const c of calls) c.cancel();
    for (const c of clients) c.close();
    setTimeout(() => process.exit(0), 100);
  }
});
reply({ ok: "ready" });
