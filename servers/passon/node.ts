/**
 * One pass-on node — local, center or upper center — built from configuration. The three
 * roles share this code: every node runs the apps installed on it and passes the rest to
 * its parent; nodes with children (centers) also take control channels, keep billing and
 * the master copy of user data, delegate sign-on and serve MaintenanceService.
 */
import { readFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { status as Status } from "@grpc/grpc-js";
import type { RoleContext, RoleInstance } from "../runtime/role.js";
import { packageRoot } from "../runtime/paths.js";
import { DeadlineExceededError, InvalidArgumentError, FailedPreconditionError, NotFoundError, rpcStatusFromError, SwitchyardError } from "../runtime/errors.js";
import { AppGatewayServiceService, type InvokeRequest, type InvokeResponse, type ListAppsResponse, type AvailableApp } from "../../gen/switchyard/passon/v1/app_gateway_service.js";
import { ControlServiceService, type PassOnResponse, type Command, type DiffResult, type Status as ChildStatus } from "../../gen/switchyard/passon/v1/control_service.js";
import { MaintenanceServiceService, InstallAppResponse } from "../../gen/switchyard/passon/v1/maintenance_service.js";
import { AppState, DiffOutcome, type ChildState, type Hop, type InstalledApp } from "../../gen/switchyard/passon/v1/app.js";
import { dialParent } from "../../clients/passon/index.js";
import { unary } from "../../clients/grpc/call.js";
import { parseRichError } from "../../clients/grpc/rich-error.js";
import { durationToMs } from "../../clients/grpc/duration.js";
import { APP_NAME, AppRegistry, signBundle, MAX_MODULE_BYTES, type RunnableApp } from "./apps.js";
import { checkVerifier, entitled, makeVerifier, Sessions, type UserRecord } from "./auth.js";
import { Children, type ChildSession } from "./children.js";
import type { AppEntry, CenterConfig, PassonConfig } from "./config.js";
import {
  AppErrorCode,
  AppMemoryLimitError,
  AppNotFoundError,
  AppTimeLimitError,
  AppTrappedError,
  BadCredentialsError,
  DOMAIN,
  ForwardedError,
  NotEntitledError,
  ParentUnreachableError,
  badField,
} from "./errors.js";
import { NodeKey, TrustDirectory } from "./keys.js";
import { convert, DataCache, GroupCommit, IdSource, Ledger, MasterData, Outbox, type StoredDiff, type StoredRecord, type UserData } from "./ledger.js";
import { Sandbox, SandboxBusyError } from "./sandbox.js";
import { keysFromProto, keysToProto, Uplink } from "./uplink.js";
import { PassOnLink, PassOnUnsupportedError } from "./passon-stream.js";
import { ResourceExhaustedError } from "../runtime/errors.js";

/** The three roles. */
export type PassonKind = "local" | "center" | "upper-center";

const MAX_REQUEST = 4 * 1024 * 1024;
const MAX_DEPTH = 16;
const PASS_ON_METHOD = "/switchyard.passon.v1.ControlService/PassOn";

interface Delegated {
  users: UserRecord[];
  notAfter: number;
}

/** Reads a configured module: "demo:NAME" or a file path. */
export function readModule(ref: string): Buffer {
  if (ref.startsWith("demo:")) {
    const name = ref.slice(5);
    if (!APP_NAME.test(name)) throw new Error(`bad demo app name ${name}`);
    return readFileSync(join(packageRoot(), "dist", "apps", "passon", `${name}.wasm`));
  }
  return readFileSync(isAbsolute(ref) ? ref : resolve(ref));
}

/** Builds a pass-on node of `kind`. */
export async function createPassonNode(kind: PassonKind, ctx: RoleContext<PassonConfig>): Promise<RoleInstance> {
  const cfg = ctx.config.roleConfig;
  const center = kind === "local" ? undefined : (cfg as CenterConfig);
  const nodeId = ctx.config.node.id;
  const log = ctx.log.child({ subsystem: "passon" });
  const store = ctx.store;
  const key = await NodeKey.load(store, nodeId);
  const trust = await TrustDirectory.load(store, key);
  const sessions = new Sessions(key, trust);
  const sandbox = new Sandbox({ workers: cfg.workers, maxQueue: cfg.maxQueue, log });
  const registry = new AppRegistry(store, trust, sandbox, {
    defaultTimeLimitMs: cfg.defaultTimeLimit,
    maxTimeLimitMs: cfg.maxTimeLimit,
    defaultMemoryPages: cfg.defaultMemoryPages,
    maxMemoryPages: cfg.maxMemoryPages,
  });
  await registry.open();
  const ids = await IdSource.open(store, nodeId);
  const outbox = kind === "local" ? new Outbox(store) : undefined;
  await outbox?.open();
  const cache = kind === "local" ? new DataCache(store) : undefined;
  const commits = new GroupCommit(store);
  const ledger = center ? new Ledger(store) : undefined;
  const master = center ? new MasterData(store, ids) : undefined;
  const children = center ? new Children(store, cfg.offlineAfter, log) : undefined;
  await children?.open();
  const delegationCol = store.collection<Delegated>("passon-delegation");
  const users = new Map<string, UserRecord>();
  for (const u of center?.users ?? []) {
    users.set(u.name, { user: u.name, verifier: u.passwordVerifier ?? (await makeVerifier(u.password as string)), apps: u.apps });
  }
  const parentClients = cfg.parent ? dialParent(cfg.parent, { ...ctx.channel, defaultDeadlineMs: 10_000 }) : undefined;
  const selfHop: Hop = { nodeId, role: kind };
  const link = parentClients ? new PassOnLink(parentClients.control, log) : undefined;
  let uplink: Uplink | undefined;

  // ---- running apps ----------------------------------------------------------------

  /** The user's data for an app run here, plus the versions a local's diffs are based on. */
  const noData: UserData = { values: new Map(), versions: new Map() };
  const loadData = async (user: string): Promise<UserData> => {
    if (master) return { values: await master.values(user), versions: new Map() };
    const c = cache as DataCache;
    const at = await c.fetchedAt(user);
    if ((at === undefined || Date.now() - at > cfg.cacheTtl) && uplink?.connected && parentClients) {
      try {
        const res = await unary(parentClients.control, parentClients.control.fetchUserData, { user, nodeId }, { deadline: Date.now() + 2000 });
        await c.fill(user, res.entries, await (outbox as Outbox).pendingDiffsOf(user), Date.now());
      } catch (err) {
        log.warn({ user, err: parseRichError(err).message }, "could not refresh cached user data; using the cache");
      }
    }
    return c.load(user);
  };

  const serve = async (app: RunnableApp, user: string, request: Buffer, hops: Hop[]): Promise<InvokeResponse> => {
    // A module that imports neither data_get nor data_put cannot see the user's data.
    const data = app.usesData ? await loadData(user) : noData;
    let reply;
    try {
      reply = await sandbox.run(
        { module: app.module, minPages: app.meta.minPages, maxPages: app.meta.memoryPages, entry: "handle", request, data: data.values },
        app.meta.timeLimitMs,
      );
    } catch (err) {
      if (err instanceof SandboxBusyError) throw new ResourceExhaustedError(err.message, { reason: "SANDBOX_BUSY", domain: DOMAIN, retryDelayMs: 200 });
      throw err;
    }
    if (reply.kind === "timeout") throw new AppTimeLimitError(app.name, reply.message);
    if (reply.kind === "memory") throw new AppMemoryLimitError(app.name, reply.message);
    if (reply.kind === "trap" || reply.kind === "crash") throw new AppTrappedError(app.name, reply.message);
    if (reply.code !== 0) throw new AppErrorCode(app.name, reply.code);
    const rec = ids.next();
    const record: StoredRecord = {
      recordId: rec.id,
      user,
      app: app.name,
      version: app.meta.version,
      nodeId,
      calls: 1,
      execMicros: reply.execMicros,
      bytesIn: request.length,
      bytesOut: reply.response.length,
      at: Date.now(),
    };
    const diffs: StoredDiff[] = [];
    for (const [k, v] of reply.writes) {
      diffs.push({ diffId: ids.next().id, user, key: k, value: v === null ? null : Buffer.from(v).toString("base64"), baseVersion: data.versions.get(k) ?? 0, writer: nodeId });
    }
    if (outbox && cache) {
      // Acknowledged only once the record (and the data change) is durable: kill -9 after
      // the reply cannot lose the bill.
      // Concurrent invocations share one store write (group commit); each still waits for
      // the write that holds its own record.
      await commits.commit((batch) => {
        outbox.addRecord(batch, rec.key, record);
        for (const d of diffs) {
          cache.write(batch, user, d.key, d.value, d.baseVersion);
          outbox.addDiff(batch, ids.next().key, d);
        }
      });
      outbox.committed(rec.key, record);
      if (diffs.length) cache.wrote(user, diffs);
      uplink?.kick();
    } else if (master && ledger) {
      // The center's own writes apply on top of the master (base -1).
      if (diffs.length) await master.apply(diffs.map((d) => ({ ...d, baseVersion: -1 })));
      await ledger.ingestOwn(record);
    }
    return {
      response: Buffer.from(reply.response),
      servedBy: nodeId,
      hops,
      version: app.meta.version,
      execTime: { seconds: BigInt(Math.floor(reply.execMicros / 1e6)), nanos: (reply.execMicros % 1e6) * 1000 },
      recordId: rec.id,
    };
  };

  const checkVia = (via: Hop[] | string[]): void => {
    const ids = via.map((h) => (typeof h === "string" ? h : h.nodeId));
    if (ids.includes(nodeId)) {
      throw new FailedPreconditionError(`pass-on loop: the request already went through ${nodeId}`, { reason: "PASS_ON_LOOP", domain: DOMAIN });
    }
    if (ids.length >= MAX_DEPTH) throw new FailedPreconditionError(`passed on ${ids.length} times; the limit is ${MAX_DEPTH}`, { reason: "PASS_ON_TOO_DEEP", domain: DOMAIN });
  };

  const passOnError = (err: unknown, what: string): never => {
    if (err instanceof SwitchyardError) throw err;
    const st = parseRichError(err);
    if (st.code === Status.UNAVAILABLE && !st.errorInfo) throw new ParentUnreachableError(what, cfg.parent ?? "", err);
    throw new ForwardedError(st);
  };

  const requireParent = (what: string): NonNullable<typeof parentClients> => {
    if (!parentClients || !cfg.parent) throw new Error("no parent");
    if (!uplink?.connected) throw new ParentUnreachableError(what, cfg.parent);
    return parentClients;
  };

  /** Invoke at this node: checks, then serve here or pass on. `deadline`: epoch ms, Infinity when none. */
  const invokeHere = async (req: InvokeRequest, deadline: number): Promise<InvokeResponse> => {
    if (!APP_NAME.test(req.app)) throw badField("app", "lower-case letters, digits and '-', 1 to 63 characters", "APP_NAME_INVALID");
    if (req.request.length > MAX_REQUEST) throw badField("request", `at most ${MAX_REQUEST} bytes`, "REQUEST_TOO_LARGE");
    checkVia(req.via);
    const claims = sessions.verify(req.token);
    if (!entitled(claims, req.app)) throw new NotEntitledError(claims.sub, req.app);
    const hops = [...req.via, selfHop];
    const app = registry.runnable(req.app);
    if (app) return serve(app, claims.sub, Buffer.from(req.request), hops);
    if (!cfg.parent) throw new AppNotFoundError(req.app, hops[0]?.nodeId ?? nodeId);
    const p = requireParent(`app "${req.app}"`);
    const up: InvokeRequest = { ...req, via: hops };
    const until = Number.isFinite(deadline) ? deadline : Date.now() + 30_000;
    try {
      if (link?.accepts(up)) {
        try {
          return await link.invoke(up, until);
        } catch (err) {
          // The parent lacks PassOn (nothing ran there): fall through to unary Invoke.
          if (!(err instanceof PassOnUnsupportedError)) throw err;
        }
      }
      return await unary(p.gateway, p.gateway.invoke, up, { deadline: until });
    } catch (err) {
      return passOnError(err, `app "${req.app}"`);
    }
  };

  // ---- AppGatewayService -------------------------------------------------------------

  const gateway = ctx.implement(AppGatewayServiceService, {
    signOn: async (req, call) => {
      if (!req.user || req.user.length > 128) throw badField("user", "required, at most 128 characters");
      if (!req.password || req.password.length > 1024) throw badField("password", "required, at most 1024 characters");
      checkVia(req.via);
      let known: UserRecord | undefined;
      let notAfter = Infinity;
      if (center) known = users.get(req.user);
      else {
        const d = await delegationCol.get("current");
        if (d && d.notAfter > Date.now()) {
          known = d.users.find((u) => u.user === req.user);
          notAfter = d.notAfter;
        }
      }
      if (known) {
        if (!(await checkVerifier(known.verifier, req.password))) throw new BadCredentialsError();
        const { token, claims } = sessions.issue(known.user, known.apps, cfg.sessionTtl, notAfter);
        return { token, expiresAt: new Date(claims.exp), authenticatedBy: nodeId, apps: claims.apps };
      }
      if (!cfg.parent) throw new BadCredentialsError();
      // No (valid) delegation for this user here: refer the sign-on to the parent.
      const p = requireParent("sign-on");
      try {
        return await unary(p.gateway, p.gateway.signOn, { ...req, via: [...req.via, nodeId] }, { signal: call.signal });
      } catch (err) {
        return passOnError(err, "sign-on");
      }
    },

    invoke: (req, call) => invokeHere(req, +call.deadline),

    listApps: async (req, call) => {
      checkVia(req.via);
      const claims = sessions.verify(req.token);
      const apps: AvailableApp[] = [];
      for (const a of registry.list()) {
        const r = registry.runnable(a.name);
        if (r && entitled(claims, a.name)) apps.push({ name: a.name, version: a.version, servedBy: nodeId, distance: 0, ...(a.notAfter ? { notAfter: a.notAfter } : {}) });
      }
      let parentUnreachable = false;
      if (cfg.parent) {
        if (!uplink?.connected || !parentClients) parentUnreachable = true;
        else {
          try {
            const up: ListAppsResponse = await unary(parentClients.gateway, parentClients.gateway.listApps, { ...req, via: [...req.via, selfHop] }, { signal: call.signal });
            for (const a of up.apps) if (!apps.some((x) => x.name === a.name)) apps.push({ ...a, distance: a.distance + 1 });
            parentUnreachable = up.parentUnreachable;
          } catch (err) {
            log.debug({ err: parseRichError(err).message }, "parent ListApps failed");
            parentUnreachable = true;
          }
        }
      }
      return { apps, parentUnreachable };
    },
  });

  // ---- commands from the parent (any node with a parent) -----------------------------

  const execute = async (cmd: Command): Promise<{ message?: string; app?: InstalledApp }> => {
    const a = cmd.action;
    if (!a) throw new InvalidArgumentError("command without action");
    switch (a.$case) {
      case "install": {
        const before = registry.versionOf(a.value.name);
        const app = await registry.install(a.value);
        log.info({ app: app.name, version: app.version, previous: before }, "app installed by parent");
        return { app, message: before ? `updated ${app.name} v${before} → v${app.version}` : `installed ${app.name} v${app.version}` };
      }
      case "expire": {
        const app = await registry.expire(a.value.name);
        log.info({ app: app.name }, "app expired by parent");
        return { app, message: `expired ${app.name}` };
      }
      case "delegation": {
        const d: Delegated = {
          users: a.value.users.map((u) => ({ user: u.user, verifier: u.passwordVerifier, apps: u.apps })),
          notAfter: a.value.notAfter?.getTime() ?? 0,
        };
        await delegationCol.put("current", d);
        return { message: `delegation for ${d.users.length} users until ${new Date(d.notAfter).toISOString()}` };
      }
    }
  };

  const settleDiffs = async (results: DiffResult[]): Promise<void> => {
    if (!outbox || !cache) return;
    const batch = store.batch();
    outbox.ackDiffs(batch, results.map((r) => r.diffId));
    const pending = await outbox.pendingDiffs(100_000);
    for (const r of results) {
      if (!r.entry) continue;
      const hasPending = pending.some((d) => d.user === r.user && d.key === r.entry?.key && !results.some((x) => x.diffId === d.diffId));
      cache.settle(batch, r.user, r.entry, r.outcome, hasPending);
      if (r.outcome === DiffOutcome.CONFLICT) log.info({ user: r.user, key: r.entry.key, diff: r.diffId }, "data change lost a conflict; cache refreshed from the master");
    }
    await batch.write();
    for (const r of results) if (r.entry) cache.invalidate(r.user);
  };

  const status = (): ChildStatus => {
    const q = outbox?.queued ?? { records: 0, diffs: 0 };
    return {
      apps: registry.list(),
      queuedRecords: BigInt(q.records),
      queuedDiffs: BigInt(q.diffs),
      ...(delegationSnapshot ? { delegationNotAfter: new Date(delegationSnapshot) } : {}),
      descendants: children?.states() ?? [],
      keys: keysToProto(trust.selfAndDescendants()),
    };
  };
  let delegationSnapshot: number | undefined = (await delegationCol.get("current"))?.notAfter;
  const refreshDelegation = (): void => {
    void delegationCol.get("current").then((d) => (delegationSnapshot = d?.notAfter));
  };

  if (cfg.parent && parentClients) {
    uplink = new Uplink({
      nodeId,
      role: kind,
      parent: cfg.parent,
      control: parentClients.control,
      trust,
      outbox,
      statusIntervalMs: cfg.statusInterval,
      log,
      shutdown: ctx.shutdown,
      status: () => {
        refreshDelegation();
        return status();
      },
      execute: async (cmd) => {
        const r = await execute(cmd);
        refreshDelegation();
        return r;
      },
      settleDiffs,
    });
  }

  // ---- center side: control channels, maintenance ------------------------------------

  const services = [gateway];
  const timers: NodeJS.Timeout[] = [];

  const delegationFor = (): Command["action"] => ({
    $case: "delegation",
    value: {
      users: [...users.values()].map((u) => ({ user: u.user, passwordVerifier: u.verifier, apps: u.apps })),
      notAfter: new Date(Date.now() + (center?.delegationLease ?? 0)),
    },
  });

  const bundleFor = (e: { app: string; version: number; lease: number; timeLimit?: number | undefined; memoryPages?: number | undefined }, module: Uint8Array) =>
    signBundle(key, {
      name: e.app,
      version: e.version,
      module,
      notAfter: Date.now() + e.lease,
      timeLimitMs: e.timeLimit ?? cfg.defaultTimeLimit,
      memoryPages: e.memoryPages ?? cfg.defaultMemoryPages,
    });

  if (center && children && ledger && master) {
    /** Apps an operator expired, by "node\0app": never renewed (until installed again). */
    const operatorExpired = new Set<string>();
    const provision = async (s: ChildSession): Promise<void> => {
      await children.command(s.nodeId, delegationFor(), cfg.commandTimeout).catch((err: unknown) => log.warn({ child: s.nodeId, err: parseRichError(err).message }, "delegation failed"));
      // Operator commands queued while the child was offline, in order.
      await children.drain(s.nodeId, cfg.commandTimeout);
      for (const e of center.provision.filter((p) => p.node === s.nodeId)) {
        const have = s.status?.apps.find((a) => a.name === e.app);
        if (have && have.version >= e.version) continue;
        try {
          await children.command(s.nodeId, { $case: "install", value: bundleFor(e, readModule(e.module)) }, cfg.commandTimeout);
          log.info({ child: s.nodeId, app: e.app, version: e.version }, "provisioned app on child");
        } catch (err) {
          log.warn({ child: s.nodeId, app: e.app, err: parseRichError(err).message }, "provisioning failed");
        }
      }
    };
    const renew = setInterval(() => {
      for (const s of children.online) void children.command(s.nodeId, delegationFor(), cfg.commandTimeout).catch(() => undefined);
    }, Math.max(1000, center.delegationLease / 3));
    renew.unref();
    timers.push(renew);

    // App leases are renewed like the delegation while the child is connected: an app this
    // center provisioned (or runs itself) whose lease is more than a third gone is signed
    // again with a fresh lease, same version and module. Only ACTIVE apps are renewed: an
    // app the operator expired, or whose lease ran out while the child was unreachable,
    // stays stopped until an install. Apps an operator installed with InstallApp are not
    // renewed (update them to extend).
    const renewing = new Set<string>();
    const renewIfDue = async (key: string, e: AppEntry, have: InstalledApp | undefined, install: (bundle: ReturnType<typeof bundleFor>) => Promise<unknown>): Promise<void> => {
      if (!have || have.version !== e.version || have.state !== AppState.ACTIVE || !have.notAfter) return;
      if (have.notAfter.getTime() - Date.now() > (e.lease * 2) / 3 || renewing.has(key) || operatorExpired.has(key)) return;
      renewing.add(key);
      try {
        await install(bundleFor(e, readModule(e.module)));
        log.debug({ app: e.app, version: e.version, at: key }, "app lease renewed");
      } catch (err) {
        log.warn({ app: e.app, at: key, err: parseRichError(err).message }, "lease renewal failed");
      } finally {
        renewing.delete(key);
      }
    };
    const leases = [...center.provision, ...(center.apps as AppEntry[])].map((e) => e.lease);
    if (leases.length) {
      const renewApps = setInterval(() => {
        for (const e of center.provision) {
          const s = children.live(e.node);
          if (!s) continue;
          void renewIfDue(`${e.node}\u0000${e.app}`, e, s.status?.apps.find((a) => a.name === e.app), async (bundle) => {
            const r = await children.command(e.node, { $case: "install", value: bundle }, cfg.commandTimeout);
            // Seen at once, not only at the child's next status report.
            if (r.app && s.status) s.status = { ...s.status, apps: s.status.apps.map((a) => (a.name === r.app?.name ? r.app : a)) };
          });
        }
        for (const e of center.apps as AppEntry[]) {
          void renewIfDue(`${nodeId}\u0000${e.app}`, e, registry.list().find((a) => a.name === e.app), (bundle) => registry.install(bundle));
        }
      }, Math.min(60_000, Math.max(200, Math.min(...leases) / 6)));
      renewApps.unref();
      timers.push(renewApps);
    }

    services.push(
      ctx.implement(ControlServiceService, {
        connect: async (requests, sink, call) => {
          const it = requests[Symbol.asyncIterator]();
          const first = await it.next();
          const hello = !first.done && first.value.message?.$case === "hello" ? first.value.message.value : undefined;
          if (!hello || !/^[a-z0-9][a-z0-9._-]{0,62}$/.test(hello.nodeId) || hello.nodeId === nodeId) {
            throw InvalidArgumentError.field("hello", "the first message must be a hello with a valid node id", { reason: "HELLO_REQUIRED", domain: DOMAIN });
          }
          const ended = new AbortController();
          const session: ChildSession = {
            nodeId: hello.nodeId,
            role: hello.role,
            sink,
            connectedAt: Date.now(),
            lastReport: Date.now(),
            status: hello.status,
            pending: new Map(),
            open: true,
            close: () => ended.abort(),
          };
          await trust.addDescendants(keysFromProto([...hello.keys, ...(hello.status?.keys ?? [])]));
          children.attach(session);
          log.info({ child: hello.nodeId, role: hello.role, peer: call.peer }, "child connected");
          await sink.send({ message: { $case: "welcome", value: { nodeId, role: kind, keys: keysToProto(trust.selfAndAncestors()) } } });
          void provision(session);
          try {
            const messages = { [Symbol.asyncIterator]: () => it };
            const stop = new Promise<void>((r) => ended.signal.addEventListener("abort", () => r(), { once: true }));
            const consume = (async () => {
              for await (const req of messages) {
                if (!session.open) break;
                const m = req.message;
                if (!m) continue;
                switch (m.$case) {
                  case "status":
                    session.status = m.value;
                    await trust.addDescendants(keysFromProto(m.value.keys));
                    break;
                  case "billing": {
                    const acked = await ledger.ingest(m.value.records.slice(0, 1000).map(convert.recordFromProto));
                    sink.write({ message: { $case: "billingAck", value: { recordIds: acked } } });
                    break;
                  }
                  case "diffs": {
                    const results = await master.apply(m.value.diffs.slice(0, 1000).map((d) => ({ ...convert.diffFromProto(d), writer: session.nodeId })));
                    sink.write({ message: { $case: "diffAck", value: { results } } });
                    break;
                  }
                  case "result":
                    children.resolve(session, m.value);
                    break;
                  case "hello":
                    break;
                }
                children.update(session);
              }
            })();
            await Promise.race([consume, stop]);
          } finally {
            children.detach(session);
            log.info({ child: hello.nodeId }, "child disconnected");
          }
        },
        passOn: async (requests, sink) => {
          // Each request runs as Invoke would, concurrently; answers go back as they finish.
          let open = true;
          const inFlight = new Set<Promise<void>>();
          const answer = (m: PassOnResponse): void => {
            if (open) sink.write(m);
          };
          try {
            for await (const m of requests) {
              const callId = m.callId;
              const started = Date.now();
              const run = (async () => {
                try {
                  const invoke = m.invoke;
                  if (!invoke) throw badField("invoke", "required");
                  const deadline = m.timeout ? started + durationToMs(m.timeout, 0) : Infinity;
                  if (deadline <= Date.now()) throw new DeadlineExceededError("deadline exceeded before the call reached this node", { reason: "DEADLINE_PASSED", domain: DOMAIN });
                  answer({ callId, result: { $case: "response", value: await invokeHere(invoke, deadline) } });
                } catch (err) {
                  answer({ callId, result: { $case: "error", value: rpcStatusFromError(err, log, PASS_ON_METHOD) } });
                }
              })();
              inFlight.add(run);
              void run.finally(() => inFlight.delete(run));
            }
            // The child half-closed: finish what it sent, then end the stream.
            await Promise.all(inFlight);
          } finally {
            open = false;
          }
        },
        fetchUserData: async (req) => {
          if (!req.user) throw badField("user", "required");
          return { entries: await master.entries(req.user) };
        },
      }),
    );

    const seenRequests = store.collection<unknown>("passon-requests", { ttl: true });
    const selfState = (): ChildState => ({
      nodeId,
      role: kind,
      online: true,
      lastReport: new Date(),
      apps: registry.list(),
      queuedRecords: 0n,
      queuedDiffs: 0n,
      queuedCommands: 0n,
      queuedOutcomes: [],
      descendants: children.states().map((c) => c.nodeId),
    });
    services.push(
      ctx.implement(MaintenanceServiceService, {
        installApp: async (req) => {
          if (!APP_NAME.test(req.name)) throw badField("name", "lower-case letters, digits and '-', 1 to 63 characters", "APP_NAME_INVALID");
          if (!Number.isInteger(req.version) || req.version < 1) throw badField("version", "must be a positive integer");
          if (req.module.length === 0 || req.module.length > MAX_MODULE_BYTES) throw badField("module", `1 byte to ${MAX_MODULE_BYTES} bytes`);
          if (!req.nodeId) throw badField("node_id", "required: this node's id or a child's");
          const lease = durationToMs(req.lease, 30 * 86_400_000);
          if (lease <= 0 || lease > 3650 * 86_400_000) throw badField("lease", "between 1 ms and 10 years");
          if (req.requestId) {
            const prior = await seenRequests.get(`install:${req.requestId}`);
            if (prior) return InstallAppResponse.fromJSON(prior);
          }
          const bundle = bundleFor(
            { app: req.name, version: req.version, lease, timeLimit: durationToMs(req.timeLimit), memoryPages: req.memoryPages || undefined },
            req.module,
          );
          let app: InstalledApp | undefined;
          operatorExpired.delete(`${req.nodeId}\u0000${req.name}`);
          let res: InstallAppResponse;
          if (req.nodeId !== nodeId && req.queueIfOffline && !children.live(req.nodeId) && children.knows(req.nodeId)) {
            await children.enqueue(req.nodeId, { $case: "install", value: bundle });
            log.info({ node: req.nodeId, app: req.name, version: req.version }, "child offline; install queued until it reconnects");
            res = { queued: true };
          } else {
            if (req.nodeId === nodeId) app = await registry.install(bundle);
            else app = (await children.command(req.nodeId, { $case: "install", value: bundle }, cfg.commandTimeout)).app;
            if (!app) throw new NotFoundError("the child answered without the app");
            log.info({ node: req.nodeId, app: app.name, version: app.version }, "app installed");
            res = { app, queued: false };
          }
          if (req.requestId) await seenRequests.put(`install:${req.requestId}`, InstallAppResponse.toJSON(res), { ttlMs: 86_400_000 });
          return res;
        },
        expireApp: async (req) => {
          if (!APP_NAME.test(req.name)) throw badField("name", "lower-case letters, digits and '-', 1 to 63 characters", "APP_NAME_INVALID");
          let app: InstalledApp | undefined;
          operatorExpired.add(`${req.nodeId}\u0000${req.name}`);
          if (req.nodeId !== nodeId && req.queueIfOffline && !children.live(req.nodeId) && children.knows(req.nodeId)) {
            await children.enqueue(req.nodeId, { $case: "expire", value: { name: req.name } });
            log.info({ node: req.nodeId, app: req.name }, "child offline; expiry queued until it reconnects");
            return { queued: true };
          }
          if (req.nodeId === nodeId) app = await registry.expire(req.name);
          else app = (await children.command(req.nodeId, { $case: "expire", value: { name: req.name } }, cfg.commandTimeout)).app;
          if (!app) throw new NotFoundError("the child answered without the app");
          return { app, queued: false };
        },
        listChildren: async () => ({ self: selfState(), children: children.states(), parent: cfg.parent ?? "", parentConnected: uplink?.connected ?? false }),
        getBilling: async (req) => {
          if (!req.user) throw badField("user", "required");
          const lines = await ledger.billing(req.user);
          const total = lines.reduce(
            (t, l) => ({ ...t, calls: t.calls + l.calls, execMicros: t.execMicros + l.execMicros, bytesIn: t.bytesIn + l.bytesIn, bytesOut: t.bytesOut + l.bytesOut }),
            { user: req.user, app: "*", nodeId: "*", calls: 0n, execMicros: 0n, bytesIn: 0n, bytesOut: 0n },
          );
          return { lines, total };
        },
        getUserData: async (req) => {
          if (!req.user) throw badField("user", "required");
          return { entries: await master.entries(req.user), conflicts: (await master.conflictsOf(req.user)).map(convert.diffToProto) };
        },
      }),
    );

    // Apps this center runs itself, signed with its own key.
    for (const e of center.apps as AppEntry[]) {
      if (registry.versionOf(e.app) >= e.version && registry.runnable(e.app)) continue;
      await registry.install(bundleFor(e, readModule(e.module)));
      log.info({ app: e.app, version: e.version }, "app installed from configuration");
    }
  }

  return {
    services,
    load: () => {
      const sb = sandbox.load;
      const q = outbox?.queued ?? { records: 0, diffs: 0 };
      return {
        figures: {
          apps_installed: registry.list().length,
          sandbox_running: sb.running,
          sandbox_queued: sb.queued,
          queued_records: q.records,
          queued_diffs: q.diffs,
          children_online: children?.online.length ?? 0,
          parent_connected: uplink?.connected ? 1 : 0,
        },
        utilization: Math.min(1, (sb.running + sb.queued) / sb.workers),
      };
    },
    start: () => {
      uplink?.start();
    },
    stop: async () => {
      for (const t of timers) clearInterval(t);
      await uplink?.stop();
      link?.close();
      parentClients?.control.close();
      parentClients?.gateway.close();
      await sandbox.close();
    },
  };
}

/** Test hook: the node's internals are reachable through RunningNode.role. */
export type PassonInstance = RoleInstance;
