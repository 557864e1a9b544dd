/**
 * `switchyard relay ...`: publish stdin lines into a stream, subscribe to a stream
 * (at the source or through a relay) printing frames, and show a relay's sessions.
 */
import { createInterface } from "node:readline";
import type { Command } from "commander";
import Table from "cli-table3";
import { describeError } from "../../../clients/grpc/call.js";
import { RelayClient, StreamSourceClient } from "../../../clients/relay/index.js";
import { StreamOrigin, UpstreamState } from "../../../clients/relay/index.js";
import { clientSettings } from "../settings.js";

const DEFAULT_SOURCE = "127.0.0.1:7430";
const DEFAULT_RELAY = "127.0.0.1:7431";

async function* stdinLines(): AsyncGenerator<Buffer> {
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) yield Buffer.from(line, "utf8");
}

function fail(err: unknown): void {
  process.stderr.write(`switchyard relay: ${describeError(err)}\n`);
  process.exitCode = 1;
}

/** Registers `relay publish|subscribe|sessions|streams`. */
export function registerRelay(program: Command): void {
  const relay = program.command("relay").description("live streams: publish, subscribe, relay sessions");

  relay
    .command("publish <stream>")
    .description("publish each line of stdin as one frame; the stream ends at EOF")
    .option("--to <host:port>", "source (or relay) to publish at", DEFAULT_SOURCE)
    .action(async (stream: string, opts: { to: string }) => {
      const c = new StreamSourceClient(opts.to, clientSettings());
      try {
        const res = await c.publish(stream, stdinLines());
        process.stderr.write(`published ${res.frames} frames (sequence ${res.firstSequence}..${res.lastSequence}) into ${stream}\n`);
      } catch (err) {
        fail(err);
      } finally {
        c.close();
      }
    });

  relay
    .command("subscribe <stream>")
    .description("print the frames of a stream, one per line (gaps and the end go to stderr)")
    .option("--via <host:port>", "subscribe through this relay instead of at the source")
    .option("--source <host:port>", "source to subscribe at when no --via is given", DEFAULT_SOURCE)
    .option("--as <id>", "subscriber id for usage records", `cli@${process.env["USER"] ?? "anonymous"}`)
    .option("--count <n>", "leave after this many frames", (v) => Number.parseInt(v, 10))
    .option("--hex", "print payloads as hex instead of text")
    .action(async (stream: string, opts: { via?: string; source: string; as: string; count?: number; hex?: boolean }) => {
      const target = opts.via ?? opts.source;
      const c = new StreamSourceClient(target, clientSettings());
      const ac = new AbortController();
      process.once("SIGINT", () => ac.abort());
      let frames = 0;
      try {
        for await (const ev of c.subscribe(stream, { subscriberId: opts.as, signal: ac.signal })) {
          if (ev.type === "started") process.stderr.write(`subscribed to ${stream} at ${target} from sequence ${ev.started.nextSequence}\n`);
          else if (ev.type === "gap") process.stderr.write(`gap: missed ${ev.gap.frames} frames (${ev.gap.firstSequence}..${ev.gap.lastSequence})\n`);
          else {
            const p = ev.frame.payload;
            process.stdout.write(`${opts.hex ? p.toString("hex") : p.toString("utf8")}\n`);
            if (opts.count !== undefined && ++frames >= opts.count) ac.abort();
          }
        }
        if (!ac.signal.aborted) process.stderr.write(`stream ${stream} ended\n`);
      } catch (err) {
        fail(err);
      } finally {
        c.close();
      }
    });

  relay
    .command("sessions")
    .description("a relay's upstream sessions, subscribers and what each received so far")
    .option("--relay <host:port>", "relay to ask", DEFAULT_RELAY)
    .option("--json", "print JSON instead of tables")
    .action(async (opts: { relay: string; json?: boolean }) => {
      const c = new RelayClient(opts.relay, clientSettings());
      try {
        const res = await c.listSessions({ deadline: Date.now() + 5000 });
        if (opts.json) {
          process.stdout.write(JSON.stringify(res, (_, v: unknown) => (typeof v === "bigint" ? Number(v) : v), 2) + "\n");
          return;
        }
        process.stdout.write(`relay ${res.relayId}, upstream ${res.upstream}, usage records awaiting acknowledgement: ${res.pendingUsageRecords}\n`);
        const t = new Table({ head: ["stream", "state", "subscriber", "peer", "joined", "frames", "bytes", "dropped", "buffered"] });
        for (const s of res.sessions) {
          const state = UpstreamState[s.state] ?? String(s.state);
          t.push([s.stream, state, { colSpan: 3, content: "(upstream, received)" }, String(s.framesReceived), String(s.bytesReceived), "", ""]);
          for (const sub of s.subscribers) {
            t.push(["", "", sub.subscriberId, sub.peer, sub.joinedAt?.toISOString() ?? "", String(sub.frames), String(sub.bytes), String(sub.droppedFrames), String(sub.bufferedFrames)]);
          }
        }
        process.stdout.write(res.sessions.length ? t.toString() + "\n" : "no upstream sessions\n");
      } catch (err) {
        fail(err);
      } finally {
        c.close();
      }
    });

  relay
    .command("streams")
    .description("the live streams of a source (or of a relay's upstream)")
    .option("--at <host:port>", "source or relay to ask", DEFAULT_SOURCE)
    .action(async (opts: { at: string }) => {
      const c = new StreamSourceClient(opts.at, clientSettings());
      try {
        const streams = await c.listStreams({ deadline: Date.now() + 5000 });
        const t = new Table({ head: ["stream", "origin", "next seq", "subscribers", "subscriptions", "frames", "delivered bytes"] });
        for (const s of streams) {
          t.push([s.name, StreamOrigin[s.origin] ?? String(s.origin), String(s.nextSequence), s.subscribers, String(s.subscriptionsTotal), String(s.framesPublished), String(s.deliveredBytes)]);
        }
        process.stdout.write(t.toString() + "\n");
      } catch (err) {
        fail(err);
      } finally {
        c.close();
      }
    });
}
