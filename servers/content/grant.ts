/**
 * Grants: short-lived permissions the manager signs with Ed25519, so a distribution node
 * verifies a grant by itself while holding only the manager's public keys — a node (or
 * anyone who reads its configuration) cannot mint a grant. Token bytes:
 * `v2.<kid>.<base64url(claims JSON)>.<base64url(signature over "v2.<kid>.<claims>")>`.
 *
 * A READ grant covers pieces through per-piece access tags (an Ed25519 signature over
 * the grant id and the piece id), so the grant stays small however many pieces a
 * manifest lists, and a node checks that the piece asked for is one the manifest named.
 * Keys have ids so they rotate: the manager signs with its first key and publishes the
 * others' public keys; nodes accept every public key they are given.
 *
 * Keys are written as base64 (or base64url) of the raw 32-byte Ed25519 seed (private)
 * or public key; `switchyard content keygen` prints a fresh pair.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from "node:crypto";
import { z } from "zod";
import { ContentAuthError, ContentPermissionError } from "./errors.js";

/** What a grant allows. */
export type GrantScope = "read" | "manage";

/** Claims inside a grant. */
export interface GrantClaims {
  /** Grant id (random). */
  jti: string;
  /** Principal the grant was issued to. */
  sub: string;
  scope: GrantScope;
  /** Content the grant reads (read grants). */
  cid?: string;
  /** Expiry, epoch ms. */
  exp: number;
}

/** A signing key as configured on the manager. */
export interface GrantPrivateKey {
  id: string;
  /** Base64 of the raw 32-byte Ed25519 seed. */
  privateKey: string;
}

/** A verification key as configured on a node. */
export interface GrantPublicKey {
  id: string;
  /** Base64 of the raw 32-byte Ed25519 public key. */
  publicKey: string;
}

const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");
const keyId = z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, "1-32 letters, digits, '_' or '-'");
const raw32 = (what: string): z.ZodString =>
  z.string().refine((s) => /^[A-Za-z0-9+/_-]{43}=?$/.test(s) && Buffer.from(s, "base64").length === 32, `base64 of a raw 32-byte Ed25519 ${what}`);

/** Config schema of the manager's signing keys. */
export const grantPrivateKeysSchema = z
  .array(z.strictObject({ id: keyId, privateKey: raw32("seed").describe("base64 of the raw 32-byte Ed25519 seed") }))
  .min(1, "at least one grant key")
  .describe("Ed25519 keys grants are signed with (the first signs; all are accepted); nodes get the public halves");

/** Config schema of a node's verification keys. */
export const grantPublicKeysSchema = z
  .array(z.strictObject({ id: keyId, publicKey: raw32("public key").describe("base64 of the raw 32-byte Ed25519 public key") }))
  .min(1, "at least one grant key")
  .describe("the manager's Ed25519 public keys; a grant signed by any of them is accepted");

/** Private KeyObject from a base64 seed. */
export function privateKeyFromSeed(seed: string): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, Buffer.from(seed, "base64")]), format: "der", type: "pkcs8" });
}

/** Public KeyObject from a base64 raw public key. */
export function publicKeyFromRaw(pub: string): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, Buffer.from(pub, "base64")]), format: "der", type: "spki" });
}

/** The base64 raw public key of a base64 seed. */
export function publicKeyOf(seed: string): string {
  return (createPublicKey(privateKeyFromSeed(seed)).export({ format: "der", type: "spki" }) as Buffer).subarray(SPKI_PREFIX.length).toString("base64");
}

/** A fresh key pair in configuration form. */
export function generateGrantKey(id: string): { id: string; privateKey: string; publicKey: string } {
  const { privateKey } = generateKeyPairSync("ed25519");
  const seed = (privateKey.export({ format: "der", type: "pkcs8" }) as Buffer).subarray(PKCS8_PREFIX.length).toString("base64");
  return { id, privateKey: seed, publicKey: publicKeyOf(seed) };
}

/** The public halves of signing keys (what the nodes are configured with). */
export function publicGrantKeys(keys: GrantPrivateKey[]): GrantPublicKey[] {
  return keys.map((k) => ({ id: k.id, publicKey: publicKeyOf(k.privateKey) }));
}

const TOKEN_VERSION = "v2";
const claimsSchema = z.object({
  jti: z.string().max(64),
  sub: z.string().max(256),
  scope: z.enum(["read", "manage"]),
  cid: z.string().max(64).optional(),
  exp: z.number(),
});

const tagMessage = (jti: string, pieceId: string): Buffer => Buffer.from(`switchyard.content.tag\0${jti}\0${pieceId}`);

/** Verifies grants with the manager's public keys (what a node holds). */
export class GrantVerifier {
  protected readonly publicKeys: Map<string, KeyObject>;
  /** Verified tokens → claims, so a download's many GetPiece calls verify one signature once. */
  private readonly verified = new Map<string, { claims: GrantClaims; kid: string }>();

  constructor(
    keys: GrantPublicKey[],
    protected readonly now: () => number = Date.now,
  ) {
    if (!keys.length) throw new Error("no grant keys");
    this.publicKeys = new Map(keys.map((k) => [k.id, publicKeyFromRaw(k.publicKey)]));
  }

  /**
   * Verifies a token and returns its claims and key id. Throws ContentAuthError
   * (GRANT_MISSING, GRANT_INVALID, GRANT_EXPIRED) or ContentPermissionError (GRANT_SCOPE).
   */
  verify(token: Uint8Array | undefined, scopes: GrantScope[]): { claims: GrantClaims; kid: string } {
    if (!token || token.length === 0) throw new ContentAuthError("a grant is required", "GRANT_MISSING");
    if (token.length > 4096) throw new ContentAuthError("grant is not valid", "GRANT_INVALID");
    const text = Buffer.from(token).toString("utf8");
    let v = this.verified.get(text);
    if (!v) {
      v = this.check(text);
      if (this.verified.size >= 4096) this.verified.clear();
      this.verified.set(text, v);
    }
    if (v.claims.exp <= this.now()) {
      this.verified.delete(text);
      throw new ContentAuthError("grant has expired; ask the manager for a new manifest", "GRANT_EXPIRED");
    }
    if (!scopes.includes(v.claims.scope)) throw new ContentPermissionError(`grant scope ${v.claims.scope} does not allow this call`, "GRANT_SCOPE");
    return v;
  }

  /** Checks a piece's access tag under a verified read grant. */
  checkTag(claims: GrantClaims, kid: string, pieceId: string, tag: Uint8Array): void {
    const key = this.publicKeys.get(kid);
    if (!key || tag.length !== 64 || !verify(null, tagMessage(claims.jti, pieceId), key, tag)) {
      throw new ContentPermissionError("the grant does not cover this piece", "ACCESS_TAG_INVALID");
    }
  }

  private check(text: string): { claims: GrantClaims; kid: string } {
    const parts = text.split(".");
    if (parts.length !== 4 || parts[0] !== TOKEN_VERSION) throw new ContentAuthError("grant is not valid", "GRANT_INVALID");
    const [, kid, body, sig] = parts as [string, string, string, string];
    const key = this.publicKeys.get(kid);
    if (!key) throw new ContentAuthError("grant is not valid (unknown key id)", "GRANT_INVALID");
    const signature = Buffer.from(sig, "base64url");
    if (signature.length !== 64 || !verify(null, Buffer.from(`${TOKEN_VERSION}.${kid}.${body}`), key, signature)) {
      throw new ContentAuthError("grant is not valid", "GRANT_INVALID");
    }
    try {
      return { claims: claimsSchema.parse(JSON.parse(Buffer.from(body, "base64url").toString("utf8"))) as GrantClaims, kid };
    } catch {
      throw new ContentAuthError("grant is not valid", "GRANT_INVALID");
    }
  }
}

/** Signs grants with the manager's private keys (and verifies them like a node). */
export class GrantSigner extends GrantVerifier {
  private readonly privateKey: KeyObject;
  private readonly active: string;

  constructor(keys: GrantPrivateKey[], now: () => number = Date.now) {
    super(publicGrantKeys(keys), now);
    this.active = (keys[0] as GrantPrivateKey).id;
    this.privateKey = privateKeyFromSeed((keys[0] as GrantPrivateKey).privateKey);
  }

  /** A fresh grant for these claims (jti is generated when absent). */
  sign(c: Omit<GrantClaims, "jti"> & { jti?: string }): { token: Buffer; claims: GrantClaims } {
    const claims: GrantClaims = { jti: c.jti ?? randomBytes(12).toString("base64url"), sub: c.sub, scope: c.scope, exp: c.exp, ...(c.cid ? { cid: c.cid } : {}) };
    const body = Buffer.from(JSON.stringify(claims)).toString("base64url");
    const head = `${TOKEN_VERSION}.${this.active}.${body}`;
    const sig = sign(null, Buffer.from(head), this.privateKey).toString("base64url");
    return { token: Buffer.from(`${head}.${sig}`), claims };
  }

  /** A MANAGE grant valid for `ttlMs`. */
  manage(sub: string, ttlMs = 60_000): Buffer {
    return this.sign({ sub, scope: "manage", exp: this.now() + ttlMs }).token;
  }

  /** The access tag of one piece under a read grant signed by this signer. */
  accessTag(claims: GrantClaims, pieceId: string): Buffer {
    return sign(null, tagMessage(claims.jti, pieceId), this.privateKey);
  }
}
