/**
 * The print store's state on the node's LevelDB: session records, tokens with their
 * creation time, downloaded documents (chunked), conversion results (metafile + pages).
 * Every multi-record change is one atomic batch, acknowledged only after it is written.
 *
 * Page bodies (JPEG, 0.1–1 MB each) are files under `pagesDir/<resultId>/`, not LevelDB
 * values: LevelDB copied each one through its log, memtable, level-0 table (with a snappy
 * attempt on data that does not compress) and compactions, about half the store's CPU a
 * page. PutPage writes the file before the result record that lists it, so a page is in
 * the metafile only once its file is complete; a crash in between leaves a file no
 * metafile names, removed with its result directory when the session is completed or
 * swept.
 */
import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import { EventEmitter } from "node:events";
import { mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Collection, NodeStore } from "../runtime/store.js";
import { ColorMode, type SessionId } from "../../gen/switchyard/print/v1/print_job.js";
import type { Metafile, MetafilePage, Session } from "../../gen/switchyard/print/v1/print_store.js";
import { FailedPreconditionError } from "../runtime/errors.js";
import {
  badField,
  DocumentNotDownloadedError,
  DownloadErrors,
  PRINT_DOMAIN,
  ResultNotFoundError,
  SessionExistsError,
  SessionNotFoundError,
  TokenExpiredError,
  TokenInvalidError,
} from "./errors.js";
import { AlreadyExistsError, NotFoundError } from "../runtime/errors.js";

interface SessionRecord {
  jobId: string;
  printerId: string;
  createdAt: number;
  updatedAt: number;
  tokenCreatedAt: number;
  document?: { documentId: string; sizeBytes: number; sha256: string; chunkCount: number };
  resultId?: string;
}

interface TokenRecord {
  token: string;
  createdAt: number;
}

/** A metafile entry as stored (JSON: sizes as numbers). */
type StoredPage = Omit<MetafilePage, "sizeBytes"> & { sizeBytes: number };

const toPage = (p: StoredPage): MetafilePage => ({ ...p, sizeBytes: BigInt(p.sizeBytes) });

interface ResultRecord {
  sessionKey: string;
  token: string;
  tokenCreatedAt: number;
  pageCount: number;
  colorMode: ColorMode;
  pages: StoredPage[];
  complete: boolean;
  failed: boolean;
  createdAt: number;
}

/** Options of the print store. */
export interface PrintStoreOptions {
  /** How long a token is accepted after its creation, in ms. */
  tokenTtlMs: number;
  /** Largest document accepted, in bytes. */
  maxDocumentBytes: number;
  /** Sessions untouched this long are removed by the sweeper, in ms. */
  sessionTtlMs: number;
  /** Clock. */
  now: () => number;
  /** Folder of the page files (one folder per result). */
  pagesDir: string;
  /**
   * Folder on the same filesystem as pagesDir that workers on this host write rendered
   * pages into, for PutPage to move into a result by name (unset: pages come as bytes).
   */
  spoolDir?: string;
}

/** A spool file name: no folder, no dot files. */
const SPOOL_FILE = /^[A-Za-z0-9_-]{1,120}\.jpg$/;
/** Spool files older than this were left by a worker that died between render and PutPage. */
const SPOOL_ORPHAN_MS = 10 * 60_000;

const RESULT_ID = /^[A-Za-z0-9_-]{1,64}$/;
const pad = (n: number): string => n.toString().padStart(8, "0");

/** The print store. `address` is filled in once the node knows its advertised address. */
export class PrintStore {
  readonly sessions: Collection<SessionRecord>;
  readonly tokens: Collection<TokenRecord>;
  readonly chunks: Collection<Buffer>;
  readonly results: Collection<ResultRecord>;
  /** "host:port" used in metafile and page URLs. */
  address = "";
  private readonly events = new EventEmitter();
  private readonly locks = new Map<string, Promise<unknown>>();
  /**
   * Records of results being converted, as last written: PutPage reads its result once per
   * page, and a LevelDB get (thread pool, snappy, JSON of the growing page list) was ~5 % of
   * the store's CPU. Every change to a result goes through this class under the result's
   * lock, so the copy is the stored record; it is dropped when the result is finished or
   * deleted (and is memory only: a restarted store reads the record again).
   */
  private readonly writing = new Map<string, ResultRecord>();

  constructor(
    private readonly store: NodeStore,
    private readonly opts: PrintStoreOptions,
  ) {
    this.sessions = store.collection<SessionRecord>("print_sessions");
    this.tokens = store.collection<TokenRecord>("print_tokens");
    this.chunks = store.collection<Buffer>("print_doc_chunks", { encoding: "buffer" });
    this.results = store.collection<ResultRecord>("print_results");
    mkdirSync(opts.pagesDir, { recursive: true });
    if (opts.spoolDir) {
      mkdirSync(opts.spoolDir, { recursive: true });
      // A spool file is moved into its result with rename(2), which cannot cross filesystems.
      if (statSync(opts.spoolDir).dev !== statSync(opts.pagesDir).dev) throw new Error(`spool folder ${opts.spoolDir} is not on the filesystem of ${opts.pagesDir}`);
    }
    this.events.setMaxListeners(1000);
  }

  /** The folder of a result's page files (result ids are checked against RESULT_ID). */
  private resultDir(resultId: string): string {
    return join(this.opts.pagesDir, resultId);
  }

  private pageFile(resultId: string, page: number): string {
    return join(this.resultDir(resultId), `${pad(page)}.jpg`);
  }

  /** Runs `fn` with no other locked change to `key` in between. */
  private async locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(fn);
    this.locks.set(key, run);
    try {
      return await run;
    } finally {
      if (this.locks.get(key) === run) this.locks.delete(key);
    }
  }

  metafileUrl(resultId: string): string {
    return `printstore://${this.address}/results/${resultId}/metafile`;
  }

  pageUrl(resultId: string, page: number): string {
    return `printstore://${this.address}/results/${resultId}/pages/${page}`;
  }

  private toSession(r: SessionRecord): Session {
    return {
      session: { jobId: r.jobId, printerId: r.printerId },
      createTime: new Date(r.createdAt),
      updateTime: new Date(r.updatedAt),
      tokenCreateTime: new Date(r.tokenCreatedAt),
      ...(r.document ? { document: { ...r.document, sizeBytes: BigInt(r.document.sizeBytes) } } : {}),
      resultId: r.resultId ?? "",
    };
  }

  private async mustSession(key: string): Promise<SessionRecord> {
    const s = await this.sessions.get(key);
    if (!s) throw new SessionNotFoundError(key);
    return s;
  }

  /** CreateSession: the record and its token, atomically; refuses a live duplicate. */
  createSession(key: string, id: SessionId, token: string, tokenCreatedAt: number): Promise<{ session: Session; tokenExpiresAt: number }> {
    if (!token) throw badField("token", "required");
    return this.locked(key, async () => {
      if (await this.sessions.has(key)) throw new SessionExistsError(key);
      const now = this.opts.now();
      const rec: SessionRecord = { jobId: id.jobId, printerId: id.printerId, createdAt: now, updatedAt: now, tokenCreatedAt };
      await this.store.batch().put(this.sessions, key, rec).put(this.tokens, key, { token, createdAt: tokenCreatedAt }).write();
      return { session: this.toSession(rec), tokenExpiresAt: tokenCreatedAt + this.opts.tokenTtlMs };
    });
  }

  /** GetSession. */
  async getSession(key: string): Promise<Session> {
    return this.toSession(await this.mustSession(key));
  }

  /** Sessions in key order, after `after`. */
  async listSessions(after: string, limit: number): Promise<{ sessions: Session[]; next: string }> {
    const out: Session[] = [];
    let last = "";
    for await (const [k, v] of this.sessions.entries({ ...(after ? { gt: after } : {}), limit: limit + 1 })) {
      if (out.length === limit) return { sessions: out, next: last };
      out.push(this.toSession(v));
      last = k;
    }
    return { sessions: out, next: "" };
  }

  /** PutDocument: writes chunks as they arrive, then records the document in the session. */
  async putDocument(key: string, chunks: AsyncIterable<Buffer>): Promise<Session> {
    await this.mustSession(key);
    const documentId = randomUUID();
    const hash = createHash("sha256");
    let size = 0;
    let n = 0;
    try {
      for await (const c of chunks) {
        if (c.length === 0) continue;
        size += c.length;
        if (size > this.opts.maxDocumentBytes) throw DownloadErrors.tooLarge(this.opts.maxDocumentBytes);
        hash.update(c);
        await this.chunks.put(`${documentId}/${pad(n++)}`, c);
      }
      if (size === 0) throw badField("chunk", "the document is empty", "DOCUMENT_EMPTY");
      return await this.locked(key, async () => {
        const s = await this.mustSession(key);
        const batch = this.store.batch();
        if (s.document) await this.deleteChunks(s.document.documentId, batch);
        s.document = { documentId, sizeBytes: size, sha256: hash.digest("hex"), chunkCount: n };
        s.updatedAt = this.opts.now();
        await batch.put(this.sessions, key, s).write();
        return this.toSession(s);
      });
    } catch (err) {
      const batch = this.store.batch();
      await this.deleteChunks(documentId, batch);
      await batch.write();
      throw err;
    }
  }

  private async deleteChunks(documentId: string, batch: ReturnType<NodeStore["batch"]>): Promise<number> {
    let n = 0;
    for await (const [k] of this.chunks.prefixed(`${documentId}/`)) {
      batch.del(this.chunks, k);
      n++;
    }
    return n;
  }

  /** GetDocument: the session's document chunks in order. */
  async *getDocument(key: string): AsyncGenerator<Buffer> {
    const s = await this.mustSession(key);
    if (!s.document) throw new DocumentNotDownloadedError(key);
    for await (const [, v] of this.chunks.prefixed(`${s.document.documentId}/`)) yield v;
  }

  /** DeleteDocument. */
  deleteDocument(key: string): Promise<boolean> {
    return this.locked(key, async () => {
      const s = await this.mustSession(key);
      if (!s.document) return false;
      const batch = this.store.batch();
      await this.deleteChunks(s.document.documentId, batch);
      delete s.document;
      s.updatedAt = this.opts.now();
      await batch.put(this.sessions, key, s).write();
      return true;
    });
  }

  /** CreateResult: binds the session's token to a new result record. */
  createResult(key: string, resultId: string, pageCount: number, colorMode: ColorMode): Promise<string> {
    if (!RESULT_ID.test(resultId)) throw badField("result_id", "letters, digits, '-' or '_', at most 64");
    if (pageCount < 1) throw badField("page_count", "must be at least 1");
    return this.locked(key, async () => {
      const s = await this.mustSession(key);
      if (s.resultId) throw new AlreadyExistsError(`session ${key} has result ${s.resultId} already`, { domain: PRINT_DOMAIN, reason: "RESULT_EXISTS" });
      const tok = await this.tokens.get(key);
      if (!tok) throw new SessionNotFoundError(key);
      const now = this.opts.now();
      s.resultId = resultId;
      s.updatedAt = now;
      const r: ResultRecord = {
        sessionKey: key,
        token: tok.token,
        tokenCreatedAt: tok.createdAt,
        pageCount,
        colorMode: colorMode || ColorMode.COLOR,
        pages: [],
        complete: false,
        failed: false,
        createdAt: now,
      };
      await this.store.batch().put(this.sessions, key, s).put(this.results, resultId, r).write();
      this.writing.set(resultId, r);
      return this.metafileUrl(resultId);
    });
  }

  /**
   * PutPage: the page and its metafile entry, atomically, in order. The page is `jpeg`, or
   * `spoolFile`, the name of a file in the spool folder that is moved into the result.
   */
  async putPage(resultId: string, page: number, jpeg: Buffer, width: number, height: number, dpi: number, spoolFile = ""): Promise<MetafilePage> {
    let spooled: string | undefined;
    if (spoolFile) {
      if (!this.opts.spoolDir) {
        throw new FailedPreconditionError("this store has no spool folder (printStore.spoolDir): send the page's bytes", { domain: PRINT_DOMAIN, reason: "SPOOL_NOT_CONFIGURED" });
      }
      if (!SPOOL_FILE.test(spoolFile)) throw badField("spool_file", "a file name of letters, digits, '-' and '_' ending in .jpg");
      spooled = join(this.opts.spoolDir, spoolFile);
    } else if (jpeg.length === 0) throw badField("jpeg", "required");
    return this.locked(`r:${resultId}`, async () => {
      const r = await this.resultForWrite(resultId);
      if (!r) throw new ResultNotFoundError(resultId);
      if (page < 1 || page > r.pageCount) throw badField("page_number", `must be between 1 and ${r.pageCount}`);
      const last = r.pages.length;
      const prev = r.pages[last - 1];
      if (page === last && prev) {
        if (spooled) rmSync(spooled, { force: true });
        return toPage(prev);
      }
      if (page !== last + 1) {
        throw new FailedPreconditionError(`page ${page} is out of order; the next page is ${last + 1}`, { domain: PRINT_DOMAIN, reason: "PAGE_OUT_OF_ORDER" });
      }
      const size = spooled ? (statSync(spooled, { throwIfNoEntry: false })?.size ?? -1) : jpeg.length;
      if (size < 0) throw badField("spool_file", "no such file in the spool folder");
      if (size === 0) throw badField("spool_file", "the file is empty");
      const entry: StoredPage = { pageNumber: page, url: this.pageUrl(resultId, page), widthPx: width, heightPx: height, sizeBytes: size, dpi };
      // The file first, then the record that lists it (see the file comment). Written
      // synchronously: a page is one write(2) into the page cache (~0.5 MB, well under a
      // millisecond), and fs/promises' open, write and close were three trips through the
      // thread pool and the event loop a page. A spooled page is only renamed: its bytes
      // were written once, by the render process, and never pass through this process.
      if (r.pages.length === 0) mkdirSync(this.resultDir(resultId), { recursive: true });
      if (spooled) renameSync(spooled, this.pageFile(resultId, page));
      else writeFileSync(this.pageFile(resultId, page), jpeg);
      r.pages.push(entry);
      try {
        await this.results.put(resultId, r);
      } catch (err) {
        r.pages.pop(); // keep the cached record equal to the stored one
        throw err;
      }
      this.events.emit(resultId);
      return toPage(entry);
    });
  }

  /** A result's record for a change (call under the result's lock). */
  private async resultForWrite(resultId: string): Promise<ResultRecord | undefined> {
    const cached = this.writing.get(resultId);
    if (cached) return cached;
    const r = await this.results.get(resultId);
    if (r && !r.complete && !r.failed) this.writing.set(resultId, r);
    return r;
  }

  /** FinishResult. */
  finishResult(resultId: string, failed: boolean): Promise<Metafile> {
    return this.locked(`r:${resultId}`, async () => {
      const r = await this.resultForWrite(resultId);
      if (!r) throw new ResultNotFoundError(resultId);
      if (!failed && r.pages.length < r.pageCount) {
        throw new FailedPreconditionError(`only ${r.pages.length} of ${r.pageCount} pages are stored`, { domain: PRINT_DOMAIN, reason: "PAGES_MISSING" });
      }
      this.writing.delete(resultId);
      r.complete = !failed;
      r.failed = failed;
      await this.results.put(resultId, r);
      this.events.emit(resultId);
      return this.toMetafile(resultId, r);
    });
  }

  /** DeleteSession: the session and everything it owns. Returns records deleted. */
  deleteSession(key: string): Promise<number> {
    return this.locked(key, async () => {
      const s = await this.mustSession(key);
      // Hold the result's lock too, so a late PutPage cannot write the result back.
      return s.resultId ? this.locked(`r:${s.resultId}`, () => this.deleteAll(key, s)) : this.deleteAll(key, s);
    });
  }

  private async deleteAll(key: string, s: SessionRecord): Promise<number> {
    const batch = this.store.batch().del(this.sessions, key).del(this.tokens, key);
    let n = 2;
    if (s.document) n += await this.deleteChunks(s.document.documentId, batch);
    if (s.resultId) {
      batch.del(this.results, s.resultId);
      this.writing.delete(s.resultId);
      n++;
    }
    await batch.write();
    if (s.resultId) {
      // After the records: a page file outlives its record for a moment, never the reverse.
      const dir = this.resultDir(s.resultId);
      n += (await readdir(dir).catch(() => [])).length;
      await rm(dir, { recursive: true, force: true });
      this.events.emit(s.resultId);
    }
    return n;
  }

  /** Removes sessions not updated for sessionTtlMs (and orphaned spool files); returns how many sessions. */
  async sweep(): Promise<number> {
    this.sweepSpool();
    const cutoff = this.opts.now() - this.opts.sessionTtlMs;
    const stale: string[] = [];
    for await (const [k, v] of this.sessions.entries()) if (v.updatedAt < cutoff) stale.push(k);
    let n = 0;
    for (const k of stale) {
      await this.locked(k, async () => {
        const s = await this.sessions.get(k);
        if (s && s.updatedAt < cutoff) {
          await (s.resultId ? this.locked(`r:${s.resultId}`, () => this.deleteAll(k, s)) : this.deleteAll(k, s));
          n++;
        }
      });
    }
    return n;
  }

  /** Spool files a worker wrote but never handed over (it died in between). */
  private sweepSpool(): void {
    if (!this.opts.spoolDir) return;
    const cutoff = Date.now() - SPOOL_ORPHAN_MS;
    for (const f of readdirSync(this.opts.spoolDir)) {
      const p = join(this.opts.spoolDir, f);
      if ((statSync(p, { throwIfNoEntry: false })?.mtimeMs ?? Infinity) < cutoff) rmSync(p, { force: true });
    }
  }

  private toMetafile(resultId: string, r: ResultRecord): Metafile {
    return { resultId, pageCount: r.pageCount, pages: r.pages.map(toPage), complete: r.complete, failed: r.failed, colorMode: r.colorMode };
  }

  /** The result after checking the printer's token (the seed's Fig. 10). */
  private async authorised(resultId: string, token: string): Promise<ResultRecord> {
    if (!resultId) throw badField("result_id", "required");
    if (!token) throw badField("token", "required");
    const r = await this.results.get(resultId);
    if (!r) throw new ResultNotFoundError(resultId);
    const a = Buffer.from(token);
    const b = Buffer.from(r.token);
    if (a.length !== b.length || !timingSafeEqual(a, b)) throw new TokenInvalidError();
    const expiresAt = r.tokenCreatedAt + this.opts.tokenTtlMs;
    if (this.opts.now() >= expiresAt) throw new TokenExpiredError(new Date(expiresAt));
    return r;
  }

  /** GetMetafile for a printer. */
  async getMetafile(resultId: string, token: string): Promise<Metafile> {
    return this.toMetafile(resultId, await this.authorised(resultId, token));
  }

  /**
   * WatchMetafile: snapshots until complete/failed; NOT_FOUND if deleted meanwhile. Each
   * round listens for the next change *before* it reads the record: a change written while
   * the read is under way then wakes it (at worst for an unchanged snapshot), where listening
   * after the read would miss it and wait forever.
   */
  async *watchMetafile(resultId: string, token: string, signal: AbortSignal): AsyncGenerator<Metafile> {
    let wake: (() => void) | undefined;
    const listen = (): Promise<void> =>
      new Promise<void>((resolve) => {
        wake = (): void => {
          signal.removeEventListener("abort", wake as () => void);
          this.events.removeListener(resultId, wake as () => void);
          wake = undefined;
          resolve();
        };
        this.events.once(resultId, wake);
        signal.addEventListener("abort", wake, { once: true });
      });
    try {
      let changed = listen();
      let r = await this.authorised(resultId, token);
      for (;;) {
        yield this.toMetafile(resultId, r);
        if (r.complete || r.failed) return;
        await changed;
        if (signal.aborted) return;
        changed = listen();
        const next = await this.results.get(resultId);
        if (!next) throw new ResultNotFoundError(resultId);
        r = next;
      }
    } finally {
      // Ended early (refused token, consumer gone): leave no listener behind.
      wake?.();
    }
  }

  /** GetPage for a printer. */
  async getPage(resultId: string, token: string, page: number): Promise<{ page: MetafilePage; jpeg: Buffer }> {
    const r = await this.authorised(resultId, token);
    const entry = r.pages[page - 1];
    const jpeg = entry ? await this.readPage(resultId, page) : undefined;
    if (!entry || !jpeg) throw new NotFoundError(`page ${page} of ${resultId} is not converted (yet)`, { domain: PRINT_DOMAIN, reason: "PAGE_NOT_FOUND" });
    return { page: toPage(entry), jpeg };
  }

  private async readPage(resultId: string, page: number): Promise<Buffer | undefined> {
    try {
      return await readFile(this.pageFile(resultId, page));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      return undefined;
    }
  }

  /**
   * Page files on disk, an empty result folder counting as one (it should not outlive its
   * result either), and files waiting in the spool folder.
   */
  private pageFiles(): number {
    let n = this.opts.spoolDir ? readdirSync(this.opts.spoolDir).length : 0;
    for (const d of readdirSync(this.opts.pagesDir)) n += readdirSync(join(this.opts.pagesDir, d)).length || 1;
    return n;
  }

  /** Record counts per collection (tests and operators check cleanup with it). */
  async counts(): Promise<Record<string, number>> {
    return {
      sessions: await this.sessions.count(),
      tokens: await this.tokens.count(),
      documentChunks: await this.chunks.count(),
      results: await this.results.count(),
      pages: this.pageFiles(),
    };
  }
}

