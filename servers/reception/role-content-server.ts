/**
 * Role "content-server": holds a catalog in its store, serves items to clients holding a
 * ticket it verifies by itself, and streams its load to every configured reception.
 */
import { z } from "zod";
import { ContentServerServiceService } from "../../gen/switchyard/reception/v1/content_server_service.js";
import { msToDuration } from "../../clients/grpc/duration.js";
import type { RoleDefinition, RoleInstance } from "../runtime/role.js";
import { bytes, duration, hostPort } from "../runtime/units.js";
import { checkItemId, toCatalogItem } from "./catalog.js";
import { keyList } from "./config.js";
import { ContentServerCore } from "./content-server.js";
import { invalidField } from "./errors.js";
import { LoadReporter } from "./load-reporter.js";
import { sampleFile } from "./seed.js";

const seedSchema = z.strictObject({
  itemId: z.string().describe("catalog item id"),
  kind: z.enum(["text", "csv", "ppm", "binary"]).describe("kind of generated sample file"),
  bytes: bytes().describe("approximate size"),
  seed: z.string().default("switchyard").describe("generator seed; same seed, same bytes"),
});

const schema = z.strictObject({
  receptions: z.array(hostPort()).default([]).describe("reception addresses to report load to"),
  capacity: z.number().int().min(1).max(1_000_000).default(8).describe("most clients served + incoming at once; default 8"),
  ticketKeys: keyList("ticket key").describe("this server's ticket keys (derived from the reception master key): [{id, secret}]"),
  checkClientAddress: z.boolean().default(true).describe("refuse a ticket presented from another IP than it was issued to; default true"),
  clockSkew: duration().default(2_000).describe("tolerated clock skew on ticket windows; default 2s"),
  reportInterval: duration().default(1_000).describe("send a load report at least this often; default 1s"),
  reportMinGap: duration().default(50).describe("least time between two event-driven reports; default 50ms"),
  serveBytesPerSecond: bytes().default(0).describe("per-client rate limit when serving (0 = none); default 0"),
  chunkBytes: bytes().default(64 * 1024).describe("chunk size of stored items; default 64KiB"),
  maxItemBytes: bytes().default(1024 ** 3).describe("largest item accepted by PublishItem; default 1GiB"),
  seed: z.array(seedSchema).default([]).describe("sample items generated at start when absent"),
});

/** Resolved content-server options. */
export type ContentServerConfig = z.output<typeof schema>;

/** A running content server; tests reach the core through RunningNode.role. */
export interface ContentServerInstance extends RoleInstance {
  core: ContentServerCore;
}

/** The content-server role. */
export const contentServerRole: RoleDefinition<ContentServerConfig> = {
  role: "content-server",
  summary: "serves catalog items to clients holding a reception ticket; reports its load to receptions",
  configSchema: schema as unknown as z.ZodType<ContentServerConfig>,
  create: async (ctx) => {
    const c = ctx.config.roleConfig;
    const serverId = ctx.config.node.id;
    const core = new ContentServerCore(
      {
        serverId,
        capacity: c.capacity,
        keys: c.ticketKeys,
        checkClientAddress: c.checkClientAddress,
        clockSkewMs: c.clockSkew,
        serveBytesPerSecond: c.serveBytesPerSecond,
        chunkBytes: c.chunkBytes,
        maxItemBytes: c.maxItemBytes,
      },
      ctx.store,
      ctx.log,
    );
    const swept = await core.catalog.sweepOrphans();
    if (swept) ctx.log.info({ swept }, "removed chunks of unfinished publishes");
    await core.catalog.load();
    for (const s of c.seed) {
      checkItemId(s.itemId);
      if (await core.catalog.get(s.itemId)) continue;
      const { data, contentType } = sampleFile(s.kind, s.bytes, `${s.seed}:${s.itemId}`);
      await core.catalog.publish({ itemId: s.itemId, contentType, sizeBytes: data.length, sha256: new Uint8Array() }, [data] as never);
    }

    let advertised = ctx.config.node.advertise ?? ctx.config.node.listen;
    let cpuPrev = process.cpuUsage();
    let cpuAt = Date.now();
    const cpu = (): number => {
      const now = Date.now();
      const u = process.cpuUsage(cpuPrev);
      const cores = now > cpuAt ? (u.user + u.system) / 1000 / (now - cpuAt) : 0;
      if (now - cpuAt > 500) {
        cpuPrev = process.cpuUsage();
        cpuAt = now;
      }
      return cores;
    };
    const reporters = c.receptions.map(
      (r) =>
        new LoadReporter(
          r,
          {
            serverId,
            capacity: c.capacity,
            incarnation: core.incarnation,
            labels: ctx.config.node.labels,
            itemIds: () => core.catalog.ids(),
            load: () => core.load(cpu()),
          },
          () => advertised,
          ctx.channel,
          ctx.log,
          { intervalMs: c.reportInterval, minGapMs: c.reportMinGap },
        ),
    );
    core.on("change", () => reporters.forEach((r) => r.changed()));
    const runs: Promise<void>[] = [];

    const service = ctx.implement(ContentServerServiceService, {
      notifyTickets: async (requests, sink) => {
        // Synchronous per notice: nothing waits on the store, so notices never queue up.
        for await (const n of requests) sink.write(core.notices(n.tokens));
      },
      fetchContent: (req, sink, call) => core.fetch(req, sink, call),
      completeOrder: (req, call) => core.complete(req.token, req.clientId, call),
      publishItem: async (requests) => {
        const started = Date.now();
        const it = requests[Symbol.asyncIterator]();
        const first = await it.next();
        if (first.done || first.value.part?.$case !== "header") {
          throw invalidField("header", "the first message must be the header", "HEADER_REQUIRED");
        }
        const h = first.value.part.value;
        async function* chunks(): AsyncGenerator<Uint8Array> {
          for (;;) {
            const n = await it.next();
            if (n.done) return;
            if (n.value.part?.$case !== "chunk") throw invalidField("header", "only the first message may be a header", "HEADER_REQUIRED");
            yield n.value.part.value;
          }
        }
        const rec = await core.catalog.publish(
          { itemId: h.itemId, contentType: h.contentType, sizeBytes: Number(h.sizeBytes), sha256: h.sha256 },
          chunks(),
        );
        ctx.log.info({ itemId: rec.itemId, bytes: rec.sizeBytes }, "item published");
        const ids = await core.catalog.ids();
        reporters.forEach((r) => r.catalogChanged(ids));
        return { item: toCatalogItem(rec), took: msToDuration(Date.now() - started) };
      },
      listItems: async (req) => {
        const size = req.pageSize <= 0 ? 100 : Math.min(1000, req.pageSize);
        let after = "";
        if (req.pageToken) {
          after = Buffer.from(req.pageToken, "base64url").toString("utf8");
          if (!after) throw invalidField("page_token", "is not a token from ListItems", "INVALID_PAGE_TOKEN");
        }
        const page = await core.catalog.page(after, size + 1);
        const items = page.slice(0, size);
        const last = items[items.length - 1];
        return {
          items: items.map(toCatalogItem),
          nextPageToken: page.length > size && last ? Buffer.from(last.itemId).toString("base64url") : "",
        };
      },
    });

    const instance: ContentServerInstance = {
      core,
      services: [service],
      load: () => ({ figures: core.figures(), utilization: Math.min(1, core.occupancy / c.capacity) }),
      start: (address) => {
        advertised = address;
        for (const r of reporters) runs.push(r.run(ctx.shutdown));
      },
      stop: async () => {
        await Promise.allSettled(runs);
        reporters.forEach((r) => r.close());
        core.close();
      },
    };
    return instance;
  },
};
