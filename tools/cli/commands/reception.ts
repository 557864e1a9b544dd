/**
 * Reception commands: `order ITEM --out FILE`, `publish FILE --server ADDR`,
 * `reception servers`, `reception derive-key`.
 */
import { createReadStream, createWriteStream, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import type { Command } from "commander";
import Table from "cli-table3";
import { SingleBar } from "cli-progress";
import { describeError } from "../../../clients/grpc/call.js";
import { durationToMs } from "../../../clients/grpc/duration.js";
import { ContentServerClient, order, OrderError, ReceptionClient, ServerState } from "../../../clients/reception/index.js";
import { deriveServerKey, parseSecret } from "../../../servers/reception/index.js";
import type { ClusterEntry } from "../../cluster/launcher.js";
import { clientSettings } from "../settings.js";

/** The first node of `role` in the running cluster, or `fallback`. */
function clusterAddress(data: string, role: string, fallback: string): string {
  try {
    const state = JSON.parse(readFileSync(join(data, "cluster.json"), "utf8")) as { nodes: ClusterEntry[] };
    return state.nodes.find((n) => n.role === role)?.address ?? fallback;
  } catch {
    return fallback;
  }
}

/** Registers the reception commands. */
export function registerReception(program: Command): void {
  program
    .command("order")
    .description("order ITEM from the reception, wait for admission, download it to --out")
    .argument("<item>", "catalog item id")
    .requiredOption("--out <file>", "where to write the content")
    .option("--reception <host:port>", "reception address (default: the running cluster's)")
    .option("--client-id <id>", "who is ordering", process.env["USER"] ?? "cli")
    .option("--max-wait <seconds>", "give up after waiting this long", "600")
    .option("--data <dir>", "data folder of 'switchyard up'", "data")
    .action(async (item: string, opts: { out: string; reception?: string; clientId: string; maxWait: string; data: string }) => {
      const reception = opts.reception ?? clusterAddress(opts.data, "reception", "127.0.0.1:7410");
      const out = createWriteStream(opts.out);
      const ac = new AbortController();
      process.once("SIGINT", () => ac.abort(new Error("interrupted")));
      const bar = new SingleBar({ format: "  {bar} {percentage}% | {value}/{total} bytes | {eta_formatted} left", hideCursor: true });
      let started = false;
      try {
        const res = await order({
          reception,
          itemId: item,
          clientId: opts.clientId,
          settings: clientSettings(),
          signal: ac.signal,
          maxWaitMs: Number(opts.maxWait) * 1000,
          sink: (chunk) => new Promise<void>((resolve, reject) => out.write(chunk, (err) => (err ? reject(err) : resolve()))),
          onEvent: (e) => {
            if (e.type === "waiting") {
              const where = e.position !== undefined ? `${e.position} ahead of you, ` : "";
              const est = e.estimatedWaitMs !== undefined ? `estimated wait ${(e.estimatedWaitMs / 1000).toFixed(1)} s` : e.reason;
              process.stdout.write(`⏳ all servers busy (${where}${est}); retrying in ${(e.retryInMs / 1000).toFixed(1)} s\n`);
            } else if (e.type === "admitted") {
              // The terminal bell announces admission to someone who looked away.
              process.stdout.write(`\x07✓ admitted after ${(e.waitedMs / 1000).toFixed(1)} s: ${e.ticket.serverId} (${e.ticket.serverAddress})\n`);
            } else if (e.type === "progress") {
              if (!started) {
                bar.start(e.totalBytes, 0);
                started = true;
              }
              bar.update(e.bytes);
            }
          },
        });
        if (started) bar.stop();
        await new Promise<void>((r) => out.end(() => r()));
        process.stdout.write(`saved ${res.bytes} bytes to ${opts.out} (sha256 ${res.sha256.toString("hex").slice(0, 16)}…, fetched in ${(res.fetchMs / 1000).toFixed(1)} s)\n`);
      } catch (err) {
        if (started) bar.stop();
        out.destroy();
        const cause = err instanceof OrderError && err.cause ? ` — ${describeError(err.cause)}` : "";
        process.stderr.write(`switchyard order: ${(err as Error).message}${cause}\n`);
        process.exitCode = 1;
      }
    });

  program
    .command("publish")
    .description("publish FILE to a content server's catalog")
    .argument("<file>", "file to publish")
    .requiredOption("--server <host:port>", "content server address")
    .option("--item-id <id>", "catalog item id (default: the file name)")
    .option("--content-type <type>", "media type", "application/octet-stream")
    .action(async (file: string, opts: { server: string; itemId?: string; contentType: string }) => {
      const size = statSync(file).size;
      const cs = new ContentServerClient(opts.server, clientSettings());
      const bar = new SingleBar({ format: "  {bar} {percentage}% | {value}/{total} bytes", hideCursor: true });
      bar.start(size, 0);
      let sent = 0;
      async function* chunks(): AsyncGenerator<Uint8Array> {
        for await (const c of createReadStream(file, { highWaterMark: 64 * 1024 })) {
          sent += (c as Buffer).length;
          bar.update(sent);
          yield c as Buffer;
        }
      }
      try {
        const res = await cs.publish({ itemId: opts.itemId ?? basename(file), sizeBytes: size, contentType: opts.contentType }, chunks(), { deadline: Date.now() + 3_600_000 });
        bar.stop();
        process.stdout.write(`published ${res.item?.itemId} (${size} bytes, sha256 ${Buffer.from(res.item?.sha256 ?? []).toString("hex").slice(0, 16)}…)\n`);
      } catch (err) {
        bar.stop();
        process.stderr.write(`switchyard publish: ${describeError(err)}\n`);
        process.exitCode = 1;
      } finally {
        cs.close();
      }
    });

  const rec = program.command("reception").description("reception operator commands");
  rec
    .command("servers")
    .description("the reception's live table of content servers")
    .option("--reception <host:port>", "reception address (default: the running cluster's)")
    .option("--data <dir>", "data folder of 'switchyard up'", "data")
    .option("--json", "print JSON")
    .action(async (opts: { reception?: string; data: string; json?: boolean }) => {
      const rc = new ReceptionClient(opts.reception ?? clusterAddress(opts.data, "reception", "127.0.0.1:7410"), clientSettings());
      try {
        const rows = await rc.listServers({ deadline: Date.now() + 5000 });
        if (opts.json) {
          process.stdout.write(JSON.stringify(rows, (_k, v: unknown) => (typeof v === "bigint" ? Number(v) : v), 2) + "\n");
          return;
        }
        const t = new Table({ head: ["server", "address", "state", "served", "incoming", "pending", "capacity", "in flight", "mean hold", "rtt", "distance", "items"] });
        for (const s of rows) {
          const l = s.load;
          const hold = durationToMs(l?.meanHoldTime);
          const rtt = durationToMs(s.roundTripTime);
          t.push([s.serverId, s.address, ServerState[s.state] ?? "?", l?.clientsServed ?? "-", l?.clientsIncoming ?? "-", s.pendingTickets, l?.capacity ?? "-", String(l?.bytesInFlight ?? "-"), hold !== undefined ? `${(hold / 1000).toFixed(2)} s` : "-", rtt !== undefined ? `${rtt.toFixed(1)} ms` : "-", s.distance, s.itemIds.length]);
        }
        process.stdout.write(t.toString() + "\n");
      } catch (err) {
        process.stderr.write(`switchyard reception servers: ${describeError(err)}\n`);
        process.exitCode = 1;
      } finally {
        rc.close();
      }
    });
  rec
    .command("derive-key")
    .description("print the ticket key a content server holds (derived from the master key)")
    .requiredOption("--master <secret>", "reception master key (64 hex digits or base64)")
    .requiredOption("--server-id <id>", "content server node id")
    .option("--key-id <id>", "key id", "k1")
    .action((opts: { master: string; serverId: string; keyId: string }) => {
      const key = deriveServerKey(parseSecret(opts.master, "--master"), opts.keyId, opts.serverId);
      process.stdout.write(`ticketKeys:\n  - id: ${opts.keyId}\n    secret: ${key.toString("hex")}\n`);
    });
}
