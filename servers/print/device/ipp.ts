/**
 * A small IPP/2.0 client (RFC 8010 encoding over HTTP, RFC 8011 operations): enough to
 * ask a printer for its attributes, create a job, stream a document into it, poll the
 * job and cancel it. Attribute values are decoded by syntax; collections become nested
 * attribute maps.
 */
import { request as httpRequest, type ClientRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest, type RequestOptions as HttpsRequestOptions } from "node:https";
import type { Socket } from "node:net";
import { checkServerIdentity, connect as tlsConnect, type ConnectionOptions } from "node:tls";

/** IPP operation ids used here. */
export const IppOp = {
  PRINT_JOB: 0x0002,
  VALIDATE_JOB: 0x0004,
  CREATE_JOB: 0x0005,
  SEND_DOCUMENT: 0x0006,
  CANCEL_JOB: 0x0008,
  GET_JOB_ATTRIBUTES: 0x0009,
  GET_JOBS: 0x000a,
  GET_PRINTER_ATTRIBUTES: 0x000b,
} as const;

/** Value tags (RFC 8010 §3.5.2). */
export const Tag = {
  OPERATION: 0x01,
  JOB: 0x02,
  END: 0x03,
  PRINTER: 0x04,
  UNSUPPORTED_GROUP: 0x05,
  UNSUPPORTED: 0x10,
  UNKNOWN: 0x12,
  NO_VALUE: 0x13,
  INTEGER: 0x21,
  BOOLEAN: 0x22,
  ENUM: 0x23,
  OCTET_STRING: 0x30,
  DATE_TIME: 0x31,
  RESOLUTION: 0x32,
  RANGE: 0x33,
  BEGIN_COLLECTION: 0x34,
  TEXT_WITH_LANGUAGE: 0x35,
  NAME_WITH_LANGUAGE: 0x36,
  END_COLLECTION: 0x37,
  TEXT: 0x41,
  NAME: 0x42,
  KEYWORD: 0x44,
  URI: 0x45,
  URI_SCHEME: 0x46,
  CHARSET: 0x47,
  LANGUAGE: 0x48,
  MIME_TYPE: 0x49,
  MEMBER_NAME: 0x4a,
} as const;

/** A resolution value. */
export interface Resolution {
  x: number;
  y: number;
  /** 3 = dots per inch, 4 = dots per centimetre. */
  units: number;
}

/** A decoded attribute value. */
export type IppValue = number | boolean | string | Resolution | { lower: number; upper: number } | Buffer | IppAttributes | null;

/** Attributes of one group by name; every attribute is a list of values. */
export type IppAttributes = Map<string, IppValue[]>;

/** An attribute to send. */
export interface OutAttribute {
  tag: number;
  name: string;
  values: (string | number | boolean | Resolution)[];
}

/** A decoded IPP response. */
export interface IppResponse {
  status: number;
  requestId: number;
  operation: IppAttributes;
  /** Printer or job groups, in order. */
  groups: { tag: number; attrs: IppAttributes }[];
  unsupported: IppAttributes;
}

/** Status code names (RFC 8011 §B, PWG 5100.x) for messages. */
const STATUS: Record<number, string> = {
  0x0000: "successful-ok",
  0x0001: "successful-ok-ignored-or-substituted-attributes",
  0x0002: "successful-ok-conflicting-attributes",
  0x0400: "client-error-bad-request",
  0x0401: "client-error-forbidden",
  0x0402: "client-error-not-authenticated",
  0x0403: "client-error-not-authorized",
  0x0404: "client-error-not-possible",
  0x0405: "client-error-timeout",
  0x0406: "client-error-not-found",
  0x0407: "client-error-gone",
  0x0408: "client-error-request-entity-too-large",
  0x0409: "client-error-request-value-too-long",
  0x040a: "client-error-document-format-not-supported",
  0x040b: "client-error-attributes-or-values-not-supported",
  0x040c: "client-error-uri-scheme-not-supported",
  0x040d: "client-error-charset-not-supported",
  0x040e: "client-error-conflicting-attributes",
  0x040f: "client-error-compression-not-supported",
  0x0410: "client-error-compression-error",
  0x0411: "client-error-document-format-error",
  0x0412: "client-error-document-access-error",
  0x0500: "server-error-internal-error",
  0x0501: "server-error-operation-not-supported",
  0x0502: "server-error-service-unavailable",
  0x0503: "server-error-version-not-supported",
  0x0504: "server-error-device-error",
  0x0505: "server-error-temporary-error",
  0x0506: "server-error-not-accepting-jobs",
  0x0507: "server-error-busy",
  0x0508: "server-error-job-canceled",
  0x0509: "server-error-multiple-document-jobs-not-supported",
};

/** The RFC name of a status code. */
export function statusName(code: number): string {
  return STATUS[code] ?? `0x${code.toString(16).padStart(4, "0")}`;
}

/** An IPP-level failure: transport, HTTP or an IPP error status. */
export class IppError extends Error {
  constructor(
    message: string,
    /** Stable reason for the job's status. */
    readonly reason: string,
    /** IPP status code, when the printer answered. */
    readonly status?: number,
  ) {
    super(message);
    this.name = "IppError";
  }
}

const TEXT_TAGS = new Set<number>([Tag.TEXT, Tag.NAME, Tag.KEYWORD, Tag.URI, Tag.URI_SCHEME, Tag.CHARSET, Tag.LANGUAGE, Tag.MIME_TYPE, Tag.MEMBER_NAME]);

function encodeValue(tag: number, v: string | number | boolean | Resolution): Buffer {
  if (tag === Tag.INTEGER || tag === Tag.ENUM) {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v as number);
    return b;
  }
  if (tag === Tag.BOOLEAN) return Buffer.from([v ? 1 : 0]);
  if (tag === Tag.RESOLUTION) {
    const r = v as Resolution;
    const b = Buffer.alloc(9);
    b.writeInt32BE(r.x, 0);
    b.writeInt32BE(r.y, 4);
    b.writeInt8(r.units, 8);
    return b;
  }
  if (tag === Tag.NO_VALUE || tag === Tag.UNKNOWN) return Buffer.alloc(0);
  return Buffer.from(String(v), "utf8");
}

/** Encodes a request: version 2.0, the operation attributes (charset and language first), optional job attributes. */
export function encodeRequest(operation: number, requestId: number, op: OutAttribute[], job: OutAttribute[] = []): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(8);
  head.writeUInt8(2, 0);
  head.writeUInt8(0, 1);
  head.writeUInt16BE(operation, 2);
  head.writeInt32BE(requestId, 4);
  parts.push(head);
  const group = (tag: number, attrs: OutAttribute[]): void => {
    parts.push(Buffer.from([tag]));
    for (const a of attrs) {
      a.values.forEach((v, i) => {
        const name = Buffer.from(i === 0 ? a.name : "", "utf8");
        const value = encodeValue(a.tag, v);
        const h = Buffer.alloc(3);
        h.writeUInt8(a.tag, 0);
        h.writeUInt16BE(name.length, 1);
        const l = Buffer.alloc(2);
        l.writeUInt16BE(value.length);
        parts.push(h, name, l, value);
      });
    }
  };
  group(Tag.OPERATION, [{ tag: Tag.CHARSET, name: "attributes-charset", values: ["utf-8"] }, { tag: Tag.LANGUAGE, name: "attributes-natural-language", values: ["en"] }, ...op]);
  if (job.length) group(Tag.JOB, job);
  parts.push(Buffer.from([Tag.END]));
  return Buffer.concat(parts);
}

function decodeValue(tag: number, b: Buffer): IppValue {
  switch (tag) {
    case Tag.INTEGER:
    case Tag.ENUM:
      return b.length === 4 ? b.readInt32BE(0) : null;
    case Tag.BOOLEAN:
      return b[0] === 1;
    case Tag.RESOLUTION:
      return b.length === 9 ? { x: b.readInt32BE(0), y: b.readInt32BE(4), units: b.readInt8(8) } : null;
    case Tag.RANGE:
      return b.length === 8 ? { lower: b.readInt32BE(0), upper: b.readInt32BE(4) } : null;
    case Tag.TEXT_WITH_LANGUAGE:
    case Tag.NAME_WITH_LANGUAGE: {
      const ll = b.readUInt16BE(0);
      const tl = b.readUInt16BE(2 + ll);
      return b.toString("utf8", 4 + ll, 4 + ll + tl);
    }
    default:
      if (TEXT_TAGS.has(tag)) return b.toString("utf8");
      if (tag >= 0x10 && tag <= 0x1f) return null;
      return Buffer.from(b);
  }
}

/** Decodes a response (or a request: the status field then holds the operation id). */
export function decodeResponse(b: Buffer): IppResponse {
  if (b.length < 9) throw new IppError(`IPP response of ${b.length} bytes`, "IPP_BAD_RESPONSE");
  let off = 8;
  const res: IppResponse = { status: b.readUInt16BE(2), requestId: b.readInt32BE(4), operation: new Map(), groups: [], unsupported: new Map() };
  let current: IppAttributes | undefined;
  const need = (n: number): void => {
    if (off + n > b.length) throw new IppError("truncated IPP response", "IPP_BAD_RESPONSE");
  };
  // Reads one attribute (tag already consumed): name and value.
  const readNameValue = (): { name: string; value: Buffer } => {
    need(2);
    const nl = b.readUInt16BE(off);
    off += 2;
    need(nl + 2);
    const name = b.toString("utf8", off, off + nl);
    off += nl;
    const vl = b.readUInt16BE(off);
    off += 2;
    need(vl);
    const value = b.subarray(off, off + vl);
    off += vl;
    return { name, value };
  };
  // Reads a collection's members up to its endCollection.
  const readCollection = (): IppAttributes => {
    const col: IppAttributes = new Map();
    let member = "";
    for (;;) {
      need(1);
      const tag = b[off++] as number;
      const { value } = readNameValue();
      if (tag === Tag.END_COLLECTION) return col;
      if (tag === Tag.MEMBER_NAME) {
        member = value.toString("utf8");
        continue;
      }
      const v = tag === Tag.BEGIN_COLLECTION ? readCollection() : decodeValue(tag, value);
      const list = col.get(member);
      if (list) list.push(v);
      else col.set(member, [v]);
    }
  };
  let last = "";
  while (off < b.length) {
    const tag = b[off++] as number;
    if (tag === Tag.END) break;
    if (tag < 0x10) {
      current = new Map();
      if (tag === Tag.OPERATION) res.operation = current;
      else if (tag === Tag.UNSUPPORTED_GROUP) res.unsupported = current;
      else res.groups.push({ tag, attrs: current });
      continue;
    }
    if (!current) throw new IppError("IPP attribute outside a group", "IPP_BAD_RESPONSE");
    const { name, value } = readNameValue();
    const v = tag === Tag.BEGIN_COLLECTION ? readCollection() : decodeValue(tag, value);
    if (name) {
      last = name;
      current.set(name, [v]);
    } else current.get(last)?.push(v);
  }
  return res;
}

/** The HTTP(S) URL an ipp:// or ipps:// printer URI is reached at. */
export function httpUrl(printerUri: string): URL {
  const u = new URL(printerUri);
  if (u.protocol === "ipp:") return new URL(`http://${u.host || "localhost"}${u.port ? "" : ":631"}${u.pathname}${u.search}`);
  if (u.protocol === "ipps:") return new URL(`https://${u.host || "localhost"}${u.port ? "" : ":631"}${u.pathname}${u.search}`);
  if (u.protocol === "http:" || u.protocol === "https:") return u;
  throw new IppError(`printer URI ${printerUri}: scheme must be ipp, ipps, http or https`, "IPP_BAD_URI");
}

/**
 * How the certificate of an ipps:// (https) printer is checked. Printers mostly present
 * self-signed certificates, which no system CA vouches for: trust the printer's own
 * certificate (or its CA) with `ca`, or pin that exact certificate with `certSha256`.
 */
export interface IppTls {
  /** PEM certificates trusted for the printer instead of the system CAs: its CA, or its self-signed certificate itself. */
  ca?: Buffer;
  /** SHA-256 fingerprint of the printer's certificate (hex, colons optional): exactly that certificate is accepted, whoever issued it and whatever name it carries. */
  certSha256?: string;
  /** The name the certificate must carry when the URI's host is not it (e.g. the printer is dialled by IP). */
  serverName?: string;
}

/** Upper-case hex without separators. */
const normalHex = (fp: string): string => fp.replace(/[^0-9a-fA-F]/g, "").toUpperCase();

/**
 * A TLS connection to a printer, handed to the HTTP request only once the certificate
 * passed the check, so not a byte of the request goes to a printer that fails it. A
 * failure names the certificate's SHA-256 fingerprint, which an operator who checked it
 * on the printer's panel can pin.
 */
function printerConnection(url: URL, tls: IppTls, timeoutMs: number): NonNullable<HttpsRequestOptions["createConnection"]> {
  return (_opts, oncreate) => {
    const host = url.hostname.replace(/^\[|\]$/g, "");
    const servername = tls.serverName ?? (/^[\d.]+$|:/.test(host) ? undefined : host);
    const o: ConnectionOptions = {
      host,
      port: Number(url.port || 443),
      rejectUnauthorized: false,
      ALPNProtocols: ["http/1.1"],
      ...(servername ? { servername } : {}),
      ...(tls.ca ? { ca: tls.ca } : {}),
      ...(tls.serverName ? { checkServerIdentity: (_h: string, cert: Parameters<typeof checkServerIdentity>[1]) => checkServerIdentity(tls.serverName as string, cert) } : {}),
    };
    const socket = tlsConnect(o);
    const fail = (err: Error): void => {
      socket.destroy();
      oncreate(err, undefined as unknown as Socket);
    };
    socket.setTimeout(timeoutMs, () => fail(new IppError(`no TLS handshake with ${url.host} within ${timeoutMs} ms`, "IPP_TIMEOUT")));
    socket.once("error", fail);
    socket.once("secureConnect", () => {
      socket.setTimeout(0);
      socket.off("error", fail);
      const fp = socket.getPeerCertificate().fingerprint256 ?? "";
      if (tls.certSha256 !== undefined) {
        if (normalHex(fp) !== normalHex(tls.certSha256)) {
          fail(new IppError(`printer ${url.host} presented a certificate with SHA-256 ${fp}, not the pinned ${tls.certSha256}`, "IPP_CERTIFICATE_MISMATCH"));
          return;
        }
      } else if (!socket.authorized) {
        const why = String(socket.authorizationError ?? "not trusted");
        fail(
          new IppError(
            `printer ${url.host}'s certificate is not trusted (${why}); trust it with printer.ipp.tls.caFile (its certificate or CA) or pin it with printer.ipp.tls.certSha256 (it presented SHA-256 ${fp})`,
            "IPP_CERTIFICATE_UNTRUSTED",
          ),
        );
        return;
      }
      oncreate(null, socket);
    });
    return undefined;
  };
}

/** Options of one IPP request. */
export interface IppRequestOptions {
  /** Time limit of the request (and of the TLS handshake). */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Certificate check of an ipps:// printer (default: the system CAs and the URI's host name). */
  tls?: IppTls;
}

/** A request whose body is written by the caller (documents are streamed as pages come). */
export interface IppCall {
  /** Writes body bytes, waiting for backpressure. */
  write(b: Buffer): Promise<void>;
  /** Ends the body and returns the decoded response (an IPP error status throws). */
  finish(): Promise<IppResponse>;
  /** Abandons the request. */
  abort(): void;
}

/** Starts a POST of `head` (an encoded request) to the printer; more body bytes may follow. */
export function ippCall(printerUri: string, head: Buffer, o: IppRequestOptions): IppCall {
  const url = httpUrl(printerUri);
  const common = { method: "POST", headers: { "Content-Type": "application/ipp" }, timeout: o.timeoutMs, ...(o.signal ? { signal: o.signal } : {}) };
  const req: ClientRequest =
    url.protocol === "https:" ? httpsRequest(url, { ...common, createConnection: printerConnection(url, o.tls ?? {}, o.timeoutMs) }) : httpRequest(url, common);
  let failure: Error | undefined;
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.on("response", resolve);
    req.on("error", (err) => {
      failure = err;
      reject(err);
    });
    req.on("timeout", () => req.destroy(new IppError(`no answer from ${url.host} within ${o.timeoutMs} ms`, "IPP_TIMEOUT")));
  });
  response.catch(() => undefined);
  const transport = (err: unknown): IppError => {
    if (err instanceof IppError) return err;
    const e = err as NodeJS.ErrnoException;
    return new IppError(`printer ${url.host} unreachable: ${e.code ?? ""} ${e.message}`.trim(), "IPP_PRINTER_UNREACHABLE");
  };
  req.write(head);
  return {
    write: async (b) => {
      if (failure) throw transport(failure);
      if (!req.write(b)) {
        await new Promise<void>((resolve, reject) => {
          const done = (): void => {
            req.off("drain", done);
            req.off("error", fail);
            resolve();
          };
          const fail = (err: Error): void => {
            req.off("drain", done);
            reject(transport(err));
          };
          req.once("drain", done);
          req.once("error", fail);
        });
      }
    },
    finish: async () => {
      req.end();
      let res: IncomingMessage;
      try {
        res = await response;
      } catch (err) {
        throw transport(err);
      }
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      if (res.statusCode !== 200) throw new IppError(`printer ${url.host} answered HTTP ${res.statusCode}`, "IPP_HTTP_ERROR");
      const r = decodeResponse(Buffer.concat(chunks));
      if (r.status >= 0x0100) {
        const msg = first(r.operation, "status-message");
        throw new IppError(`printer ${url.host}: ${statusName(r.status)}${typeof msg === "string" && msg ? ` (${msg})` : ""}`, "IPP_REQUEST_REJECTED", r.status);
      }
      return r;
    },
    abort: () => {
      req.destroy();
    },
  };
}

/** The printer-uri attribute value for a configured URI (http → ipp, https → ipps). */
export function printerUriValue(uri: string): string {
  return uri.replace(/^http:/, "ipp:").replace(/^https:/, "ipps:");
}

/** One request without a document (printer-uri added first). */
export async function ipp(printerUri: string, operation: number, op: OutAttribute[], o: IppRequestOptions & { job?: OutAttribute[] }): Promise<IppResponse> {
  return ippCall(printerUri, encodeRequest(operation, nextId(), [{ tag: Tag.URI, name: "printer-uri", values: [printerUriValue(printerUri)] }, ...op], o.job), o).finish();
}

let requestIds = 0;
/** The next request id (1..2^31-1). */
export function nextId(): number {
  requestIds = (requestIds % 0x7ffffffe) + 1;
  return requestIds;
}

/** The first value of an attribute, if any. */
export function first(attrs: IppAttributes | undefined, name: string): IppValue | undefined {
  return attrs?.get(name)?.[0];
}

/** All values of an attribute as strings (keywords, mime types, names). */
export function strings(attrs: IppAttributes | undefined, name: string): string[] {
  return (attrs?.get(name) ?? []).filter((v): v is string => typeof v === "string");
}
