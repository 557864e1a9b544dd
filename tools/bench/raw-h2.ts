/**
 * A minimal HTTP/2 client over a plain TCP socket, for benchmark clients that must cost as
 * little CPU as possible: it opens gRPC server-streaming calls (one request message, then
 * response DATA) and hands each stream's DATA payload to a callback, without node:http2.
 *
 * Why: the relay benchmark runs 1,000 subscribers on the same 2 cores as the relay. With
 * node:http2 every DATA frame of every stream costs a trip through nghttp2 and a 'data'
 * event (≈3.7 µs a delivery: the subscriber hosts took ≈0.45 cores), and that CPU competes
 * with the node under test. Here a socket read of many frames is one callback, and a frame
 * is a 9-byte header read and a subarray.
 *
 * What it does of HTTP/2 (RFC 9113; frames and request headers from clients/grpc/h2-wire.ts):
 * the connection preface and SETTINGS (push off, a large stream window), SETTINGS and PING
 * acknowledgements, connection- and stream-level WINDOW_UPDATEs as data is consumed,
 * requests as HEADERS plus one DATA with END_STREAM, RST_STREAM to cancel. What it does not: it never decodes response header
 * blocks (so it keeps no HPACK decoder state and cannot read grpc-status). A stream ends
 * `ok` when the server's END_STREAM arrives after response data; a trailers-only response
 * (END_STREAM on the first header block), RST_STREAM or GOAWAY end it as failed. Good
 * enough for a benchmark client that only needs the bytes and whether the call lived; not
 * a general client.
 */
import { connect, type Socket } from "node:net";
import { H2, H2_FLAG, h2Cancel, h2ClientStart, h2Frame, h2GrpcRequestHeaders, h2WindowUpdate } from "../../clients/grpc/h2-wire.js";

/** Stream window announced in SETTINGS, and the connection window raised to. */
const STREAM_WINDOW = 16 << 20;
const CONNECTION_WINDOW = 256 << 20;

/** Callbacks of one call. */
export interface RawCallHandlers {
  /** A DATA payload of the response (a view into the socket's buffer: copy what is kept). `at` is when the socket read it (performance.now()). */
  data(chunk: Buffer, at: number): void;
  /** The call ended: `ok` when the server closed it after sending response data. */
  end(ok: boolean, why: string): void;
}

interface StreamState {
  handlers: RawCallHandlers;
  unacked: number;
  sawData: boolean;
  sawHeaders: boolean;
}

/** One HTTP/2 connection carrying any number of server-streaming calls. */
export class RawH2Connection {
  private readonly socket: Socket;
  private readonly streams = new Map<number, StreamState>();
  private nextStream = 1;
  private pending: Buffer | undefined;
  private connectionUnacked = 0;
  private failed: string | undefined;

  constructor(
    readonly target: string,
    private readonly onError: (e: Error) => void = () => undefined,
  ) {
    const colon = target.lastIndexOf(":");
    this.socket = connect({ host: target.slice(0, colon), port: Number(target.slice(colon + 1)), noDelay: true });
    this.socket.write(h2ClientStart(STREAM_WINDOW, CONNECTION_WINDOW - 65535));
    this.socket.on("data", (chunk: Buffer) => this.read(chunk));
    this.socket.on("error", (e) => this.fail(`socket error: ${e.message}`));
    this.socket.on("close", () => this.fail("connection closed"));
  }

  /** Starts a call: one request message (already gRPC-framed), then response data to `handlers`. Returns the stream id. */
  call(path: string, framedRequest: Buffer, handlers: RawCallHandlers): number {
    const id = this.nextStream;
    this.nextStream += 2;
    if (this.failed) {
      queueMicrotask(() => handlers.end(false, this.failed as string));
      return id;
    }
    this.streams.set(id, { handlers, unacked: 0, sawData: false, sawHeaders: false });
    this.socket.write(Buffer.concat([h2GrpcRequestHeaders(id, this.target, path), h2Frame(H2.DATA, H2_FLAG.END_STREAM, id, framedRequest)]));
    return id;
  }

  /** Cancels one call (RST_STREAM CANCEL). */
  cancel(id: number): void {
    if (!this.streams.delete(id) || this.failed) return;
    this.socket.write(h2Cancel(id));
  }

  /** Closes the connection (every open call ends as failed). */
  close(): void {
    this.socket.end();
    this.fail("closed by the client");
  }

  private fail(why: string): void {
    if (this.failed) return;
    this.failed = why;
    const open = [...this.streams.values()];
    this.streams.clear();
    for (const s of open) s.handlers.end(false, why);
    if (why !== "closed by the client") this.onError(new Error(`${this.target}: ${why}`));
  }

  private read(chunk: Buffer): void {
    const at = performance.now();
    let buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = undefined;
    let off = 0;
    const acks: Buffer[] = [];
    while (buf.length - off >= 9) {
      const len = buf.readUIntBE(off, 3);
      if (buf.length - off < 9 + len) break;
      const type = buf[off + 3] as number;
      const flags = buf[off + 4] as number;
      const id = buf.readUInt32BE(off + 5) & 0x7fffffff;
      const payload = buf.subarray(off + 9, off + 9 + len);
      off += 9 + len;
      if (type === H2.DATA) this.onData(id, flags, payload, at, acks);
      else if (type === H2.HEADERS) this.onHeaders(id, flags);
      else if (type === H2.RST_STREAM) this.endStream(id, false, `RST_STREAM code ${payload.readUInt32BE(0)}`);
      else if (type === H2.SETTINGS) {
        if (!(flags & H2_FLAG.ACK)) acks.push(h2Frame(H2.SETTINGS, H2_FLAG.ACK, 0));
      } else if (type === H2.PING) {
        if (!(flags & H2_FLAG.ACK)) acks.push(h2Frame(H2.PING, H2_FLAG.ACK, 0, Buffer.from(payload)));
      } else if (type === H2.GOAWAY) {
        this.fail(`GOAWAY code ${payload.readUInt32BE(4)}`);
        return;
      }
      // WINDOW_UPDATE, PRIORITY, CONTINUATION and unknown types need nothing from this reader.
    }
    if (off < buf.length) this.pending = Buffer.from(buf.subarray(off));
    if (this.connectionUnacked >= CONNECTION_WINDOW / 2) {
      acks.push(h2WindowUpdate(0, this.connectionUnacked));
      this.connectionUnacked = 0;
    }
    if (acks.length) this.socket.write(acks.length === 1 ? (acks[0] as Buffer) : Buffer.concat(acks));
  }

  private onData(id: number, flags: number, payload: Buffer, at: number, acks: Buffer[]): void {
    // Flow control counts the whole payload, padding included.
    this.connectionUnacked += payload.length;
    const s = this.streams.get(id);
    if (!s) return;
    let body = payload;
    if (flags & H2_FLAG.PADDED) body = payload.subarray(1, payload.length - (payload[0] as number));
    s.unacked += payload.length;
    if (s.unacked >= STREAM_WINDOW / 2 && !(flags & H2_FLAG.END_STREAM)) {
      acks.push(h2WindowUpdate(id, s.unacked));
      s.unacked = 0;
    }
    if (body.length) {
      s.sawData = true;
      s.handlers.data(body, at);
    }
    if (flags & H2_FLAG.END_STREAM) this.endStream(id, s.sawData, s.sawData ? "" : "ended without data");
  }

  private onHeaders(id: number, flags: number): void {
    // Header blocks are not decoded (see the file comment; CONTINUATION frames fall under
    // "unknown" and are skipped); only whether the block ends the stream matters.
    const s = this.streams.get(id);
    if (flags & H2_FLAG.END_STREAM) {
      // Trailers after data: the normal end. A first header block that ends the stream
      // is a trailers-only response: the call failed before any message.
      this.endStream(id, !!s?.sawData, s?.sawHeaders ? "trailers" : "trailers-only response (the call failed; see the node's log)");
    } else if (s) s.sawHeaders = true;
  }

  private endStream(id: number, ok: boolean, why: string): void {
    const s = this.streams.get(id);
    if (!s) return;
    this.streams.delete(id);
    s.handlers.end(ok, why);
  }
}
