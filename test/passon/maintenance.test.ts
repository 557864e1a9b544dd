import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { parseRichError } from "../../clients/grpc/rich-error.js";
import { AppState, QueuedCommandKind } from "../../clients/passon/index.js";
import { centerRole, localRole } from "../../servers/passon/index.js";
import { eventually, startTestNode } from "../helpers/nodes.js";
import { demoModule, FAST, maintenance, startCenter, startTree, userAt, USERS, waitProvisioned } from "./tree.js";

const reason = (err: unknown): string | undefined => parseRichError(err).errorInfo?.reason;

describe("Pass-on maintenance", () => {
  describe("InstallApp", () => {
    it("installs on a child, updates it, rolls back a version that fails its load check, and expires it", async () => {
      const t = await startTree();
      const m = maintenance(t.center);
      const alice = await userAt(t.local);
      const v1 = await m.install({ nodeId: "local-1", name: "shout", version: 1, module: demoModule("upper") });
      assert.equal(v1.state, AppState.ACTIVE);
      assert.equal((await alice.invoke("shout", "hi")).servedBy, "local-1");
      // v2 is the broken module: its selftest fails, so v1 keeps running.
      await assert.rejects(m.install({ nodeId: "local-1", name: "shout", version: 2, module: demoModule("broken") }), (err: unknown) => {
        assert.equal(parseRichError(err).code, status.FAILED_PRECONDITION);
        assert.equal(reason(err), "APP_LOAD_CHECK_FAILED");
        assert.match(parseRichError(err).message, /v1 keeps running/);
        return true;
      });
      const after = await alice.invoke("shout", "hi");
      assert.equal(after.version, 1);
      assert.equal(after.response.toString(), "HI");
      const v3 = await m.install({ nodeId: "local-1", name: "shout", version: 3, module: demoModule("echo") });
      assert.equal(v3.previousVersion, 1);
      assert.equal((await alice.invoke("shout", "hi")).response.toString(), "hi");
      await assert.rejects(m.install({ nodeId: "local-1", name: "shout", version: 2, module: demoModule("echo") }), (err: unknown) => reason(err) === "APP_VERSION_NOT_NEWER");
      const expired = await m.expire("local-1", "shout");
      assert.equal(expired.state, AppState.EXPIRED);
      // Expired at the local and served nowhere else: NOT_FOUND from the top.
      await assert.rejects(alice.invoke("shout", "hi"), (err: unknown) => reason(err) === "APP_NOT_FOUND");
    });

    it("refuses a module that defines its own memory or is not WebAssembly", async () => {
      const t = await startTree();
      const m = maintenance(t.center);
      await assert.rejects(m.install({ nodeId: "local-1", name: "junk", version: 1, module: Buffer.from("not wasm") }), (err: unknown) => reason(err) === "APP_LOAD_CHECK_FAILED");
    });

    it("answers CHILD_OFFLINE for a child whose channel is closed and NODE_NOT_FOUND for a stranger", async () => {
      const t = await startTree();
      const m = maintenance(t.center);
      await assert.rejects(m.install({ nodeId: "nobody", name: "x", version: 1, module: demoModule("echo") }), (err: unknown) => reason(err) === "NODE_NOT_FOUND");
      await t.local.stop();
      await eventually(async () => !(await m.children()).children.find((c) => c.nodeId === "local-1")?.online);
      await assert.rejects(m.install({ nodeId: "local-1", name: "x", version: 1, module: demoModule("echo") }), (err: unknown) => {
        assert.equal(parseRichError(err).code, status.UNAVAILABLE);
        return reason(err) === "CHILD_OFFLINE";
      });
    });
  });

  describe("InstallApp (queued)", () => {
    it("queues an install and an expiry for an offline child and delivers them in order when it reconnects", async () => {
      const t = await startTree();
      const m = maintenance(t.center);
      await t.local.stop();
      await eventually(async () => !(await m.children()).children.find((c) => c.nodeId === "local-1")?.online);
      const queued = await m.installOrQueue({ nodeId: "local-1", name: "shout", version: 1, module: demoModule("upper") });
      assert.deepEqual(queued, { queued: true });
      assert.deepEqual(await m.expireOrQueue("local-1", "echo"), { queued: true });
      // One the child will refuse: counter v1 again, with another module.
      assert.deepEqual(await m.installOrQueue({ nodeId: "local-1", name: "counter", version: 1, module: demoModule("upper") }), { queued: true });
      // Still refused for a stranger, queued or not.
      await assert.rejects(m.installOrQueue({ nodeId: "nobody", name: "x", version: 1, module: demoModule("echo") }), (err: unknown) => reason(err) === "NODE_NOT_FOUND");
      assert.equal((await m.children()).children.find((c) => c.nodeId === "local-1")?.queuedCommands, 3n);
      const local = await startTestNode(localRole, { id: "local-1", dataDir: t.dirs.local, roleConfig: { ...FAST, parent: t.center.address } });
      await eventually(async () => {
        const c = (await m.children()).children.find((x) => x.nodeId === "local-1");
        return c?.online && c.queuedCommands === 0n && c.apps.some((a) => a.name === "shout") && c.apps.find((a) => a.name === "echo")?.state === AppState.EXPIRED;
      }, 15_000);
      const alice = await userAt(local);
      const shout = await alice.invoke("shout", "hi");
      assert.equal(shout.servedBy, "local-1");
      assert.equal(shout.response.toString(), "HI");
      // echo was expired at the local and no node above serves it.
      await assert.rejects(alice.invoke("echo", "x"), (err: unknown) => reason(err) === "APP_NOT_FOUND");
      // How each queued command ended, newest first, without reading the center's log; kept
      // across a restart of the center.
      const outcomes = async (): Promise<unknown[]> =>
        ((await maintenance(t.center).children()).children.find((c) => c.nodeId === "local-1")?.queuedOutcomes ?? []).map((o) => [QueuedCommandKind[o.kind], o.app, o.version, o.applied, o.errorReason, !!o.queuedAt && !!o.answeredAt && o.queuedAt <= o.answeredAt]);
      const expected = [
        ["INSTALL", "counter", 1, false, "APP_VERSION_NOT_NEWER", true],
        ["EXPIRE", "echo", 0, true, "", true],
        ["INSTALL", "shout", 1, true, "", true],
      ];
      assert.deepEqual(await outcomes(), expected);
      await t.center.stop();
      t.center = await startCenter(t.upper.address, t.dirs.center);
      assert.deepEqual(await outcomes(), expected);
    });
  });

  describe("signatures", () => {
    it("never runs a bundle that is unsigned, tampered, or signed by a key that is not an ancestor", async () => {
      const t = await startTree();
      const registry = await import("../../servers/passon/apps.js");
      const { NodeKey, TrustDirectory } = await import("../../servers/passon/keys.js");
      const { Sandbox } = await import("../../servers/passon/sandbox.js");
      const { NodeStore } = await import("../../servers/runtime/store.js");
      const { testLogger, tempDir, onCleanup } = await import("../helpers/nodes.js");
      // A key the local has never been told to trust.
      const strangerStore = await NodeStore.open(tempDir(), { log: testLogger() });
      onCleanup(() => strangerStore.close());
      const stranger = await NodeKey.load(strangerStore, "stranger");
      const bundle = registry.signBundle(stranger, { name: "evil", version: 1, module: demoModule("echo"), notAfter: Date.now() + 60_000, timeLimitMs: 1000, memoryPages: 16 });
      // A second registry on the local's own store and trust directory (what its control channel installs into).
      const localKey = await NodeKey.load(t.local.store, "local-1");
      const trust = await TrustDirectory.load(t.local.store, localKey);
      const sandbox = new Sandbox({ workers: 1, maxQueue: 10, log: testLogger() });
      try {
        const reg = new registry.AppRegistry(t.local.store, trust, sandbox, { defaultTimeLimitMs: 1000, maxTimeLimitMs: 5000, defaultMemoryPages: 16, maxMemoryPages: 64 });
        await assert.rejects(reg.install(bundle), (err: unknown) => (err as { reason?: string }).reason === "APP_SIGNATURE_INVALID");
        await assert.rejects(reg.install({ ...bundle, signature: Buffer.alloc(0) }), (err: unknown) => (err as { reason?: string }).reason === "APP_SIGNATURE_INVALID");
        // Signed by the center (an ancestor the local trusts) but the module altered in transit.
        const centerKey = await NodeKey.load(t.center.store, "center-1");
        // 5 s: the load check of the last install must not trip over a loaded machine.
        const good = registry.signBundle(centerKey, { name: "ok", version: 1, module: demoModule("echo"), notAfter: Date.now() + 60_000, timeLimitMs: 5000, memoryPages: 16 });
        const tampered = Buffer.from(good.module);
        tampered.writeUInt8((tampered.at(-1) ?? 0) ^ 1, tampered.length - 1);
        await assert.rejects(reg.install({ ...good, module: tampered }), (err: unknown) => (err as { reason?: string }).reason === "APP_SIGNATURE_INVALID");
        // Loosened limits are tampering too.
        await assert.rejects(reg.install({ ...good, memoryPages: 64 }), (err: unknown) => (err as { reason?: string }).reason === "APP_SIGNATURE_INVALID");
        // Expired lease.
        const old = registry.signBundle(centerKey, { name: "old", version: 1, module: demoModule("echo"), notAfter: Date.now() - 1, timeLimitMs: 1000, memoryPages: 16 });
        await assert.rejects(reg.install(old), (err: unknown) => (err as { reason?: string }).reason === "APP_SIGNATURE_INVALID");
        const ok = await reg.install(good);
        assert.equal(ok.state, AppState.ACTIVE);
      } finally {
        await sandbox.close();
      }
    });
  });

  describe("sandbox limits", () => {
    it("stops a looping app, a memory hog and a trapping app with clear statuses and keeps serving", async () => {
      const t = await startTree();
      const m = maintenance(t.center);
      // 1 s, not less: the limit also covers spin's load check, which must pass on a loaded machine.
      await m.install({ nodeId: "local-1", name: "spin", version: 1, module: demoModule("spin"), timeLimitMs: 1000 });
      await m.install({ nodeId: "local-1", name: "hog", version: 1, module: demoModule("hog"), memoryPages: 32 });
      await m.install({ nodeId: "local-1", name: "trap", version: 1, module: demoModule("trap") });
      const alice = await userAt(t.local);
      await assert.rejects(alice.invoke("spin", ""), (err: unknown) => {
        assert.equal(parseRichError(err).code, status.DEADLINE_EXCEEDED);
        return reason(err) === "APP_TIME_LIMIT";
      });
      await assert.rejects(alice.invoke("hog", ""), (err: unknown) => {
        assert.equal(parseRichError(err).code, status.RESOURCE_EXHAUSTED);
        return reason(err) === "APP_MEMORY_LIMIT";
      });
      await assert.rejects(alice.invoke("trap", ""), (err: unknown) => {
        assert.equal(parseRichError(err).code, status.INTERNAL);
        return reason(err) === "APP_TRAPPED";
      });
      const spins = [alice.invoke("spin", ""), alice.invoke("spin", "")].map((p) => p.catch(() => "stopped"));
      assert.equal((await alice.invoke("echo", "still here")).response.toString(), "still here");
      assert.deepEqual(await Promise.all(spins), ["stopped", "stopped"]);
    });
  });

  describe("delegation", () => {
    it("signs on at the local under delegation, and refers sign-on to the center once it expired", async () => {
      const center = await startTestNode(centerRole, { id: "center-d", roleConfig: { ...FAST, users: USERS, delegationLease: "1500ms", provision: [{ node: "local-d", app: "echo", module: "demo:echo" }] } });
      const local = await startTestNode(localRole, { id: "local-d", roleConfig: { ...FAST, parent: center.address } });
      await waitProvisioned(center, "local-d", ["echo"]);
      const alice = await userAt(local);
      const first = await alice.signOn("alice", "alice-pw");
      assert.equal(first.authenticatedBy, "local-d");
      assert.ok(first.expiresAt && first.expiresAt.getTime() <= Date.now() + 1500);
      await assert.rejects(alice.signOn("alice", "wrong"), (err: unknown) => reason(err) === "BAD_CREDENTIALS");
      // Cut the link: renewals stop, the delegation runs out, sign-on must go to the center.
      await center.stop();
      await eventually(async () => {
        try {
          await alice.signOn("alice", "alice-pw");
          return false;
        } catch (err) {
          return reason(err) === "PARENT_UNREACHABLE";
        }
      }, 10_000);
    });
  });

  describe("lease renewal", () => {
    it("renews the leases of provisioned apps while the child is connected, and lets them run out once it is not", async () => {
      // A 4 s lease renews after ~1.3 s and leaves ~2.7 s for the renewal to land, even on a loaded machine.
      const center = await startTestNode(centerRole, {
        id: "center-r",
        roleConfig: { ...FAST, users: USERS, apps: [{ app: "upper", module: "demo:upper", lease: "4s" }], provision: [{ node: "local-r", app: "echo", module: "demo:echo", lease: "4s" }] },
      });
      const local = await startTestNode(localRole, { id: "local-r", roleConfig: { ...FAST, parent: center.address } });
      await waitProvisioned(center, "local-r", ["echo"]);
      const m = maintenance(center);
      const leaseOf = async (): Promise<number> => (await m.children()).children.find((c) => c.nodeId === "local-r")?.apps.find((a) => a.name === "echo")?.notAfter?.getTime() ?? 0;
      const first = await leaseOf();
      const ownFirst = (await m.children()).self?.apps.find((a) => a.name === "upper")?.notAfter?.getTime() ?? 0;
      assert.ok(first > Date.now() && ownFirst > Date.now());
      // Past the first lease, the app still runs at the local under a later one, and so does the center's own.
      await eventually(async () => Date.now() > first + 500 && (await leaseOf()) > first, 10_000);
      const alice = await userAt(local);
      assert.equal((await alice.invoke("echo", "still")).servedBy, "local-r");
      assert.equal((await alice.invoke("upper", "x")).servedBy, "center-r");
      assert.ok(((await m.children()).self?.apps.find((a) => a.name === "upper")?.notAfter?.getTime() ?? 0) > ownFirst);
      // Without the center no renewal comes: the lease runs out and the local stops serving the app.
      await center.stop();
      await eventually(async () => {
        try {
          await alice.invoke("echo", "x");
          return false;
        } catch (err) {
          return reason(err) === "PARENT_UNREACHABLE";
        }
      }, 10_000);
    });
  });

  describe("user data", () => {
    it("sends the local's changes up as diffs and keeps the master's value on a conflict", async () => {
      // A long cache expiry: the local keeps using what it cached, as it does between refreshes.
      const t = await startTree({ localExtra: { cacheTtl: "1h" } });
      const alice = await userAt(t.local);
      const m = maintenance(t.center);
      assert.equal((await alice.invoke("counter", "")).response.toString(), "1");
      assert.equal((await alice.invoke("counter", "")).response.toString(), "2");
      await eventually(async () => (await m.userData("alice")).entries.find((e) => e.key === "count")?.value.toString() === "2");
      // Conflict: the local writes offline while the center (another place) changes the same key.
      await alice.invoke("notes", "from the local, before");
      await eventually(async () => (await m.userData("alice")).entries.find((e) => e.key === "note")?.value.toString() === "from the local, before");
      const centerUser = await userAt(t.center);
      // Another place (an app served at the center) changes the note the local has cached.
      await centerUser.invoke("notes", "from the center");
      await alice.invoke("notes", "from the local, stale");
      await eventually(async () => (await m.userData("alice")).conflicts.length === 1);
      const data = await m.userData("alice");
      assert.equal(data.entries.find((e) => e.key === "note")?.value.toString(), "from the center");
      assert.equal(data.conflicts[0]?.value.toString(), "from the local, stale");
      assert.equal(data.conflicts[0]?.writer, "local-1");
      // The local's cache follows the master after the conflict.
      await eventually(async () => (await alice.invoke("notes", "")).response.toString() === "from the center");
    });
  });
});
