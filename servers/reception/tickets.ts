/**
 * Ticket tokens: the claims of a ticket sealed with AES-256-GCM under a key that belongs
 * to one content server.
 *
 * Keys: each content server's key is HKDF-SHA256(master key, salt, "keyId\0serverId"),
 * so the reception (which holds the master key) can mint for every server, and a content
 * server (which holds only its own derived keys) can verify tickets for itself and mint
 * for nobody else. Several key ids may be live at once for rotation.
 *
 * Token layout (all of it before the ciphertext is authenticated as AAD):
 *   u8 version (=1) | u8 len | key id | u8 len | server id | u16 BE ciphertext length |
 *   12-byte nonce | ciphertext (TicketClaims protobuf) | 16-byte tag
 * Key id and server id travel in the clear so a server can say "wrong server" or "unknown
 * key" precisely; altering either makes authentication fail.
 */
import { createCipheriv, createDecipheriv, createSecretKey, hkdfSync, randomBytes, type KeyObject } from "node:crypto";
import { TicketClaims } from "../../gen/switchyard/reception/v1/ticket.js";
import {
  TicketClientMismatchError,
  TicketExpiredError,
  TicketKeyUnknownError,
  TicketMalformedError,
  TicketNotAuthenticError,
  TicketNotYetValidError,
  TicketWrongServerError,
} from "./errors.js";

export { TicketClaims };

const VERSION = 1;
const NONCE = 12;
const TAG = 16;
/** Largest token accepted, in bytes. */
export const MAX_TOKEN_BYTES = 4096;
const HKDF_SALT = Buffer.from("switchyard.reception.ticket.v1");
const ID = /^[A-Za-z0-9._-]{1,63}$/;

/** A secret with its id, as configured. */
export interface KeySpec {
  /** Key id, 1..63 of [A-Za-z0-9._-]. */
  id: string;
  /** 32 bytes. */
  secret: Buffer;
}

/** Derives the key a content server holds for `keyId` from the reception master key. */
export function deriveServerKey(master: Buffer, keyId: string, serverId: string): Buffer {
  if (master.length < 32) throw new Error("master key must be at least 32 bytes");
  return Buffer.from(hkdfSync("sha256", master, HKDF_SALT, Buffer.from(`${keyId}\0${serverId}`), 32));
}

/** Decodes a base64 / base64url / hex secret of exactly 32 bytes; throws naming `what`. */
export function parseSecret(text: string, what: string): Buffer {
  const t = text.trim();
  const buf = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, "hex") : Buffer.from(t, "base64");
  if (buf.length !== 32) throw new Error(`${what}: expected 32 bytes (64 hex digits or base64), got ${buf.length}`);
  return buf;
}

function header(keyId: string, serverId: string, ctLen: number): Buffer {
  const k = Buffer.from(keyId, "latin1");
  const s = Buffer.from(serverId, "latin1");
  const h = Buffer.allocUnsafe(1 + 1 + k.length + 1 + s.length + 2);
  let o = 0;
  h[o++] = VERSION;
  h[o++] = k.length;
  o += k.copy(h, o);
  h[o++] = s.length;
  o += s.copy(h, o);
  h.writeUInt16BE(ctLen, o);
  return h;
}

/**
 * Random nonces drawn from a pool refilled 256 at a time: one call into the CSPRNG per
 * 256 tickets instead of one per ticket (the same trick Node uses for randomUUID).
 */
const NONCE_POOL = 256;
let noncePool = Buffer.alloc(0);
let nonceAt = 0;
function nextNonce(): Buffer {
  if (nonceAt >= noncePool.length) {
    noncePool = randomBytes(NONCE * NONCE_POOL);
    nonceAt = 0;
  }
  const n = noncePool.subarray(nonceAt, nonceAt + NONCE);
  nonceAt += NONCE;
  return n;
}

/** Seals claims for one server with an already-derived key. */
export function sealClaims(key: KeyObject | Buffer, keyId: string, claims: TicketClaims): Buffer {
  const plain = TicketClaims.encode(claims).finish();
  const aad = header(keyId, claims.serverId, plain.length);
  const nonce = nextNonce();
  const c = createCipheriv("aes-256-gcm", key, nonce);
  c.setAAD(aad);
  const ct = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([aad, nonce, ct, c.getAuthTag()]);
}

/** The clear parts of a token, after a structural check. */
export interface TokenParts {
  keyId: string;
  serverId: string;
  aad: Buffer;
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

/** Splits a token; throws TicketMalformedError when it is not a well-formed token. */
export function parseToken(token: Uint8Array): TokenParts {
  if (token.length === 0) throw new TicketMalformedError("is empty");
  if (token.length > MAX_TOKEN_BYTES) throw new TicketMalformedError(`is ${token.length} bytes, at most ${MAX_TOKEN_BYTES}`);
  const b = Buffer.from(token.buffer, token.byteOffset, token.length);
  if (b[0] !== VERSION) throw new TicketMalformedError("is not a ticket token (unknown version)");
  let o = 1;
  const kLen = b[o++];
  if (kLen === undefined || kLen === 0 || o + kLen >= b.length) throw new TicketMalformedError("is truncated");
  const keyId = b.toString("latin1", o, o + kLen);
  o += kLen;
  const sLen = b[o++];
  if (sLen === undefined || sLen === 0 || o + sLen + 2 > b.length) throw new TicketMalformedError("is truncated");
  const serverId = b.toString("latin1", o, o + sLen);
  o += sLen;
  if (!ID.test(keyId) || !ID.test(serverId)) throw new TicketMalformedError("is not a ticket token (bad header)");
  const ctLen = b.readUInt16BE(o);
  o += 2;
  const want = o + NONCE + ctLen + TAG;
  if (b.length < want) throw new TicketMalformedError("is truncated");
  if (b.length > want) throw new TicketMalformedError("has trailing bytes");
  return {
    keyId,
    serverId,
    aad: b.subarray(0, o),
    nonce: b.subarray(o, o + NONCE),
    ciphertext: b.subarray(o + NONCE, o + NONCE + ctLen),
    tag: b.subarray(o + NONCE + ctLen),
  };
}

/** Mints tickets for any content server from the reception's master keys. */
export class TicketMinter {
  private readonly masters = new Map<string, Buffer>();
  private readonly derived = new Map<string, KeyObject>();

  /** `keys`: every master key by id; `activeKeyId`: the one new tickets use. */
  constructor(
    keys: KeySpec[],
    readonly activeKeyId: string,
  ) {
    for (const k of keys) this.masters.set(k.id, k.secret);
    if (!this.masters.has(activeKeyId)) throw new Error(`active key id "${activeKeyId}" is not among the master keys`);
  }

  /** The key `serverId` holds for the active key id (what an operator installs on it). */
  serverKey(serverId: string, keyId = this.activeKeyId): Buffer {
    const m = this.masters.get(keyId);
    if (!m) throw new Error(`unknown key id ${keyId}`);
    return deriveServerKey(m, keyId, serverId);
  }

  /** Seals `claims` for `claims.serverId` under the active key. */
  mint(claims: TicketClaims): Buffer {
    let key = this.derived.get(claims.serverId);
    if (!key) {
      key = createSecretKey(this.serverKey(claims.serverId));
      if (this.derived.size > 10_000) this.derived.clear();
      this.derived.set(claims.serverId, key);
    }
    return sealClaims(key, this.activeKeyId, claims);
  }
}

/** What a content server checks a ticket against besides its seal. */
export interface PresentedBy {
  /** Identity the client claims now. */
  clientId: string;
  /** The client's IP as this server sees it; undefined skips the address check. */
  clientAddress?: string | undefined;
}

/** Verifies tickets for one content server, without calling the reception. */
export class TicketVerifier {
  private readonly keys = new Map<string, KeyObject>();

  /** `keys`: this server's derived keys by key id. */
  constructor(
    readonly serverId: string,
    keys: KeySpec[],
    /** Clock skew tolerated on both ends of the window, in ms. */
    readonly skewMs = 2_000,
  ) {
    for (const k of keys) this.keys.set(k.id, createSecretKey(k.secret));
  }

  /** Opens a token addressed to this server: structure, server id, key, seal. */
  open(token: Uint8Array): TicketClaims {
    const p = parseToken(token);
    if (p.serverId !== this.serverId) throw new TicketWrongServerError(p.serverId, this.serverId);
    const key = this.keys.get(p.keyId);
    if (!key) throw new TicketKeyUnknownError(p.keyId);
    let plain: Buffer;
    try {
      const d = createDecipheriv("aes-256-gcm", key, p.nonce);
      d.setAAD(p.aad);
      d.setAuthTag(p.tag);
      plain = Buffer.concat([d.update(p.ciphertext), d.final()]);
    } catch {
      throw new TicketNotAuthenticError();
    }
    let claims: TicketClaims;
    try {
      claims = TicketClaims.decode(plain);
    } catch {
      throw new TicketNotAuthenticError();
    }
    // The seal covers the header, so this only fails for tickets minted wrongly.
    if (claims.serverId !== p.serverId) throw new TicketNotAuthenticError();
    return claims;
  }

  /** Checks the time window and the presenting client; throws the specific error. */
  check(claims: TicketClaims, by: PresentedBy, now = Date.now()): void {
    const nb = claims.notBefore?.getTime() ?? 0;
    const na = claims.notAfter?.getTime() ?? 0;
    if (now > na + this.skewMs) throw new TicketExpiredError(new Date(na));
    if (now + this.skewMs < nb) throw new TicketNotYetValidError(new Date(nb), nb - this.skewMs - now);
    if (by.clientId !== claims.clientId) throw new TicketClientMismatchError("identity");
    if (by.clientAddress !== undefined && claims.clientAddress !== "" && by.clientAddress !== claims.clientAddress) {
      throw new TicketClientMismatchError("address");
    }
  }

  /** open + check. */
  verify(token: Uint8Array, by: PresentedBy, now = Date.now()): TicketClaims {
    const claims = this.open(token);
    this.check(claims, by, now);
    return claims;
  }
}

/** The host part of a grpc-js peer string ("1.2.3.4:5", "[::1]:5", "ipv4:1.2.3.4:5"). */
export function peerHost(peer: string): string {
  let p = peer.replace(/^(ipv4|ipv6):/, "");
  if (p.startsWith("[")) return p.slice(1, p.indexOf("]"));
  const i = p.lastIndexOf(":");
  if (i > 0 && p.indexOf(":") === i) p = p.slice(0, i);
  return p.replace(/^::ffff:/, "");
}
