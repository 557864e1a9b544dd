import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { ConfigError, loadNodeConfig } from "../../servers/runtime/config.js";
import { duration, parseBytes, parseDurationMs } from "../../servers/runtime/units.js";
import { tempDir, spawnNode } from "../helpers/nodes.js";

const roles = new Map<string, z.ZodType>([
  ["bare", z.strictObject({})],
  ["content-server", z.strictObject({ capacity: z.number().int().positive().default(10), linger: duration().default(500) })],
]);

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("no ConfigError thrown");
}

describe("configuration", () => {
  describe("loadNodeConfig", () => {
    it("fills every default and resolves the data directory", () => {
      const cfg = loadNodeConfig({ raw: { node: { id: "n1", role: "bare" } }, baseDir: "/srv" }, roles);
      assert.equal(cfg.node.listen, "127.0.0.1:0");
      assert.equal(cfg.dataDir, "/srv/data/n1");
      assert.equal(cfg.grpc.maxReceiveMessageBytes, 16 * 1024 * 1024);
      assert.equal(cfg.grpc.keepaliveTimeMs, 30_000);
      assert.equal(cfg.shutdown.graceMs, 10_000);
      assert.equal(cfg.log.level, "info");
      assert.equal(cfg.tls, undefined);
    });

    it("reads units in durations and sizes", () => {
      const cfg = loadNodeConfig(
        { raw: { node: { id: "n1", role: "content-server" }, grpc: { maxReceiveMessageBytes: "1.5MiB", keepaliveTimeMs: "2m" }, contentServer: { linger: "250ms" } } },
        roles,
      );
      assert.equal(cfg.grpc.maxReceiveMessageBytes, 1.5 * 1024 * 1024);
      assert.equal(cfg.grpc.keepaliveTimeMs, 120_000);
      assert.deepEqual(cfg.roleConfig, { capacity: 10, linger: 250 });
    });

    it("names every bad key, including unknown ones and the role's section", () => {
      const err = configError(() =>
        loadNodeConfig(
          {
            raw: {
              node: { id: "Bad Id", role: "content-server" },
              grpc: { keepaliveTimeMs: "soon", maxReceiveMesageBytes: 1 },
              contentServer: { capacity: -1 },
              metricz: {},
            },
          },
          roles,
        ),
      );
      const keys = err.issues.map((i) => i.key).sort();
      assert.deepEqual(keys, ["contentServer.capacity", "grpc.keepaliveTimeMs", "grpc.maxReceiveMesageBytes", "metricz", "node.id"]);
      assert.match(err.message, /grpc\.keepaliveTimeMs: expected a duration/);
      assert.match(err.message, /grpc\.maxReceiveMesageBytes: unknown option/);
    });

    it("refuses an unknown role and lists the known ones", () => {
      const err = configError(() => loadNodeConfig({ raw: { node: { id: "x", role: "router" } } }, roles));
      assert.match(err.message, /node\.role: unknown role "router"; known: bare, content-server/);
    });

    it("applies SWITCHYARD_ environment overrides over the file", () => {
      const dir = tempDir();
      const file = join(dir, "node.yaml");
      writeFileSync(file, "node:\n  id: n1\n  role: content-server\ncontentServer:\n  capacity: 3\n");
      const cfg = loadNodeConfig(
        {
          file,
          env: {
            SWITCHYARD_NODE__LISTEN: "127.0.0.1:7777",
            SWITCHYARD_GRPC__MAX_RECEIVE_MESSAGE_BYTES: "32MiB",
            SWITCHYARD_CONTENT_SERVER__CAPACITY: "12",
            SWITCHYARD_LOG__LEVEL: "debug",
            UNRELATED: "1",
          },
        },
        roles,
      );
      assert.equal(cfg.node.listen, "127.0.0.1:7777");
      assert.equal(cfg.grpc.maxReceiveMessageBytes, 32 * 1024 * 1024);
      assert.equal(cfg.log.level, "debug");
      assert.deepEqual(cfg.roleConfig, { capacity: 12, linger: 500 });
    });

    it("resolves TLS file paths relative to the config file", () => {
      const dir = tempDir();
      const file = join(dir, "node.yaml");
      writeFileSync(file, "node: { id: n1, role: bare }\ntls: { certFile: certs/n1.pem, keyFile: certs/n1.key }\n");
      const cfg = loadNodeConfig({ file }, roles);
      assert.equal(cfg.tls?.certFile, join(dir, "certs/n1.pem"));
      assert.equal(cfg.tls?.requireClientCert, false);
    });

    it("reports an unreadable or non-YAML file clearly", () => {
      assert.match(configError(() => loadNodeConfig({ file: "/nonexistent/node.yaml" }, roles)).message, /cannot read config file/);
      const dir = tempDir();
      writeFileSync(join(dir, "bad.yaml"), "node: [unclosed\n");
      assert.match(configError(() => loadNodeConfig({ file: join(dir, "bad.yaml") }, roles)).message, /not valid YAML/);
    });
  });

  describe("units", () => {
    it("parses durations and sizes and rejects nonsense", () => {
      assert.equal(parseDurationMs("1.5s"), 1500);
      assert.equal(parseDurationMs("2h"), 7_200_000);
      assert.equal(parseDurationMs(250), 250);
      assert.equal(parseDurationMs("-1s"), undefined);
      assert.equal(parseDurationMs("10 parsecs"), undefined);
      assert.equal(parseBytes("4KiB"), 4096);
      assert.equal(parseBytes("1MB"), 1_000_000);
      assert.equal(parseBytes("12"), 12);
      assert.equal(parseBytes("1.2.3MiB"), undefined);
    });
  });

  describe("switchyard node", () => {
    it("exits with status 2 and names the bad key when the config is invalid", async () => {
      await assert.rejects(
        spawnNode({ node: { id: "n1", role: "bare" }, grpc: { keepaliveTimeMs: "often" } }),
        /exited during start \(2\)[\s\S]*grpc\.keepaliveTimeMs: expected a duration/,
      );
    });
  });
});
