/** Configuration of the pass-on roles (`local:`, `center:`, `upperCenter:` sections). */
import { z } from "zod";
import { duration, hostPort } from "../runtime/units.js";

const appName = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, "lower-case letters, digits and '-'");
const moduleRef = z.string().min(1).describe('"demo:NAME" for a demo app built by npm run build, or a path to a .wasm file');

const appEntry = z.strictObject({
  app: appName.describe("application name"),
  module: moduleRef,
  version: z.number().int().min(1).default(1).describe("version; default 1"),
  lease: duration().default(30 * 86_400_000).describe("lease from install; default 30d"),
  timeLimit: duration().optional().describe("per-invocation time limit; default: the node's"),
  memoryPages: z.number().int().min(1).max(65536).optional().describe("memory limit in 64 KiB pages; default: the node's"),
});

const userEntry = z
  .strictObject({
    name: z.string().min(1).max(128).describe("user name"),
    password: z.string().min(1).optional().describe("password in clear (demo clusters); hashed at start"),
    passwordVerifier: z.string().optional().describe('scrypt verifier "scrypt$N$r$p$salt$hash"'),
    apps: z.array(z.string()).default(["*"]).describe('entitled apps; default ["*"] (all)'),
  })
  .refine((u) => u.password !== undefined || u.passwordVerifier !== undefined, { message: "set password or passwordVerifier" });

/** Options shared by the three roles. */
const common = {
  parent: hostPort().optional().describe("address of the parent node (its ControlService and AppGatewayService)"),
  defaultTimeLimit: duration().default(1000).describe("time limit of an invocation when the app sets none; default 1s"),
  maxTimeLimit: duration().default(30_000).describe("largest time limit an app may ask for; default 30s"),
  defaultMemoryPages: z.number().int().min(1).default(16).describe("memory limit in pages when the app sets none; default 16 (1 MiB)"),
  maxMemoryPages: z.number().int().min(1).max(65536).default(1024).describe("largest memory limit an app may ask for; default 1024 (64 MiB)"),
  workers: z.number().int().min(1).max(64).default(2).describe("sandbox worker threads; default 2"),
  maxQueue: z.number().int().min(1).default(1000).describe("invocations that may wait for a worker; default 1000"),
  sessionTtl: duration().default(3_600_000).describe("lifetime of a session token; default 1h"),
  statusInterval: duration().default(2000).describe("how often a child reports to its parent; default 2s"),
  offlineAfter: duration().default(6000).describe("a child silent this long shows offline; default 6s"),
  cacheTtl: duration().default(30_000).describe("a local refreshes a user's cached data after this; default 30s"),
  commandTimeout: duration().default(10_000).describe("how long a center waits for a child to answer a command; default 10s"),
};

/** Options of a center or upper center. */
const centerShape = {
  ...common,
  users: z.array(userEntry).default([]).describe("users this center authenticates and delegates"),
  delegationLease: duration().default(600_000).describe("how long a child may authenticate users alone; default 10m"),
  apps: z.array(appEntry).default([]).describe("apps this node installs on itself at start (signed with its own key)"),
  provision: z
    .array(appEntry.extend({ node: z.string().describe("child node id") }))
    .default([])
    .describe("apps installed on a child when it connects without them (or with an older version)"),
};

/** `local:` section. */
export const localConfigSchema = z.strictObject({ ...common, parent: hostPort().describe("address of the center (required)") });
/** `center:` / `upperCenter:` sections. */
export const centerConfigSchema = z.strictObject(centerShape);

/** Resolved local options. */
export type LocalConfig = z.output<typeof localConfigSchema>;
/** Resolved center options. */
export type CenterConfig = z.output<typeof centerConfigSchema>;
/** Options of any pass-on role (locals have no users, apps or provisioning). */
export type PassonConfig = LocalConfig | CenterConfig;
/** One configured app. */
export type AppEntry = z.output<typeof appEntry>;
