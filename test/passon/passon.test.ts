import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { parseRichError } from "../../clients/grpc/rich-error.js";
import { eventually } from "../helpers/nodes.js";
import { maintenance, startTree, userAt } from "./tree.js";

describe("Pass-on hierarchy", () => {
  describe("Invoke", () => {
    it("serves an app at the local, passes others to the center and the upper center, and names the hops", async () => {
      const t = await startTree();
      const alice = await userAt(t.local);
      const local = await alice.invoke("echo", "hello");
      assert.equal(local.response.toString(), "hello");
      assert.equal(local.servedBy, "local-1");
      assert.deepEqual(local.hops.map((h) => h.nodeId), ["local-1"]);
      const one = await alice.invoke("upper", "hello");
      assert.equal(one.response.toString(), "HELLO");
      assert.equal(one.servedBy, "center-1");
      assert.deepEqual(one.hops.map((h) => `${h.nodeId}/${h.role}`), ["local-1/local", "center-1/center"]);
      const two = await alice.invoke("reverse", "abc");
      assert.equal(two.response.toString(), "cba");
      assert.equal(two.servedBy, "upper-1");
      assert.deepEqual(two.hops.map((h) => h.nodeId), ["local-1", "center-1", "upper-1"]);
    });

    it("ends with NOT_FOUND naming the app when no node serves it", async () => {
      const t = await startTree();
      const alice = await userAt(t.local);
      await assert.rejects(alice.invoke("nosuch", "x"), (err: unknown) => {
        const st = parseRichError(err);
        assert.equal(st.code, status.NOT_FOUND);
        assert.equal(st.errorInfo?.reason, "APP_NOT_FOUND");
        assert.match(st.message, /nosuch/);
        return true;
      });
    });

    it("refuses a user who is not entitled and a forged token", async () => {
      const t = await startTree();
      const bob = await userAt(t.local, "bob");
      await assert.rejects(bob.invoke("counter", ""), (err: unknown) => parseRichError(err).errorInfo?.reason === "APP_NOT_ENTITLED");
      bob.useToken("eyJmb28iOjF9.AAAA");
      await assert.rejects(bob.invoke("echo", ""), (err: unknown) => parseRichError(err).code === status.UNAUTHENTICATED);
    });
  });

  describe("ListApps", () => {
    it("lists apps of every level with their distance", async () => {
      const t = await startTree();
      const alice = await userAt(t.local);
      const res = await alice.listApps();
      const by = Object.fromEntries(res.apps.map((a) => [a.name, `${a.servedBy}@${a.distance}`]));
      assert.deepEqual(by, { counter: "local-1@0", echo: "local-1@0", notes: "local-1@0", upper: "center-1@1", reverse: "upper-1@2" });
      await eventually(async () => (await maintenance(t.center).children()).children.some((c) => c.nodeId === "local-1" && c.online));
    });
  });
});
