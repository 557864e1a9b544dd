/**
 * Node configuration: one YAML file plus environment overrides, validated once at start
 * into a fully-resolved object. A bad value stops the start with the key's name.
 *
 * Environment overrides: `SWITCHYARD_<SECTION>__<KEY>` sets `<section>.<key>`; each
 * `__` descends one level and UPPER_SNAKE segments become camelCase, e.g.
 * `SWITCHYARD_GRPC__MAX_RECEIVE_MESSAGE_BYTES=32MiB` or `SWITCHYARD_NODE__LISTEN=0.0.0.0:7000`.
 * Values are read as YAML scalars ("true", "42", "10s").
 */
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { bytes, duration, hostPort } from "./units.js";

/** Thrown when configuration is invalid; the message names every bad key. */
export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(
    message: string,
    readonly issues: { key: string; message: string }[] = [],
  ) {
    super(message);
  }
}

const tlsServerSchema = z
  .strictObject({
    /** PEM certificate chain of this node. */
    certFile: z.string().describe("PEM certificate chain the node presents"),
    /** PEM private key of certFile. */
    keyFile: z.string().describe("PEM private key of certFile"),
    /** CA that signs client certificates; set it (with requireClientCert) for mTLS. */
    clientCaFile: z.string().optional().describe("PEM CA for client certificates (mTLS)"),
    /** Refuse clients without a certificate signed by clientCaFile. Default false. */
    requireClientCert: z.boolean().default(false).describe("require client certificates (mTLS); default false"),
  })
  .optional();

const tlsClientSchema = z
  .strictObject({
    caFile: z.string().optional().describe("PEM CA that signed the peers' certificates"),
    certFile: z.string().optional().describe("PEM client certificate for mTLS"),
    keyFile: z.string().optional().describe("PEM key of certFile"),
    serverNameOverride: z.string().optional().describe("expected server name when dialling IPs"),
  })
  .optional();

/** The options every node has, whatever its role. */
export const baseConfigSchema = z.strictObject({
  node: z.strictObject({
    id: z
      .string()
      .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, "lower-case letters, digits, '.', '_' or '-', at most 63")
      .describe("unique node id in the cluster (required)"),
    role: z.string().describe("role this node runs (required), e.g. reception"),
    listen: hostPort().default("127.0.0.1:0").describe('gRPC listen address; default "127.0.0.1:0" (any free port)'),
    advertise: hostPort().optional().describe("address peers should dial; default: the bound listen address"),
    dataDir: z.string().optional().describe("LevelDB and files of this node; default ./data/<id>"),
    labels: z.record(z.string(), z.string()).default({}).describe("operator labels (zone, rack, ...)"),
  }),
  grpc: z
    .strictObject({
      maxReceiveMessageBytes: bytes().default(16 * 1024 * 1024).describe("largest request message; default 16MiB"),
      maxSendMessageBytes: bytes().default(16 * 1024 * 1024).describe("largest response message; default 16MiB"),
      keepaliveTimeMs: duration().default(30_000).describe("server keepalive ping interval; default 30s"),
      keepaliveTimeoutMs: duration().default(10_000).describe("wait for a ping ack; default 10s"),
      maxConnectionIdleMs: duration().default(300_000).describe("close connections idle this long; default 5m"),
      maxConnectionAgeMs: duration().default(3_600_000).describe("recycle connections after; default 1h"),
      maxConnectionAgeGraceMs: duration().default(600_000).describe("let calls finish after max age; default 10m"),
      defaultDeadlineMs: duration().default(10_000).describe("deadline for outgoing unary calls without one; default 10s"),
    })
    .prefault({}),
  tls: tlsServerSchema.describe("server TLS; unset = plaintext"),
  clientTls: tlsClientSchema.describe("TLS for calls this node makes to other nodes; unset = plaintext"),
  shutdown: z
    .strictObject({
      graceMs: duration().default(10_000).describe("time for in-flight calls on SIGTERM before force; default 10s"),
    })
    .prefault({}),
  log: z
    .strictObject({
      level: z
        .enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"])
        .default("info")
        .describe("log level; default info"),
    })
    .prefault({}),
  metrics: z
    .strictObject({
      listen: z
        .union([hostPort(), z.literal("")])
        .default("127.0.0.1:0")
        .describe('Prometheus /metrics HTTP address; "" disables; default "127.0.0.1:0"'),
    })
    .prefault({}),
  store: z
    .strictObject({
      ttlSweepIntervalMs: duration().default(60_000).describe("how often expired records are removed; default 1m"),
    })
    .prefault({}),
});

/** Resolved base configuration. */
export type BaseConfig = z.output<typeof baseConfigSchema>;

/** Resolved configuration of a node: the base plus its role's section. */
export interface NodeConfig<R = unknown> extends BaseConfig {
  /** Absolute data directory (node.dataDir resolved). */
  dataDir: string;
  /** The role's own section (key = role name in camelCase), validated by the role. */
  roleConfig: R;
}

/** "content-server" → "contentServer". */
export function roleSectionKey(role: string): string {
  return role.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function camel(segment: string): string {
  return segment.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Applies SWITCHYARD_* environment overrides to a raw config object (in place). */
export function applyEnvOverrides(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): void {
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith("SWITCHYARD_") || value === undefined) continue;
    const path = name.slice("SWITCHYARD_".length).split("__").map(camel);
    if (path.some((p) => p === "")) continue;
    let obj: Record<string, unknown> = raw;
    for (const key of path.slice(0, -1)) {
      const next = obj[key];
      if (typeof next !== "object" || next === null) obj[key] = {};
      obj = obj[key] as Record<string, unknown>;
    }
    obj[path[path.length - 1] as string] = parseYaml(value) as unknown;
  }
}

function formatIssues(prefix: string[], error: z.ZodError): { key: string; message: string }[] {
  return error.issues.flatMap((i) => {
    const key = [...prefix, ...i.path.map(String)].join(".") || "(root)";
    if (i.code === "unrecognized_keys") {
      return i.keys.map((k) => ({ key: key === "(root)" ? k : `${key}.${k}`, message: "unknown option" }));
    }
    return [{ key, message: i.message }];
  });
}

/** Source of a node's configuration. */
export interface ConfigSource {
  /** YAML file; relative paths inside it (dataDir, TLS files) resolve from its folder. */
  file?: string;
  /** Already-parsed YAML content (tests, the cluster launcher). */
  raw?: Record<string, unknown>;
  /** Environment for overrides; default: none. */
  env?: NodeJS.ProcessEnv;
  /** Base for relative paths when no file is given, and for the default data directory;
   *  default: the working directory. */
  baseDir?: string;
}

/** Reads the raw YAML of a config source (with env overrides applied); throws ConfigError. */
export function readRawConfig(src: ConfigSource): Record<string, unknown> {
  let raw: Record<string, unknown>;
  if (src.raw) {
    raw = structuredClone(src.raw);
  } else if (src.file) {
    let text: string;
    try {
      text = readFileSync(src.file, "utf8");
    } catch (err) {
      throw new ConfigError(`cannot read config file ${src.file}: ${(err as Error).message}`);
    }
    try {
      raw = (parseYaml(text) as Record<string, unknown> | null) ?? {};
    } catch (err) {
      throw new ConfigError(`config file ${src.file} is not valid YAML: ${(err as Error).message}`);
    }
    if (typeof raw !== "object" || Array.isArray(raw)) throw new ConfigError(`config file ${src.file} must hold a mapping`);
  } else {
    raw = {};
  }
  if (src.env) applyEnvOverrides(raw, src.env);
  return raw;
}

/** The role a raw configuration names, if any. */
export function rawRole(raw: Record<string, unknown>): string | undefined {
  const role = (raw["node"] as Record<string, unknown> | undefined)?.["role"];
  return typeof role === "string" ? role : undefined;
}

/**
 * Loads, overrides and validates a node configuration. `roleSchemas` maps role names to
 * the schema of their section. Throws ConfigError naming every bad key.
 */
export function loadNodeConfig(
  src: ConfigSource,
  roleSchemas: ReadonlyMap<string, z.ZodType>,
  knownRoles: readonly string[] = [...roleSchemas.keys()],
): NodeConfig {
  const raw = readRawConfig(src);
  const baseDir = src.file ? dirname(resolve(src.file)) : resolve(src.baseDir ?? ".");

  const role = (raw["node"] as Record<string, unknown> | undefined)?.["role"];
  const roleKey = typeof role === "string" ? roleSectionKey(role) : undefined;
  const roleSchema = typeof role === "string" ? roleSchemas.get(role) : undefined;
  const { [roleKey ?? "\0"]: roleRaw, ...baseRaw } = raw;

  const issues: { key: string; message: string }[] = [];
  const base = baseConfigSchema.safeParse(baseRaw);
  if (!base.success) issues.push(...formatIssues([], base.error));
  if (typeof role === "string" && !roleSchema) {
    issues.push({ key: "node.role", message: `unknown role "${role}"; known: ${knownRoles.join(", ")}` });
  }
  let roleConfig: unknown;
  if (roleSchema && roleKey) {
    const parsed = roleSchema.safeParse(roleRaw ?? {});
    if (parsed.success) roleConfig = parsed.data;
    else issues.push(...formatIssues([roleKey], parsed.error));
  }
  if (issues.length || !base.success) {
    const lines = issues.map((i) => `  ${i.key}: ${i.message}`).join("\n");
    throw new ConfigError(`invalid configuration${src.file ? ` in ${src.file}` : ""}:\n${lines}`, issues);
  }
  const cfg = base.data;
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));
  if (cfg.tls) {
    cfg.tls.certFile = abs(cfg.tls.certFile);
    cfg.tls.keyFile = abs(cfg.tls.keyFile);
    if (cfg.tls.clientCaFile) cfg.tls.clientCaFile = abs(cfg.tls.clientCaFile);
  }
  if (cfg.clientTls) {
    for (const k of ["caFile", "certFile", "keyFile"] as const) {
      const v = cfg.clientTls[k];
      if (v) cfg.clientTls[k] = abs(v);
    }
  }
  // An explicit dataDir is relative to the config file; the default is ./data/<id> under
  // the working directory, where `switchyard up` and operators expect it.
  const dataDir = cfg.node.dataDir ? abs(cfg.node.dataDir) : resolve(src.baseDir ?? ".", "data", cfg.node.id);
  return { ...cfg, dataDir, roleConfig };
}
