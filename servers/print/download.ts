/**
 * Fetches a document over http/https for a worker, with the protections a server that
 * fetches URLs on behalf of callers needs: only http(s); every address the host name
 * resolves to is checked against private, loopback, link-local and other special ranges
 * at connect time (so DNS rebinding cannot slip past a check made earlier); redirects are
 * followed by hand and each hop is checked again; a size cap (Content-Length and actual
 * bytes) and an overall time limit.
 */
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import http from "node:http";
import https from "node:https";
import { BlockList, isIP, type LookupFunction } from "node:net";
import { DownloadErrors } from "./errors.js";
import type { SwitchyardError } from "../runtime/errors.js";

/** Limits and allow-list of a download. */
export interface DownloadPolicy {
  /** Largest document, in bytes. */
  maxBytes: number;
  /** Whole download time limit, in ms. */
  timeoutMs: number;
  /** Redirects followed at most. */
  maxRedirects: number;
  /** CIDR ranges ("127.0.0.1/32", "10.0.0.0/8", "::1/128") allowed although private. */
  allowPrivate: string[];
}

const SPECIAL_V4 = [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.0.2.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const;
const SPECIAL_V6 = [
  ["::", 128],
  ["::1", 128],
  ["fc00::", 7],
  ["fe80::", 10],
  ["ff00::", 8],
  ["64:ff9b::", 96],
  ["2001:db8::", 32],
] as const;

const blocked = new BlockList();
for (const [a, p] of SPECIAL_V4) blocked.addSubnet(a, p, "ipv4");
for (const [a, p] of SPECIAL_V6) blocked.addSubnet(a, p, "ipv6");

/** Compiles an allow-list of CIDRs; throws naming a bad entry. */
export function compileAllowList(cidrs: string[]): BlockList {
  const list = new BlockList();
  for (const c of cidrs) {
    const [addr, bits] = c.split("/");
    const fam = isIP(addr ?? "");
    const n = Number(bits ?? (fam === 6 ? 128 : 32));
    if (!fam || !Number.isInteger(n) || n < 0 || n > (fam === 6 ? 128 : 32)) throw new Error(`bad CIDR ${JSON.stringify(c)}`);
    list.addSubnet(addr as string, n, fam === 6 ? "ipv6" : "ipv4");
  }
  return list;
}

/** Unwraps an IPv4-mapped IPv6 address ("::ffff:10.0.0.1" → "10.0.0.1"). */
function normalise(address: string): { address: string; family: "ipv4" | "ipv6" } {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (m?.[1]) return { address: m[1], family: "ipv4" };
  return { address, family: isIP(address) === 6 ? "ipv6" : "ipv4" };
}

/** True when `address` may be fetched from under this allow-list. */
export function addressAllowed(address: string, allow: BlockList): boolean {
  const n = normalise(address);
  if (allow.check(n.address, n.family)) return true;
  return !blocked.check(n.address, n.family);
}

class Refused extends Error {
  constructor(readonly error: SwitchyardError) {
    super(error.message);
  }
}

function checkedLookup(host: string, allow: BlockList): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, "", 4);
      const list = addresses as unknown as LookupAddress[];
      const bad = list.find((a) => !addressAllowed(a.address, allow));
      if (bad) return callback(new Refused(DownloadErrors.forbidden(host, bad.address)) as NodeJS.ErrnoException, "", 4);
      if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
      const first = list[0] as LookupAddress;
      callback(null, first.address, first.family);
    });
  };
}

function parseUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw DownloadErrors.urlInvalid("not a valid absolute URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw DownloadErrors.scheme(url.protocol.replace(/:$/, ""));
  if (url.username || url.password) throw DownloadErrors.urlInvalid("credentials in the URL are not accepted");
  return url;
}

/** One hop: resolves with the body, or with a redirect location. */
function fetchOnce(url: URL, policy: DownloadPolicy, allow: BlockList, signal: AbortSignal): Promise<{ body: Buffer } | { location: string }> {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (isIP(host) && !addressAllowed(host, allow)) return Promise.reject(DownloadErrors.forbidden(host, host));
  const mod = url.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      url,
      { method: "GET", lookup: checkedLookup(host, allow), signal, headers: { "user-agent": "switchyard-print/1", accept: "application/pdf,*/*" }, agent: false },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 300 && status < 400 && res.headers.location) {
          res.resume();
          resolve({ location: new URL(res.headers.location, url).toString() });
          return;
        }
        if (status < 200 || status >= 300) {
          res.resume();
          reject(DownloadErrors.httpStatus(status));
          return;
        }
        const declared = Number(res.headers["content-length"] ?? NaN);
        if (Number.isFinite(declared) && declared > policy.maxBytes) {
          res.destroy();
          reject(DownloadErrors.tooLarge(policy.maxBytes));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size > policy.maxBytes) {
            res.destroy();
            reject(DownloadErrors.tooLarge(policy.maxBytes));
            return;
          }
          chunks.push(c);
        });
        res.on("end", () => resolve({ body: Buffer.concat(chunks) }));
        res.on("error", (err) => reject(err));
      },
    );
    req.on("error", (err) => reject(err));
    req.end();
  });
}

/** Downloads `raw` under `policy`; throws a DownloadErrors error on any failure. */
export async function download(raw: string, policy: DownloadPolicy, allow: BlockList, outer?: AbortSignal): Promise<Buffer> {
  let url = parseUrl(raw);
  const timeout = AbortSignal.timeout(policy.timeoutMs);
  const signal = outer ? AbortSignal.any([timeout, outer]) : timeout;
  for (let hop = 0; ; hop++) {
    let r: { body: Buffer } | { location: string };
    try {
      r = await fetchOnce(url, policy, allow, signal);
    } catch (err) {
      if (err instanceof Refused) throw err.error;
      if ((err as { cause?: unknown }).cause instanceof Refused) throw ((err as { cause: Refused }).cause).error;
      if (typeof (err as SwitchyardError).reason === "string" && "code" in (err as object) && typeof (err as { code: unknown }).code === "number") throw err;
      if (timeout.aborted) throw DownloadErrors.timeout(policy.timeoutMs);
      throw DownloadErrors.unreachable((err as Error).message ?? String(err), err);
    }
    if ("body" in r) return r.body;
    if (hop >= policy.maxRedirects) throw DownloadErrors.redirects(policy.maxRedirects);
    url = parseUrl(r.location);
  }
}
