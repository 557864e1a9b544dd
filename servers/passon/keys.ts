/**
 * Node keys and the trust directory. Every pass-on node has one Ed25519 key (made at first
 * start, kept in its store, identified by "<node id>-<8 hex of the public key hash>"). It
 * signs the app bundles the node installs and the session tokens it issues.
 *
 * Trust: a node accepts app bundles signed by itself or an ancestor (keys its parent sent
 * in Welcome), and session tokens issued by itself, an ancestor, or a descendant (keys its
 * children sent in Hello/Status). Both directions are persisted so a node that restarts
 * while its parent is unreachable still verifies what it installed and issued.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import type { Collection, NodeStore } from "../runtime/store.js";

/** A public key with its id and owner. */
export interface PublicKeyEntry {
  keyId: string;
  nodeId: string;
  /** Raw 32-byte Ed25519 public key. */
  publicKey: Buffer;
}

interface StoredKey {
  keyId: string;
  privatePem: string;
  publicB64: string;
}

function rawPublic(key: KeyObject): Buffer {
  const jwk = key.export({ format: "jwk" });
  return Buffer.from(String(jwk.x), "base64url");
}

/** KeyObject for a raw Ed25519 public key. */
export function publicKeyObject(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(raw).toString("base64url") }, format: "jwk" });
}

/** The node's own signing key. */
export class NodeKey {
  private constructor(
    readonly entry: PublicKeyEntry,
    private readonly privateKey: KeyObject,
  ) {}

  /** Loads the node's key from its store, creating it on first start. */
  static async load(store: NodeStore, nodeId: string): Promise<NodeKey> {
    const col = store.collection<StoredKey>("passon-key");
    let stored = await col.get("self");
    if (!stored) {
      const { privateKey, publicKey } = generateKeyPairSync("ed25519");
      const pub = rawPublic(publicKey);
      stored = {
        keyId: `${nodeId}-${createHash("sha256").update(pub).digest("hex").slice(0, 8)}`,
        privatePem: privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
        publicB64: pub.toString("base64"),
      };
      await col.put("self", stored);
    }
    return new NodeKey(
      { keyId: stored.keyId, nodeId, publicKey: Buffer.from(stored.publicB64, "base64") },
      createPrivateKey(stored.privatePem),
    );
  }

  /** Ed25519 signature of `data`. */
  sign(data: Uint8Array): Buffer {
    return sign(null, data, this.privateKey);
  }
}

interface StoredTrust {
  nodeId: string;
  publicB64: string;
}

/** Which keys this node trusts for what. */
export class TrustDirectory {
  private readonly up = new Map<string, PublicKeyEntry>();
  private readonly down = new Map<string, PublicKeyEntry>();
  private readonly objects = new Map<string, KeyObject>();
  private readonly upCol: Collection<StoredTrust>;
  private readonly downCol: Collection<StoredTrust>;

  private constructor(
    store: NodeStore,
    readonly self: NodeKey,
  ) {
    this.upCol = store.collection<StoredTrust>("passon-trust-up");
    this.downCol = store.collection<StoredTrust>("passon-trust-down");
  }

  /** Loads the persisted directory. */
  static async load(store: NodeStore, self: NodeKey): Promise<TrustDirectory> {
    const t = new TrustDirectory(store, self);
    for await (const [keyId, v] of t.upCol.entries()) t.up.set(keyId, { keyId, nodeId: v.nodeId, publicKey: Buffer.from(v.publicB64, "base64") });
    for await (const [keyId, v] of t.downCol.entries()) t.down.set(keyId, { keyId, nodeId: v.nodeId, publicKey: Buffer.from(v.publicB64, "base64") });
    return t;
  }

  /** Replaces the ancestors' keys (from the parent's Welcome). */
  async setAncestors(keys: PublicKeyEntry[]): Promise<void> {
    for (const k of [...this.up.keys()]) if (!keys.some((x) => x.keyId === k)) await this.upCol.del(k);
    this.up.clear();
    for (const k of keys) {
      if (k.keyId === this.self.entry.keyId) continue;
      this.up.set(k.keyId, k);
      await this.upCol.put(k.keyId, { nodeId: k.nodeId, publicB64: k.publicKey.toString("base64") });
    }
  }

  /** Adds keys of descendants (from children's Hello/Status). */
  async addDescendants(keys: PublicKeyEntry[]): Promise<void> {
    for (const k of keys) {
      if (k.keyId === this.self.entry.keyId) continue;
      const known = this.down.get(k.keyId);
      if (known && known.publicKey.equals(k.publicKey)) continue;
      this.down.set(k.keyId, k);
      this.objects.delete(k.keyId);
      await this.downCol.put(k.keyId, { nodeId: k.nodeId, publicB64: k.publicKey.toString("base64") });
    }
  }

  /** This node's key and its ancestors' (what a child is told in Welcome). */
  selfAndAncestors(): PublicKeyEntry[] {
    return [this.self.entry, ...this.up.values()];
  }

  /** This node's key and its descendants' (what a parent is told in Hello/Status). */
  selfAndDescendants(): PublicKeyEntry[] {
    return [this.self.entry, ...this.down.values()];
  }

  private object(e: PublicKeyEntry): KeyObject {
    let o = this.objects.get(e.keyId);
    if (!o) {
      o = publicKeyObject(e.publicKey);
      this.objects.set(e.keyId, o);
    }
    return o;
  }

  /** True when `sig` over `data` verifies with key `keyId`, trusted for app bundles. */
  verifyBundle(keyId: string, data: Uint8Array, sig: Uint8Array): boolean {
    const e = keyId === this.self.entry.keyId ? this.self.entry : this.up.get(keyId);
    return e !== undefined && sig.length === 64 && verify(null, data, this.object(e), sig);
  }

  /** The issuing node when `sig` verifies with a key trusted for session tokens. */
  verifyToken(keyId: string, data: Uint8Array, sig: Uint8Array): string | undefined {
    const e = keyId === this.self.entry.keyId ? this.self.entry : (this.up.get(keyId) ?? this.down.get(keyId));
    if (!e || sig.length !== 64) return undefined;
    return verify(null, data, this.object(e), sig) ? e.nodeId : undefined;
  }
}
