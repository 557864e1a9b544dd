/**
 * Pass-on commands: `switchyard app install|update|expire|ls|invoke`, `switchyard passon
 * tree`, `switchyard billing USER`. Defaults target the default cluster (local-1 at 7442,
 * center-1 at 7441).
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import Table from "cli-table3";
import { describeError } from "../../../clients/grpc/call.js";
import { AppState, MaintenanceClient, PassonClient, QueuedCommandKind, type InstalledApp } from "../../../clients/passon/index.js";
import { parseDurationMs } from "../../../servers/runtime/units.js";
import { readModule } from "../../../servers/passon/index.js";
import { clientSettings } from "../settings.js";

const LOCAL = "127.0.0.1:7442";
const CENTER = "127.0.0.1:7441";

function fail(err: unknown): void {
  process.stderr.write(`switchyard: ${describeError(err)}\n`);
  process.exitCode = 1;
}

function appRow(a: InstalledApp): string[] {
  return [a.name, String(a.version), a.previousVersion ? String(a.previousVersion) : "-", AppState[a.state] ?? "?", a.notAfter?.toISOString() ?? "-", a.keyId, `${a.moduleBytes} B`];
}

const APP_HEAD = ["app", "version", "previous", "state", "lease ends", "signed by", "size"];

/** Registers the pass-on commands. */
export function registerPasson(program: Command): void {
  const app = program.command("app").description("pass-on applications: install, update, expire, list, invoke");
  for (const verb of ["install", "update"]) {
    app
      .command(`${verb} <name> <module>`)
      .description(`${verb} an app (a .wasm file or demo:NAME) on a node, signed by the center`)
      .requiredOption("--node <id>", "target node: the center itself or one of its children")
      .requiredOption("--version <n>", "version (greater than the installed one)")
      .option("--center <host:port>", "center to ask", CENTER)
      .option("--lease <duration>", "lease, e.g. 30d", "30d")
      .option("--time-limit <duration>", "per-invocation time limit")
      .option("--memory-pages <n>", "memory limit in 64 KiB pages")
      .option("--queue", "if the child is offline, have the center deliver it when the child reconnects")
      .action(async (name: string, moduleRef: string, o: { node: string; version: string; center: string; lease: string; timeLimit?: string; memoryPages?: string; queue?: boolean }) => {
        const m = new MaintenanceClient(o.center, clientSettings());
        try {
          const module = moduleRef.startsWith("demo:") ? readModule(moduleRef) : readFileSync(moduleRef);
          const timeLimitMs = o.timeLimit ? parseDurationMs(o.timeLimit) : undefined;
          const opts = {
            nodeId: o.node,
            name,
            version: Number(o.version),
            module,
            leaseMs: parseDurationMs(o.lease) ?? 30 * 86_400_000,
            ...(timeLimitMs !== undefined ? { timeLimitMs } : {}),
            ...(o.memoryPages ? { memoryPages: Number(o.memoryPages) } : {}),
          };
          const res = o.queue ? await m.installOrQueue(opts) : { app: await m.install(opts), queued: false };
          if (!res.app) {
            process.stdout.write(`${o.node} is offline: ${verb} of ${name} v${opts.version} queued at the center until it reconnects\n`);
            return;
          }
          const t = new Table({ head: APP_HEAD });
          t.push(appRow(res.app));
          process.stdout.write(t.toString() + "\n");
        } catch (err) {
          fail(err);
        } finally {
          m.close();
        }
      });
  }
  app
    .command("expire <name>")
    .description("end an app's lease on a node now")
    .requiredOption("--node <id>", "target node")
    .option("--center <host:port>", "center to ask", CENTER)
    .option("--queue", "if the child is offline, have the center deliver it when the child reconnects")
    .action(async (name: string, o: { node: string; center: string; queue?: boolean }) => {
      const m = new MaintenanceClient(o.center, clientSettings());
      try {
        const res = o.queue ? await m.expireOrQueue(o.node, name) : { app: await m.expire(o.node, name), queued: false };
        const a = res.app;
        if (!a) {
          process.stdout.write(`${o.node} is offline: expiry of ${name} queued at the center until it reconnects\n`);
          return;
        }
        process.stdout.write(`${a.name} v${a.version} on ${o.node}: ${AppState[a.state]}\n`);
      } catch (err) {
        fail(err);
      } finally {
        m.close();
      }
    });
  app
    .command("ls")
    .description("apps a user may use through a node, and where each is served")
    .requiredOption("--user <name>", "user")
    .option("--password <pw>", "password (or SWITCHYARD_PASSWORD)")
    .option("--target <host:port>", "node to ask (the user's local)", LOCAL)
    .action(async (o: { user: string; password?: string; target: string }) => {
      const c = new PassonClient(o.target, clientSettings());
      try {
        await c.signOn(o.user, o.password ?? process.env["SWITCHYARD_PASSWORD"] ?? "");
        const res = await c.listApps();
        const t = new Table({ head: ["app", "version", "served by", "hops", "lease ends"] });
        for (const a of res.apps) t.push([a.name, a.version, a.servedBy, a.distance, a.notAfter?.toISOString() ?? "-"]);
        process.stdout.write(t.toString() + "\n");
        if (res.parentUnreachable) process.stdout.write("parent unreachable: apps served above are missing\n");
      } catch (err) {
        fail(err);
      } finally {
        c.close();
      }
    });
  app
    .command("invoke <name> [request]")
    .description("sign on and invoke an app through a node; prints the response and where it was served")
    .requiredOption("--user <name>", "user")
    .option("--password <pw>", "password (or SWITCHYARD_PASSWORD)")
    .option("--target <host:port>", "node to call (the user's local)", LOCAL)
    .action(async (name: string, request: string | undefined, o: { user: string; password?: string; target: string }) => {
      const c = new PassonClient(o.target, clientSettings());
      try {
        await c.signOn(o.user, o.password ?? process.env["SWITCHYARD_PASSWORD"] ?? "");
        const res = await c.invoke(name, request ?? "");
        process.stdout.write(`${res.response.toString()}\n`);
        const ms = res.execTime ? Number(res.execTime.seconds) * 1000 + res.execTime.nanos / 1e6 : 0;
        process.stderr.write(`served by ${res.servedBy} (v${res.version}, ${ms.toFixed(2)} ms) via ${res.hops.map((h) => h.nodeId).join(" → ")}; billed as ${res.recordId}\n`);
      } catch (err) {
        fail(err);
      } finally {
        c.close();
      }
    });

  program
    .command("passon")
    .description("pass-on hierarchy")
    .command("tree")
    .description("the center, its children and their descendants with their state")
    .option("--center <host:port>", "center to ask", CENTER)
    .action(async (o: { center: string }) => {
      const m = new MaintenanceClient(o.center, clientSettings());
      try {
        const res = await m.children();
        const t = new Table({ head: ["node", "role", "state", "last report", "apps", "queued records", "queued diffs", "queued commands", "delegation until"] });
        const apps = (list: InstalledApp[]): string => list.map((a) => `${a.name}@${a.version}${a.state === AppState.EXPIRED ? "(expired)" : ""}`).join(" ");
        if (res.self) t.push([res.self.nodeId, res.self.role, res.parent ? (res.parentConnected ? "online (parent linked)" : "online (parent unreachable)") : "online (top)", "-", apps(res.self.apps), "-", "-", "-", "-"]);
        for (const c of res.children) {
          t.push(["  " + c.nodeId, c.role, c.online ? "online" : "OFFLINE", c.lastReport?.toISOString() ?? "never", apps(c.apps), String(c.queuedRecords), String(c.queuedDiffs), String(c.queuedCommands), c.delegationNotAfter?.toISOString() ?? "-"]);
        }
        process.stdout.write(t.toString() + "\n");
        // How the commands queued for offline children ended once delivered (newest first).
        for (const c of res.children) {
          for (const q of c.queuedOutcomes) {
            const what = q.kind === QueuedCommandKind.INSTALL ? `install ${q.app} v${q.version}` : `expire ${q.app}`;
            const how = q.applied ? "applied" : `REFUSED ${q.errorReason}: ${q.errorMessage}`;
            process.stdout.write(`${c.nodeId}: queued ${what} (${q.queuedAt?.toISOString() ?? "?"}) → ${how} at ${q.answeredAt?.toISOString() ?? "?"}\n`);
          }
        }
      } catch (err) {
        fail(err);
      } finally {
        m.close();
      }
    });

  program
    .command("billing <user>")
    .description("a user's usage per app and serving node, as counted at a center")
    .option("--center <host:port>", "center to ask", CENTER)
    .action(async (user: string, o: { center: string }) => {
      const m = new MaintenanceClient(o.center, clientSettings());
      try {
        const res = await m.billing(user);
        const t = new Table({ head: ["app", "served by", "calls", "exec ms", "bytes in", "bytes out"] });
        for (const l of [...res.lines, ...(res.total ? [res.total] : [])]) {
          t.push([l.app === "*" ? "total" : l.app, l.nodeId === "*" ? "" : l.nodeId, String(l.calls), (Number(l.execMicros) / 1000).toFixed(2), String(l.bytesIn), String(l.bytesOut)]);
        }
        process.stdout.write(t.toString() + "\n");
      } catch (err) {
        fail(err);
      } finally {
        m.close();
      }
    });
}
