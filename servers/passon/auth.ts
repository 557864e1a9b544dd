/**
 * Users, password verifiers, delegations and session tokens.
 *
 * - A center knows its users from configuration (password or scrypt verifier, apps).
 * - It delegates them to each child for a limited time: verifiers (never passwords) and
 *   entitlements travel down in a Delegation command.
 * - A session token is "<base64url claims>.<base64url Ed25519 signature>", signed by the
 *   node that authenticated the user; claims: key id, user, apps, issuer, expiry.
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual } from "node:crypto";
import { promisify } from "node:util";
import { TokenError } from "./errors.js";
import type { NodeKey, TrustDirectory } from "./keys.js";

const scrypt = promisify(scryptCb) as (pw: string, salt: Buffer, len: number, opts: { N: number; r: number; p: number }) => Promise<Buffer>;

/** A user a node can authenticate. */
export interface UserRecord {
  user: string;
  /** "scrypt$N$r$p$<salt b64>$<hash b64>". */
  verifier: string;
  /** Entitled apps; "*" = all. */
  apps: string[];
}

/** Makes a scrypt verifier for a password. */
export async function makeVerifier(password: string, N = 16384): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(password, salt, 32, { N, r: 8, p: 1 });
  return `scrypt$${N}$8$1$${salt.toString("base64")}$${hash.toString("base64")}`;
}

/** True when `password` matches the verifier. */
export async function checkVerifier(verifier: string, password: string): Promise<boolean> {
  const parts = verifier.split("$");
  if (parts.length !== 6 || parts[0] !== "scrypt") return false;
  const [N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  if (!Number.isInteger(N) || N < 2 || N > 1 << 20 || !Number.isInteger(r) || r < 1 || r > 32 || !Number.isInteger(p) || p < 1 || p > 16) return false;
  const salt = Buffer.from(parts[4] ?? "", "base64");
  const expected = Buffer.from(parts[5] ?? "", "base64");
  if (expected.length !== 32) return false;
  const got = await scrypt(password, salt, 32, { N, r, p });
  return timingSafeEqual(got, expected);
}

/** What a session token says. */
export interface SessionClaims {
  /** Key id of the signer. */
  kid: string;
  /** User. */
  sub: string;
  /** Entitled apps ("*" = all). */
  apps: string[];
  /** Issuing node. */
  iss: string;
  /** Issued at, epoch ms. */
  iat: number;
  /** Expires at, epoch ms. */
  exp: number;
}

/** Issues and verifies session tokens. */
export class Sessions {
  private readonly cache = new Map<string, SessionClaims>();

  constructor(
    private readonly key: NodeKey,
    private readonly trust: TrustDirectory,
    private readonly now: () => number = Date.now,
  ) {}

  /** A signed token for `user`. */
  issue(user: string, apps: string[], ttlMs: number, notAfter = Infinity): { token: string; claims: SessionClaims } {
    const iat = this.now();
    const claims: SessionClaims = { kid: this.key.entry.keyId, sub: user, apps, iss: this.key.entry.nodeId, iat, exp: Math.min(iat + ttlMs, notAfter) };
    const body = Buffer.from(JSON.stringify(claims)).toString("base64url");
    return { token: `${body}.${this.key.sign(Buffer.from(body)).toString("base64url")}`, claims };
  }

  /** The token's claims; throws TokenError when forged, from an untrusted issuer, or expired. */
  verify(token: string): SessionClaims {
    let claims = this.cache.get(token);
    if (!claims) {
      const dot = token.indexOf(".");
      if (!token || dot < 1 || token.length > 8192) throw new TokenError("missing or malformed session token; sign on first", "TOKEN_INVALID");
      const body = token.slice(0, dot);
      let parsed: SessionClaims;
      try {
        parsed = JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as SessionClaims;
      } catch {
        throw new TokenError("malformed session token", "TOKEN_INVALID");
      }
      if (typeof parsed?.kid !== "string" || typeof parsed.sub !== "string" || !Array.isArray(parsed.apps) || typeof parsed.exp !== "number") {
        throw new TokenError("malformed session token", "TOKEN_INVALID");
      }
      const issuer = this.trust.verifyToken(parsed.kid, Buffer.from(body), Buffer.from(token.slice(dot + 1), "base64url"));
      if (!issuer || issuer !== parsed.iss) throw new TokenError("session token signature does not verify with a trusted key", "TOKEN_INVALID");
      claims = parsed;
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(token, claims);
    }
    if (claims.exp <= this.now()) throw new TokenError(`session token expired at ${new Date(claims.exp).toISOString()}; sign on again`, "TOKEN_EXPIRED");
    return claims;
  }
}

/** True when the claims entitle the user to `app`. */
export function entitled(claims: { apps: string[] }, app: string): boolean {
  return claims.apps.includes("*") || claims.apps.includes(app);
}
