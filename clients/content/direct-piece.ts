/**
 * The downloader's direct piece reader: a minimal HTTP/2 client over a plain TCP
 * socket that reads with `net.Socket`'s `onread` into one reused buffer and hands each
 * piece's bytes to the caller as views of that buffer, so the caller decrypts them where
 * they landed. Node's `http2` allocates a fresh ArrayBuffer for every socket read and
 * grpc-js joins every message into another one; those fresh bytes are what makes V8 run a
 * full collection every ~20 MiB downloaded (docs/content.md). This reader allocates
 * nothing per byte.
 *
 * It reads pieces over GetPieces calls kept open (lanes, see DirectPieceConnection), and
 * over one GetPiece call per piece from nodes without GetPieces.
 *
 * It only does the fast path. It never decodes a header block (it does not keep an HPACK
 * table) nor a status: success is exactly the piece's stored bytes, delimited as the
 * method says, which the caller then authenticates with the GCM tag — whatever the
 * trailers say, those bytes are the piece. Anything else (a piece answered with an error,
 * a refused or reset stream, trailers without the bytes, a connection that closes or sends
 * GOAWAY, a compressed message) rejects with `DirectReadFailed`, and the caller repeats
 * the attempt through grpc-js, which reports the node's status with its details (GRANT_EXPIRED, NOT_FOUND, UNAVAILABLE, ...). Plaintext
 * channels only; with TLS the downloader uses grpc-js.
 */
import { connect, type Socket } from "node:net";
import { varintLength, writeGrpcPrefix, writeVarint } from "../grpc/framing.js";
import { H2, H2_FLAG, h2Cancel, h2ClientStart, h2Frame, h2GrpcRequestHeaders, h2WindowUpdate } from "../grpc/h2-wire.js";

// This module imports neither grpc-js nor the generated code: it is what a fetch worker
// loads to read pieces, and those two modules are most of a worker's start-up cost
// (~90 of ~130 ms CPU). The request encoding and the path are checked against the
// generated code in test/content/direct.test.ts.

/** DistributionNodeService.GetPiece's and GetPieces' HTTP/2 paths. */
export const GET_PIECE_PATH = "/switchyard.content.v1.DistributionNodeService/GetPiece";
export const GET_PIECES_PATH = "/switchyard.content.v1.DistributionNodeService/GetPieces";
/** gRPC status codes the reader reports itself. */
const CANCELLED = 1;
const DEADLINE_EXCEEDED = 4;

/**
 * A GetPieceRequest or GetPiecesRequest (the same fields: 1: grant, 2: piece_id,
 * 3: access_tag) as a gRPC length-prefixed message, fields in number order and empty
 * ones left out, as protobuf encoders write it.
 */
export function getPieceRequestFramed(req: { grant: Uint8Array; pieceId: string; accessTag: Uint8Array }): Buffer {
  const id = Buffer.from(req.pieceId, "utf8");
  const fields: [number, Uint8Array][] = [
    [1, req.grant],
    [2, id],
    [3, req.accessTag],
  ];
  let size = 0;
  for (const [, v] of fields) if (v.length > 0) size += 1 + varintLength(v.length) + v.length;
  const out = Buffer.allocUnsafe(5 + size);
  writeGrpcPrefix(out, size);
  let at = 5;
  for (const [n, v] of fields) {
    if (v.length === 0) continue;
    out[at++] = (n << 3) | 2;
    at = writeVarint(out, at, v.length);
    out.set(v, at);
    at += v.length;
  }
  return out;
}

/** The direct reader could not deliver the piece; repeat the attempt through grpc-js. */
export class DirectReadFailed extends Error {
  override name = "DirectReadFailed";
}

/** Bytes of the reused socket read buffer. */
const READ_BUFFER = 1024 * 1024;
/** Per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE) and when to top it up. */
const STREAM_WINDOW = 16 * 1024 * 1024;
const STREAM_TOP_UP = 4 * 1024 * 1024;
/** Connection receive window added at start, topped up after this much was consumed. */
const CONNECTION_WINDOW = 1024 * 1024 * 1024;
const CONNECTION_TOP_UP = 256 * 1024 * 1024;
/** How long a closed connection waits for the node to end its idle lanes. */
const CLOSE_GRACE_MS = 1000;

const { DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY } = H2;
const { END_STREAM, ACK, PADDED } = H2_FLAG;

/** One piece being read: where its bytes go and how it ends. */
interface PieceRead {
  /** Called with views of the read buffer holding the piece's stored bytes, in order. */
  onData: (buf: Buffer, start: number, end: number) => void;
  maxBytes: number;
  got: number;
  /** On a lane: the piece's first message (its size or its error) was seen. */
  started: boolean;
  /** The stream it is read on. */
  stream: PieceStream;
  /** The framed GetPieceRequest (kept to ask again by GetPiece when a lane is refused). */
  request: Buffer;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * One HTTP/2 stream: a GetPieces call kept open for piece after piece (a lane), or, on a
 * node without GetPieces, one GetPiece call. Parser state: gRPC message prefix, then the
 * response's fields (1: data, 2: total_size, 3: error).
 */
interface PieceStream {
  id: number;
  lane: boolean;
  /** The piece being read; undefined while a lane is idle. */
  read: PieceRead | undefined;
  /** Pieces a lane answered (bytes or an error). */
  answered: number;
  unconsumed: number;
  // gRPC message framing
  prefix: Buffer;
  prefixGot: number;
  msgLeft: number;
  // protobuf field parser: "key" | "len" | "varint" | "data" | "skip"
  state: "key" | "len" | "varint" | "data" | "skip";
  varint: number;
  shift: number;
  field: number;
  left: number;
  // fields of the current message that delimit a lane's pieces
  msgTotal: number;
  msgError: boolean;
}

/**
 * One HTTP/2 connection to a node. Pieces go over lanes: GetPieces calls that stay open,
 * each reading one piece at a time, so a piece costs one request message instead of a
 * call (headers, trailers and a call's setup on both sides). A piece never waits behind
 * another: a fetch takes an idle lane or opens one. A node that ends a lane before it
 * answered anything (a node without GetPieces answers UNIMPLEMENTED) gets one GetPiece
 * call per piece from then on.
 */
export class DirectPieceConnection {
  private readonly socket: Socket;
  private readonly streams = new Map<number, PieceStream>();
  private nextId = 1;
  private consumed = 0;
  /** Pieces being read (the socket keeps the process alive only while there are some). */
  private reading = 0;
  /** Idle lanes half-closed by close(), waiting for the node's trailers. */
  private readonly ending = new Set<number>();
  /** Use GetPieces lanes (until the node shows it has no GetPieces). */
  private lanes = true;
  /** No new streams (GOAWAY, error or close). */
  closed = false;
  // frame parser
  private readonly head = Buffer.alloc(9);
  private headGot = 0;
  private type = -1;
  private flags = 0;
  private sid = 0;
  private left = 0;
  private padLeft = 0;
  private needPadLength = false;
  private control: Buffer | undefined;
  private controlGot = 0;

  constructor(private readonly address: string) {
    const colon = address.lastIndexOf(":");
    const host = address.slice(0, colon).replace(/^\[|\]$/g, "");
    const port = Number(address.slice(colon + 1));
    this.socket = connect({ host, port, onread: { buffer: Buffer.allocUnsafe(READ_BUFFER), callback: (n: number, buf: Uint8Array) => this.onRead(buf as Buffer, n) } });
    this.socket.setNoDelay(true);
    this.socket.unref();
    this.socket.write(h2ClientStart(STREAM_WINDOW, CONNECTION_WINDOW));
    this.socket.on("error", (err) => this.shut(`connection to ${address}: ${err.message}`));
    this.socket.on("close", () => this.shut(`connection to ${address} closed`));
  }

  /** True while pieces go over GetPieces lanes (false once the node showed it has none). */
  get usesLanes(): boolean {
    return this.lanes;
  }

  /**
   * Asks for a piece; `onData` gets its stored bytes as views of the read buffer (use
   * them before returning). Resolves once exactly `maxBytes` bytes arrived and the node
   * marked the piece complete.
   */
  fetch(
    req: { grant: Uint8Array; pieceId: string; accessTag: Uint8Array },
    maxBytes: number,
    onData: (buf: Buffer, start: number, end: number) => void,
    signal: AbortSignal,
    deadline: number,
  ): Promise<void> {
    if (this.closed) return Promise.reject(new DirectReadFailed(`connection to ${this.address} is closed`));
    let s = this.lanes ? this.idleLane() : undefined;
    const opening = !s;
    s ??= this.openStream(this.lanes);
    if (!s) return Promise.reject(new DirectReadFailed(`connection to ${this.address} has no stream ids left`));
    const stream = s;
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = (): void => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        read.stream.read = undefined;
        if (!read.stream.lane) this.streams.delete(read.stream.id);
        if (--this.reading === 0) this.socket.unref();
      };
      const cancel = (err: Error): void => {
        if (read.stream.read !== read) return;
        finish();
        this.drop(read.stream);
        reject(err);
      };
      const onAbort = (): void => cancel(Object.assign(new Error("attempt cancelled"), { code: CANCELLED, details: "attempt cancelled" }));
      const read: PieceRead = {
        onData,
        maxBytes,
        got: 0,
        started: false,
        stream,
        request: getPieceRequestFramed(req),
        resolve: () => {
          finish();
          resolve();
        },
        reject: (err) => {
          finish();
          reject(err);
        },
      };
      stream.read = read;
      if (this.reading++ === 0) this.socket.ref();
      if (signal.aborted) {
        onAbort();
        return;
      }
      signal.addEventListener("abort", onAbort, { once: true });
      timer = setTimeout(() => {
        cancel(Object.assign(new Error("deadline exceeded"), { code: DEADLINE_EXCEEDED, details: `piece ${req.pieceId} from ${this.address}: deadline exceeded` }));
        // This reader sends no keepalive pings: a stream this late may sit on a dead
        // connection, so the next attempt dials afresh (streams still here go to grpc-js).
        this.destroy();
      }, Math.max(0, deadline - Date.now()));
      timer.unref();
      this.send(read, opening);
    });
  }

  /** Writes a read's request on its stream (with the call's headers when the stream is new). */
  private send(read: PieceRead, opening: boolean): void {
    const s = read.stream;
    const request = h2Frame(DATA, s.lane ? 0 : END_STREAM, s.id, read.request);
    this.socket.write(opening ? Buffer.concat([h2GrpcRequestHeaders(s.id, this.address, s.lane ? GET_PIECES_PATH : GET_PIECE_PATH), request]) : request);
  }

  /**
   * Closes the connection; running streams fail over to grpc-js. Idle lanes are ended
   * first (half-closed, so the node finishes those calls with OK instead of seeing them
   * cancelled); the socket closes once the node's trailers for them arrived, or after
   * CLOSE_GRACE_MS.
   */
  close(): void {
    const idle = [...this.streams.values()].filter((s) => s.lane && !s.read);
    const running = [...this.streams.values()].filter((s) => s.read);
    this.shut(`connection to ${this.address} closed by the client`);
    if (idle.length === 0 || this.socket.destroyed) {
      this.socket.destroy();
      return;
    }
    for (const s of idle) this.ending.add(s.id);
    this.socket.write(Buffer.concat([...idle.map((s) => h2Frame(DATA, END_STREAM, s.id)), ...running.map((s) => h2Cancel(s.id))]));
    setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS).unref();
  }

  /** Drops the connection at once (one that may be dead). */
  private destroy(): void {
    this.shut(`connection to ${this.address} given up by the client`);
    this.socket.destroy();
  }

  private idleLane(): PieceStream | undefined {
    for (const s of this.streams.values()) if (s.lane && !s.read) return s;
    return undefined;
  }

  private openStream(lane: boolean): PieceStream | undefined {
    const id = this.nextId;
    if (id > 0x7fffffff) {
      this.closed = true; // stream ids exhausted: the next fetch opens a new connection
      return undefined;
    }
    this.nextId += 2;
    const s: PieceStream = {
      id,
      lane,
      read: undefined,
      answered: 0,
      unconsumed: 0,
      prefix: Buffer.alloc(5),
      prefixGot: 0,
      msgLeft: 0,
      state: "key",
      varint: 0,
      shift: 1,
      field: 0,
      left: 0,
      msgTotal: 0,
      msgError: false,
    };
    this.streams.set(id, s);
    return s;
  }

  /** Resets a stream the client gives up (its bytes still arriving are ignored). */
  private drop(s: PieceStream): void {
    if (!this.streams.delete(s.id)) return;
    if (!this.socket.destroyed) this.socket.write(h2Cancel(s.id));
  }

  /** The node ended or reset a stream: its piece in progress goes to grpc-js. */
  private ended(s: PieceStream, why: string): void {
    this.streams.delete(s.id);
    const r = s.read;
    // A lane refused before it answered anything: the node has no GetPieces (or refuses
    // it). Its piece, and every later one on this connection, go by GetPiece.
    if (s.lane && s.answered === 0) {
      this.lanes = false;
      const again = r && r.got === 0 && !this.closed ? this.openStream(false) : undefined;
      if (r && again) {
        again.read = r;
        r.stream = again;
        this.send(r, true);
        return;
      }
    }
    r?.reject(new DirectReadFailed(why));
  }

  private shut(why: string): void {
    this.closed = true;
    const err = new DirectReadFailed(why);
    for (const s of [...this.streams.values()]) {
      this.streams.delete(s.id);
      s.read?.reject(err);
    }
  }

  /** Parses what one read put in the buffer; true = keep reading. */
  private onRead(buf: Buffer, n: number): boolean {
    let i = 0;
    try {
      while (i < n) {
        if (this.type < 0) {
          const k = Math.min(9 - this.headGot, n - i);
          buf.copy(this.head, this.headGot, i, i + k);
          this.headGot += k;
          i += k;
          if (this.headGot < 9) return true;
          this.headGot = 0;
          this.left = this.head.readUIntBE(0, 3);
          this.type = this.head[3] as number;
          this.flags = this.head[4] as number;
          this.sid = this.head.readUInt32BE(5) & 0x7fffffff;
          this.needPadLength = this.type === DATA && (this.flags & PADDED) !== 0;
          this.padLeft = 0;
          this.control = this.type === PING || this.type === GOAWAY || this.type === RST_STREAM ? Buffer.alloc(this.left) : undefined;
          this.controlGot = 0;
          if (this.left === 0) this.endFrame();
          continue;
        }
        const k = Math.min(this.left, n - i);
        if (this.type === DATA) this.dataBytes(buf, i, i + k);
        else if (this.control) {
          buf.copy(this.control, this.controlGot, i, i + k);
          this.controlGot += k;
        }
        this.left -= k;
        i += k;
        if (this.left === 0) this.endFrame();
      }
    } catch (err) {
      // A frame this reader does not understand: give every stream to grpc-js.
      this.shut(`connection to ${this.address}: ${(err as Error).message}`);
      this.socket.destroy();
    }
    return true;
  }

  /** DATA payload bytes [from, to) of the current frame (padding handled here). */
  private dataBytes(buf: Buffer, from: number, to: number): void {
    let i = from;
    if (this.needPadLength && i < to) {
      this.padLeft = buf[i++] as number;
      this.needPadLength = false;
    }
    const payloadEnd = Math.min(to, from + Math.max(0, this.left - this.padLeft));
    const st = this.streams.get(this.sid);
    if (st && i < payloadEnd) this.streamBytes(st, buf, i, payloadEnd);
  }

  private endFrame(): void {
    const type = this.type;
    const flags = this.flags;
    const sid = this.sid;
    const len = this.head.readUIntBE(0, 3);
    this.type = -1;
    if (type === DATA) {
      this.consumed += len;
      if (this.consumed >= CONNECTION_TOP_UP) {
        this.socket.write(h2WindowUpdate(0, this.consumed));
        this.consumed = 0;
      }
      const st = this.streams.get(sid);
      if (st) {
        st.unconsumed += len;
        if (st.unconsumed >= STREAM_TOP_UP && (flags & END_STREAM) === 0) {
          this.socket.write(h2WindowUpdate(sid, st.unconsumed));
          st.unconsumed = 0;
        }
      }
    } else if (type === SETTINGS && (flags & ACK) === 0) {
      this.socket.write(h2Frame(SETTINGS, ACK, 0));
    } else if (type === PING && (flags & ACK) === 0 && this.control) {
      this.socket.write(h2Frame(PING, ACK, 0, this.control));
    } else if (type === GOAWAY) {
      // No new streams here; streams above the last id were not processed.
      this.closed = true;
      const last = this.control && this.control.length >= 4 ? this.control.readUInt32BE(0) & 0x7fffffff : 0;
      for (const st of [...this.streams.values()]) {
        if (st.id > last) this.ended(st, `${this.address} sent GOAWAY`);
        else if (!st.read) this.drop(st); // an idle lane
      }
      if (this.reading === 0) this.socket.end();
    } else if (type === RST_STREAM) {
      const st = this.streams.get(sid);
      if (st) this.ended(st, `${this.address} reset the stream`);
    }
    if ((type === RST_STREAM || ((type === DATA || type === HEADERS) && (flags & END_STREAM) !== 0)) && this.ending.delete(sid) && this.ending.size === 0) {
      this.socket.destroy(); // every lane close() ended is over
      return;
    }
    if ((type === DATA || type === HEADERS) && (flags & END_STREAM) !== 0) {
      const st = this.streams.get(sid);
      const r = st?.read;
      if (st && !st.lane && r && r.got === r.maxBytes && st.msgLeft === 0 && st.prefixGot === 0) r.resolve();
      else if (st) this.ended(st, `${this.address} ended piece stream ${sid}${r ? ` after ${r.got} of ${r.maxBytes} bytes` : ""}`);
      if (this.closed && this.reading === 0 && this.ending.size === 0) this.socket.end();
    }
  }

  /**
   * The end of one response message. On a lane, the first message of a piece carries its
   * size (checked against the manifest's) or its error, and the piece is complete once
   * all its bytes arrived; a GetPiece stream's piece completes with the stream.
   */
  private messageEnd(s: PieceStream): void {
    if (!s.lane) return;
    const r = s.read;
    if (!r) throw new Error(`a message on idle GetPieces stream ${s.id}`);
    if (!r.started) {
      r.started = true;
      if (s.msgError) {
        if (r.got > 0) throw new Error("a GetPieces error with piece bytes");
        // This piece only: grpc-js repeats the attempt and reports the node's status.
        s.answered++;
        r.reject(new DirectReadFailed(`${this.address} answered an error for the piece`));
        return;
      }
      if (s.msgTotal !== r.maxBytes) throw new Error(`a piece of ${s.msgTotal} stored bytes where ${r.maxBytes} were expected`);
    } else if (s.msgError || s.msgTotal !== 0) throw new Error(`a GetPieces message out of order on stream ${s.id}`);
    if (r.got === r.maxBytes) {
      s.answered++;
      r.resolve();
    }
  }

  /** gRPC messages of one stream: 5-byte prefix, then the response (1: data, 2: total_size, 3: error). */
  private streamBytes(st: PieceStream, buf: Buffer, from: number, to: number): void {
    let i = from;
    while (i < to) {
      if (st.msgLeft === 0) {
        const k = Math.min(5 - st.prefixGot, to - i);
        buf.copy(st.prefix, st.prefixGot, i, i + k);
        st.prefixGot += k;
        i += k;
        if (st.prefixGot < 5) return;
        st.prefixGot = 0;
        if (st.prefix[0] !== 0) throw new Error("compressed GetPiece message");
        st.msgLeft = st.prefix.readUInt32BE(1);
        st.state = "key";
        st.varint = 0;
        st.shift = 1;
        st.msgTotal = 0;
        st.msgError = false;
        if (st.msgLeft === 0) this.messageEnd(st);
        continue;
      }
      const end = Math.min(to, i + st.msgLeft);
      if (st.state === "data" || st.state === "skip") {
        const k = Math.min(st.left, end - i);
        if (st.state === "data") {
          const r = st.read;
          if (!r) throw new Error(`piece bytes on idle GetPieces stream ${st.id}`);
          if (r.got + k > r.maxBytes) throw new Error(`more than ${r.maxBytes} bytes for one piece`);
          r.got += k;
          r.onData(buf, i, i + k);
          // Given up from within onData: the stream is gone, its bytes are not ours.
          if (st.read !== r) return;
        }
        st.left -= k;
        st.msgLeft -= k;
        i += k;
        if (st.left === 0) st.state = "key";
        if (st.msgLeft === 0) this.messageEnd(st);
        continue;
      }
      // a varint byte: a field key, a length, or a varint field's value
      const b = buf[i++] as number;
      st.msgLeft--;
      st.varint += (b & 0x7f) * st.shift;
      st.shift *= 128;
      if (st.shift > 2 ** 63) throw new Error("varint too long");
      if (b >= 0x80) {
        if (st.msgLeft === 0) throw new Error("truncated piece response");
        continue;
      }
      const v = st.varint;
      st.varint = 0;
      st.shift = 1;
      if (st.state === "key") {
        st.field = Math.floor(v / 8);
        const wire = v & 7;
        if (wire === 2) st.state = "len";
        else if (wire === 0) st.state = "varint";
        else if (wire === 1 || wire === 5) {
          st.state = "skip";
          st.left = wire === 1 ? 8 : 4;
        } else throw new Error(`wire type ${wire} in a piece response`);
      } else if (st.state === "len") {
        if (v > st.msgLeft) throw new Error("field longer than its message");
        if (st.field === 3) st.msgError = true;
        st.left = v;
        st.state = v === 0 ? "key" : st.field === 1 ? "data" : "skip";
      } else {
        if (st.field === 2) st.msgTotal = v;
        st.state = "key";
      }
      if (st.msgLeft === 0) {
        if (st.state !== "key") throw new Error("truncated piece response");
        this.messageEnd(st);
      }
    }
  }
}

/** "host:port" or "[v6]:port": what the direct reader dials (anything else goes to grpc-js). */
const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[^\s:/,[\]]+):(\d{1,5})$/;

/** Direct connections by node address (opened on first use, replaced when closed). */
export class DirectPiecePool {
  private readonly conns = new Map<string, DirectPieceConnection>();

  /** The connection to `address`; undefined for a target that is not "host:port" (e.g. "dns:///…"). */
  get(address: string): DirectPieceConnection | undefined {
    const m = HOST_PORT.exec(address);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) return undefined;
    let c = this.conns.get(address);
    if (!c || c.closed) {
      c = new DirectPieceConnection(address);
      this.conns.set(address, c);
    }
    return c;
  }

  close(): void {
    for (const c of this.conns.values()) c.close();
    this.conns.clear();
  }
}
