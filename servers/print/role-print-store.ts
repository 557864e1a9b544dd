/**
 * Role "print-store": the store the stateless print workers share (PrintStoreService)
 * and the printer-facing side that serves converted pages against a token
 * (PrintResultService). LevelDB holds session records, tokens with their creation time,
 * downloaded documents and conversion results; a sweeper removes abandoned sessions.
 */
import { join, resolve } from "node:path";
import { z } from "zod";
import { PrintResultServiceService } from "../../gen/switchyard/print/v1/print_result_service.js";
import type { RoleDefinition } from "../runtime/role.js";
import { bytes, duration, hostPort } from "../runtime/units.js";
import { badField } from "./errors.js";
import { relaxOldGenerationLimit } from "./heap.js";
import { PrintStoreServiceWithPageCodec } from "./page-codec.js";
import { sessionKey } from "./settings.js";
import { PrintStore } from "./store.js";

const schema = z.strictObject({
  tokenTtlMs: duration().default(3_600_000).describe("how long a printer token is accepted after it was issued; default 1h"),
  maxDocumentBytes: bytes().default(64 * 1024 * 1024).describe("largest document the store keeps; default 64MiB"),
  sessionTtlMs: duration().default(86_400_000).describe("sessions untouched this long are removed; default 24h"),
  sweepIntervalMs: duration().default(60_000).describe("how often abandoned sessions are looked for; default 1m"),
  publicAddress: hostPort().optional().describe("address printers dial for pages (in metafile URLs); default: the node's advertised address"),
  spoolDir: z.string().min(1).optional().describe("folder, on the filesystem of the data dir, that print workers on this host write rendered pages into (their printWorker.storeSpoolDir): PutPage then names the file and the store moves it into the result instead of receiving its bytes; default: none, pages come as bytes"),
  heapGrowingPercent: z.number().int().min(0).max(1000).default(150).describe("V8 heap growing factor in percent for this node's process: the old generation may grow this far above the live heap before a full GC (pages pass through the heap as short-lived buffers); 0 keeps V8's default; default 150"),
});

/** Resolved print-store options. */
export type PrintStoreConfig = z.output<typeof schema>;

const CHUNK = 1024 * 1024;

function pageToken(after: string): string {
  return after ? Buffer.from(after).toString("base64url") : "";
}

function fromPageToken(t: string): string {
  if (!t) return "";
  const s = Buffer.from(t, "base64url").toString("utf8");
  if (!s || Buffer.from(s).toString("base64url") !== t) throw badField("page_token", "not a token from a previous response");
  return s;
}

/** The print-store role. */
export const printStoreRole: RoleDefinition<PrintStoreConfig> = {
  role: "print-store",
  summary: "print sessions, tokens, downloaded documents and converted pages (LevelDB)",
  configSchema: schema,
  create: async (ctx) => {
    const cfg = ctx.config.roleConfig;
    // Every page passes through this heap as a short-lived buffer (see heap.ts).
    relaxOldGenerationLimit(cfg.heapGrowingPercent);
    const store = new PrintStore(ctx.store, {
      tokenTtlMs: cfg.tokenTtlMs,
      maxDocumentBytes: cfg.maxDocumentBytes,
      sessionTtlMs: cfg.sessionTtlMs,
      now: Date.now,
      pagesDir: join(ctx.config.dataDir, "print-pages"),
      ...(cfg.spoolDir ? { spoolDir: resolve(cfg.spoolDir) } : {}),
    });
    let sweeper: NodeJS.Timeout | undefined;
    // PutPage's page is read as a view into the received message, not copied (page-codec.ts).
    const storeService = ctx.implement(PrintStoreServiceWithPageCodec, {
      createSession: async (req) => {
        const key = sessionKey(req.session);
        if (!req.tokenCreateTime) throw badField("token_create_time", "required");
        const r = await store.createSession(key, req.session as NonNullable<typeof req.session>, req.token, req.tokenCreateTime.getTime());
        return { session: r.session, tokenExpireTime: new Date(r.tokenExpiresAt) };
      },
      getSession: async (req) => ({ session: await store.getSession(sessionKey(req.session)) }),
      listSessions: async (req) => {
        const limit = Math.min(req.pageSize || 100, 1000);
        const r = await store.listSessions(fromPageToken(req.pageToken), limit);
        return { sessions: r.sessions, nextPageToken: pageToken(r.next) };
      },
      putDocument: async (requests) => {
        const it = requests[Symbol.asyncIterator]();
        const first = await it.next();
        if (first.done || first.value.part?.$case !== "session") throw badField("session", "the first message must carry the session");
        const key = sessionKey(first.value.part.value);
        const chunks = (async function* () {
          for (;;) {
            const m = await it.next();
            if (m.done) return;
            if (m.value.part?.$case !== "chunk") throw badField("chunk", "only the first message may carry the session");
            yield m.value.part.value;
          }
        })();
        const s = await store.putDocument(key, chunks);
        return { document: s.document };
      },
      getDocument: async (req, sink) => {
        const key = sessionKey(req.session);
        let buf: Buffer[] = [];
        let size = 0;
        for await (const c of store.getDocument(key)) {
          buf.push(c);
          size += c.length;
          if (size >= CHUNK) {
            await sink.send({ chunk: Buffer.concat(buf) });
            buf = [];
            size = 0;
          }
        }
        if (size) await sink.send({ chunk: Buffer.concat(buf) });
      },
      deleteDocument: async (req) => ({ deleted: await store.deleteDocument(sessionKey(req.session)) }),
      createResult: async (req) => ({ metafileUrl: await store.createResult(sessionKey(req.session), req.resultId, req.pageCount, req.colorMode) }),
      putPage: async (req) => ({ page: await store.putPage(req.resultId, req.pageNumber, req.jpeg, req.widthPx, req.heightPx, req.dpi, req.spoolFile) }),
      finishResult: async (req) => ({ metafile: await store.finishResult(req.resultId, req.failed) }),
      deleteSession: async (req) => ({ recordsDeleted: await store.deleteSession(sessionKey(req.session)) }),
    });
    const resultService = ctx.implement(PrintResultServiceService, {
      getMetafile: async (req) => ({ metafile: await store.getMetafile(req.resultId, req.token) }),
      watchMetafile: async (req, sink, call) => {
        for await (const m of store.watchMetafile(req.resultId, req.token, call.signal)) await sink.send({ metafile: m });
      },
      getPage: async (req) => store.getPage(req.resultId, req.token, req.pageNumber),
    });
    return {
      services: [storeService, resultService],
      store,
      load: () => ({ figures: {} }),
      start: (advertised) => {
        store.address = cfg.publicAddress ?? advertised;
        sweeper = setInterval(() => {
          store.sweep().then(
            (n) => n && ctx.log.info({ removed: n }, "abandoned print sessions removed"),
            (err: unknown) => ctx.log.warn({ err }, "print session sweep failed"),
          );
        }, cfg.sweepIntervalMs);
        sweeper.unref();
      },
      stop: async () => {
        if (sweeper) clearInterval(sweeper);
      },
    };
  },
};
