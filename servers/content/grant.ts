/**
 * Grants: short-lived permissions signed by the manager with HMAC-SHA-256 under a key
 * id that the manager and the distribution nodes share, so a node verifies a grant by
 * itself. Token bytes: `v1.<kid>.<base64url(claims JSON)>.<base64url(mac)>`.
 *
 * A READ grant covers pieces through per-piece access tags (HMAC of grant id + piece
 * id), so the grant stays small however many pieces a manifest lists, and a node checks
 * that the piece asked for is one the manifest named. Keys have ids so they rotate: the
 * manager signs with its active key, nodes accept every configured key.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import { ContentAuthError, ContentPermissionError } from "./errors.js";

/** What a grant allows. */
export type GrantScope = "read" | "manage" | "node";

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

/** One grant key as configured. */
export interface GrantKey {
  id: string;
  secret: string;
}

/** Config schema of the grant keys (shared by manager and nodes). */
export const grantKeysSchema = z
  .array(
    z.strictObject({
      id: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, "1-32 letters, digits, '_' or '-'"),
      secret: z.string().min(32, "at least 32 characters"),
    }),
  )
  .min(1, "at least one grant key")
  .describe("HMAC keys for grants, shared by the manager and the nodes; the first one signs");

const TAG_BYTES = 16;
const claimsSchema = z.object({
  jti: z.string().max(64),
  sub: z.string().max(256),
  scope: z.enum(["read", "manage", "node"]),
  cid: z.string().max(64).optional(),
  exp: z.number(),
});

/** Signs and verifies grants with a set of keys. */
export class GrantSigner {
  private readonly keys: Map<string, Buffer>;
  private readonly active: string;

  constructor(keys: GrantKey[], private readonly now: () => number = Date.now) {
    if (!keys.length) throw new Error("no grant keys");
    this.keys = new Map(keys.map((k) => [k.id, Buffer.from(k.secret, "utf8")]));
    this.active = (keys[0] as GrantKey).id;
  }

  /** A fresh grant for these claims (jti is generated when absent). */
  sign(c: Omit<GrantClaims, "jti"> & { jti?: string }): { token: Buffer; claims: GrantClaims } {
    const claims: GrantClaims = { jti: c.jti ?? randomBytes(12).toString("base64url"), sub: c.sub, scope: c.scope, exp: c.exp, ...(c.cid ? { cid: c.cid } : {}) };
    const body = Buffer.from(JSON.stringify(claims)).toString("base64url");
    const head = `v1.${this.active}.${body}`;
    const mac = this.mac(this.active, head).toString("base64url");
    return { token: Buffer.from(`${head}.${mac}`), claims };
  }

  /** A MANAGE grant valid for `ttlMs`. */
  manage(sub: string, ttlMs = 60_000): Buffer {
    return this.sign({ sub, scope: "manage", exp: this.now() + ttlMs }).token;
  }

  /** The access tag of one piece under a read grant. */
  accessTag(claims: GrantClaims, pieceId: string, kid = this.active): Buffer {
    const key = this.keys.get(kid);
    if (!key) throw new Error(`unknown grant key ${kid}`);
    return createHmac("sha256", key).update(`tag\0${claims.jti}\0${pieceId}`).digest().subarray(0, TAG_BYTES);
  }

  /**
   * Verifies a token and returns its claims and key id. Throws ContentAuthError
   * (GRANT_MISSING, GRANT_INVALID, GRANT_EXPIRED) or ContentPermissionError (GRANT_SCOPE).
   */
  verify(token: Uint8Array | undefined, scopes: GrantScope[]): { claims: GrantClaims; kid: string } {
    if (!token || token.length === 0) throw new ContentAuthError("a grant is required", "GRANT_MISSING");
    if (token.length > 4096) throw new ContentAuthError("grant is not valid", "GRANT_INVALID");
    const text = Buffer.from(token).toString("utf8");
    const parts = text.split(".");
    if (parts.length !== 4 || parts[0] !== "v1") throw new ContentAuthError("grant is not valid", "GRANT_INVALID");
    const [, kid, body, mac] = parts as [string, string, string, string];
    if (!this.keys.has(kid)) throw new ContentAuthError("grant is not valid (unknown key id)", "GRANT_INVALID");
    const expected = this.mac(kid, `v1.${kid}.${body}`);
    const got = Buffer.from(mac, "base64url");
    if (got.length !== expected.length || !timingSafeEqual(got, expected)) throw new ContentAuthError("grant is not valid", "GRANT_INVALID");
    let claims: GrantClaims;
    try {
      claims = claimsSchema.parse(JSON.parse(Buffer.from(body, "base64url").toString("utf8"))) as GrantClaims;
    } catch {
      throw new ContentAuthError("grant is not valid", "GRANT_INVALID");
    }
    if (claims.exp <= this.now()) throw new ContentAuthError("grant has expired; ask the manager for a new manifest", "GRANT_EXPIRED");
    if (!scopes.includes(claims.scope)) throw new ContentPermissionError(`grant scope ${claims.scope} does not allow this call`, "GRANT_SCOPE");
    return { claims, kid };
  }

  /** Checks a piece's access tag under a verified read grant. */
  checkTag(claims: GrantClaims, kid: string, pieceId: string, tag: Uint8Array): void {
    const expected = this.accessTag(claims, pieceId, kid);
    if (tag.length !== expected.length || !timingSafeEqual(Buffer.from(tag), expected)) {
      throw new ContentPermissionError("the grant does not cover this piece", "ACCESS_TAG_INVALID");
    }
  }

  private mac(kid: string, text: string): Buffer {
    return createHmac("sha256", this.keys.get(kid) as Buffer).update(text).digest();
  }
}
