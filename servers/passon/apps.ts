/**
 * The app registry of a node: which signed WebAssembly apps are installed, their leases,
 * the previous version kept for rollback, and the compiled modules ready to run.
 *
 * Install/update = verify signature (self or ancestor key) → static ABI check → compile →
 * run `selftest` in the sandbox → only then switch (atomically in the store). Anything that
 * fails leaves the running version untouched: that is the rollback.
 */
import { createHash } from "node:crypto";
import type { Collection, NodeStore } from "../runtime/store.js";
import { InvalidArgumentError, NotFoundError } from "../runtime/errors.js";
import type { AppBundle, InstalledApp } from "../../gen/switchyard/passon/v1/app.js";
import { AppState } from "../../gen/switchyard/passon/v1/app.js";
import { DOMAIN, LoadCheckError, SignatureError, badField } from "./errors.js";
import type { NodeKey, TrustDirectory } from "./keys.js";
import type { Sandbox } from "./sandbox.js";
import { inspectModule, ModuleShapeError } from "./wasm-inspect.js";
import { durationToMs, msToDuration } from "../../clients/grpc/duration.js";

/** App names: lower-case letters, digits and '-'. */
export const APP_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** Largest module accepted. */
export const MAX_MODULE_BYTES = 8 * 1024 * 1024;

/** Limits that apply when a bundle sets none, and the ceiling it may ask for. */
export interface AppLimits {
  defaultTimeLimitMs: number;
  defaultMemoryPages: number;
  maxMemoryPages: number;
  maxTimeLimitMs: number;
}

interface VersionMeta {
  version: number;
  notAfter: number;
  keyId: string;
  signatureB64: string;
  sha256: string;
  size: number;
  timeLimitMs: number;
  memoryPages: number;
  minPages: number;
}

interface AppRecord {
  name: string;
  current: VersionMeta;
  previous?: VersionMeta;
  /** Set by an Expire command: the app stops running before its lease ends. */
  expiredAt?: number;
}

/** An app ready to run. */
export interface RunnableApp {
  name: string;
  meta: VersionMeta;
  module: WebAssembly.Module;
  /** The module imports data_get or data_put (otherwise the user's data need not be loaded). */
  usesData: boolean;
}

/** True when the module imports a host call that reads or writes the user's data. */
function importsData(module: WebAssembly.Module): boolean {
  return WebAssembly.Module.imports(module).some((i) => i.module === "env" && (i.name === "data_get" || i.name === "data_put"));
}

/** The bytes a bundle's signature covers. */
export function canonicalBundle(b: { name: string; version: number; sha256: string; notAfter: number; timeLimitMs: number; memoryPages: number }): Buffer {
  return Buffer.from(`switchyard.passon.app.v1\n${b.name}\n${b.version}\n${b.sha256}\n${b.notAfter}\n${b.timeLimitMs}\n${b.memoryPages}\n`);
}

/** Signs a module into a bundle with this node's key. */
export function signBundle(key: NodeKey, a: { name: string; version: number; module: Uint8Array; notAfter: number; timeLimitMs: number; memoryPages: number }): AppBundle {
  const sha256 = createHash("sha256").update(a.module).digest("hex");
  const signature = key.sign(canonicalBundle({ ...a, sha256 }));
  return {
    name: a.name,
    version: a.version,
    module: Buffer.from(a.module),
    notAfter: new Date(a.notAfter),
    keyId: key.entry.keyId,
    signature,
    timeLimit: msToDuration(a.timeLimitMs),
    memoryPages: a.memoryPages,
  };
}

/** The node's installed apps. */
export class AppRegistry {
  private readonly records: Collection<AppRecord>;
  private readonly modules: Collection<Buffer>;
  private readonly loaded = new Map<string, { record: AppRecord; module: WebAssembly.Module; usesData: boolean }>();
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(
    store: NodeStore,
    private readonly trust: TrustDirectory,
    private readonly sandbox: Sandbox,
    private readonly limits: AppLimits,
    private readonly now: () => number = Date.now,
  ) {
    this.records = store.collection<AppRecord>("passon-apps");
    this.modules = store.collection<Buffer>("passon-modules", { encoding: "buffer" });
    this.store = store;
  }
  private readonly store: NodeStore;

  /** Loads installed apps from the store, re-verifying each signature. */
  async open(): Promise<void> {
    for await (const [name, record] of this.records.entries()) {
      const bytes = await this.modules.get(`${name}@${record.current.version}`);
      if (!bytes || createHash("sha256").update(bytes).digest("hex") !== record.current.sha256) continue;
      if (!this.trust.verifyBundle(record.current.keyId, canonicalBundle({ name, ...record.current }), Buffer.from(record.current.signatureB64, "base64"))) continue;
      const module = new WebAssembly.Module(bytes);
      this.loaded.set(name, { record, module, usesData: importsData(module) });
    }
  }

  private serial<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(name) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    this.locks.set(name, next.catch(() => undefined));
    return next;
  }

  /**
   * Installs or updates from a signed bundle. Throws SignatureError, LoadCheckError or
   * InvalidArgumentError; on any failure the running version is unchanged.
   */
  install(b: AppBundle): Promise<InstalledApp> {
    return this.serial(b.name, async () => {
      if (!APP_NAME.test(b.name)) throw badField("name", "lower-case letters, digits and '-', 1 to 63 characters", "APP_NAME_INVALID");
      if (!Number.isInteger(b.version) || b.version < 1) throw badField("version", "must be a positive integer", "APP_VERSION_INVALID");
      if (b.module.length === 0 || b.module.length > MAX_MODULE_BYTES) throw badField("module", `must be 1 byte to ${MAX_MODULE_BYTES} bytes`, "APP_MODULE_SIZE");
      const notAfter = b.notAfter?.getTime() ?? 0;
      const timeLimitMs = durationToMs(b.timeLimit, 0) || this.limits.defaultTimeLimitMs;
      const memoryPages = b.memoryPages || this.limits.defaultMemoryPages;
      const sha256 = createHash("sha256").update(b.module).digest("hex");
      if (!b.keyId || b.signature.length === 0) throw new SignatureError(b.name, "the bundle is not signed");
      if (!this.trust.verifyBundle(b.keyId, canonicalBundle({ name: b.name, version: b.version, sha256, notAfter, timeLimitMs, memoryPages }), b.signature)) {
        throw new SignatureError(b.name, `signature does not verify with a trusted key (key ${b.keyId}); the module or its terms were altered or the signer is not an ancestor`);
      }
      if (notAfter <= this.now()) throw new SignatureError(b.name, `its lease ended at ${new Date(notAfter).toISOString()}`);
      const existing = this.loaded.get(b.name)?.record ?? (await this.records.get(b.name));
      if (existing && b.version <= existing.current.version && !(b.version === existing.current.version && sha256 === existing.current.sha256)) {
        throw new InvalidArgumentError(`app "${b.name}" v${b.version} is not newer than the installed v${existing.current.version}`, {
          reason: "APP_VERSION_NOT_NEWER",
          domain: DOMAIN,
          fieldViolations: [{ field: "version", description: `must be greater than ${existing.current.version}` }],
        });
      }
      const running = existing?.current.version ?? 0;
      if (memoryPages > this.limits.maxMemoryPages) throw new LoadCheckError(b.name, b.version, `asks for ${memoryPages} pages, the node allows ${this.limits.maxMemoryPages}`, running);
      if (timeLimitMs > this.limits.maxTimeLimitMs) throw new LoadCheckError(b.name, b.version, `asks for ${timeLimitMs} ms, the node allows ${this.limits.maxTimeLimitMs}`, running);
      let module: WebAssembly.Module;
      let minPages: number;
      try {
        minPages = inspectModule(b.module, memoryPages).memoryMinPages;
        module = new WebAssembly.Module(b.module);
      } catch (err) {
        const why = err instanceof ModuleShapeError ? `module ${err.message}` : `does not compile: ${(err as Error).message}`;
        throw new LoadCheckError(b.name, b.version, why, running);
      }
      const check = await this.sandbox.run(
        { module, minPages: Math.max(1, minPages), maxPages: memoryPages, entry: "selftest", request: new Uint8Array(0), data: new Map() },
        timeLimitMs,
      );
      if (check.kind !== "ok") throw new LoadCheckError(b.name, b.version, `selftest ${check.kind}: ${check.message}`, running);
      if (check.code !== 0) throw new LoadCheckError(b.name, b.version, `selftest returned ${check.code}`, running);
      const meta: VersionMeta = {
        version: b.version,
        notAfter,
        keyId: b.keyId,
        signatureB64: Buffer.from(b.signature).toString("base64"),
        sha256,
        size: b.module.length,
        timeLimitMs,
        memoryPages,
        minPages: Math.max(1, minPages),
      };
      const same = existing && existing.current.version === b.version;
      const record: AppRecord = { name: b.name, current: meta, ...(same ? (existing.previous ? { previous: existing.previous } : {}) : existing ? { previous: existing.current } : {}) };
      const batch = this.store.batch().put(this.records, b.name, record).put(this.modules, `${b.name}@${b.version}`, Buffer.from(b.module));
      // Keep only the running and the previous version's module.
      if (!same && existing?.previous) batch.del(this.modules, `${b.name}@${existing.previous.version}`);
      await batch.write();
      this.loaded.set(b.name, { record, module, usesData: importsData(module) });
      return this.describe(record);
    });
  }

  /** Ends an app's lease now. Throws NotFoundError when it is not installed. */
  expire(name: string): Promise<InstalledApp> {
    return this.serial(name, async () => {
      const entry = this.loaded.get(name);
      const record = entry?.record ?? (await this.records.get(name));
      if (!record) throw new NotFoundError(`app "${name}" is not installed here`, { reason: "APP_NOT_FOUND", domain: DOMAIN, metadata: { app: name } });
      const updated: AppRecord = { ...record, expiredAt: record.expiredAt ?? this.now() };
      await this.records.put(name, updated);
      if (entry) entry.record = updated;
      return this.describe(updated);
    });
  }

  /** The app when it may run now (installed, verified, inside its lease, not expired). */
  runnable(name: string): RunnableApp | undefined {
    const e = this.loaded.get(name);
    if (!e || !this.active(e.record)) return undefined;
    return { name, meta: e.record.current, module: e.module, usesData: e.usesData };
  }

  private active(r: AppRecord): boolean {
    return r.expiredAt === undefined && r.current.notAfter > this.now();
  }

  /** Every installed app as the contract describes it. */
  list(): InstalledApp[] {
    return [...this.loaded.values()].map((e) => this.describe(e.record)).sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Installed version of `name`, 0 when none. */
  versionOf(name: string): number {
    return this.loaded.get(name)?.record.current.version ?? 0;
  }

  private describe(r: AppRecord): InstalledApp {
    return {
      name: r.name,
      version: r.current.version,
      previousVersion: r.previous?.version ?? 0,
      state: this.active(r) ? AppState.ACTIVE : AppState.EXPIRED,
      notAfter: new Date(r.expiredAt !== undefined ? Math.min(r.expiredAt, r.current.notAfter) : r.current.notAfter),
      keyId: r.current.keyId,
      moduleSha256: r.current.sha256,
      moduleBytes: BigInt(r.current.size),
    };
  }
}
