/**
 * Every role the `switchyard node` program can run. Role modules load lazily: a node
 * imports only its own role's code (a relay never loads pdf.js). Subsystems add an entry.
 */
import type { z } from "zod";
import type { RoleDefinition } from "./runtime/role.js";

/** A role known to the node program. */
interface RoleEntry {
  summary: string;
  load: () => Promise<RoleDefinition<never>>;
  /** V8 options the role's process should start with (`switchyard up` passes them). */
  v8Flags?: readonly string[];
}

const entries: Record<string, RoleEntry> = {
  bare: {
    summary: "only the common services (node info and load, health, reflection)",
    load: async () => (await import("./bare/role.js")).bareRole as RoleDefinition<never>,
  },
  local: {
    summary: "pass-on local server: runs delegated WebAssembly apps, passes the rest up",
    load: async () => (await import("./passon/index.js")).localRole as RoleDefinition<never>,
  },
  center: {
    summary: "pass-on center: installs apps remotely, delegates sign-on, keeps user data and billing",
    load: async () => (await import("./passon/index.js")).centerRole as RoleDefinition<never>,
  },
  "upper-center": {
    summary: "pass-on upper center: the top of the hierarchy",
    load: async () => (await import("./passon/index.js")).upperCenterRole as RoleDefinition<never>,
  },
  "stream-source": {
    summary: "relay: publishes live streams (published by clients or built-in generators), meters subscribers",
    load: async () => (await import("./relay/role-stream-source.js")).streamSourceRole as RoleDefinition<never>,
  },
  relay: {
    summary: "relay: joins many subscribers onto one upstream subscription, meters and reports usage",
    load: async () => (await import("./relay/role-relay.js")).relayRole as RoleDefinition<never>,
  },
  reception: {
    summary: "reception: admits orders to the least-loaded content server with sealed single-use tickets",
    load: async () => (await import("./reception/role-reception.js")).receptionRole as RoleDefinition<never>,
  },
  "content-server": {
    summary: "reception: serves catalog items to clients holding a ticket, reports its load",
    load: async () => (await import("./reception/role-content-server.js")).contentServerRole as RoleDefinition<never>,
  },
  "content-manager": {
    summary: "content: splits, encrypts and places uploads, hands out manifests, drains and repairs nodes",
    load: async () => (await import("./content/role-content-manager.js")).contentManagerRole as RoleDefinition<never>,
  },
  "distribution-node": {
    summary: "content: stores encrypted pieces and serves them to holders of a grant",
    load: async () => (await import("./content/role-distribution-node.js")).distributionNodeRole as RoleDefinition<never>,
    // Each GetPiece call allocates a few hundred KiB of short-lived objects; with V8's
    // default young generation (16 MiB semi-spaces at most) that meant frequent scavenges
    // and new-space pages faulted in again: 13-16 % less node CPU per byte served with 32
    // MiB (alternating runs, docs/content.md).
    v8Flags: ["--max-semi-space-size=32"],
  },
  "print-jobs": {
    summary: "print: takes print jobs and drives each one through the workers' steps",
    load: async () => (await import("./print/role-print-jobs.js")).printJobsRole as RoleDefinition<never>,
  },
  "print-worker": {
    summary: "print: stateless worker (issue token, download, convert PDF to JPEG pages, complete)",
    load: async () => (await import("./print/role-print-worker.js")).printWorkerRole as RoleDefinition<never>,
  },
  "print-store": {
    summary: "print: the session store the workers share (sessions, tokens, documents, pages)",
    load: async () => (await import("./print/role-print-store.js")).printStoreRole as RoleDefinition<never>,
  },
  printer: {
    summary: "print: a printer that pulls pages with its token and writes PWG raster",
    load: async () => (await import("./print/role-printer.js")).printerRole as RoleDefinition<never>,
  },
};

/** Names and one-line summaries of every role. */
export function roleSummaries(): { role: string; summary: string }[] {
  return Object.entries(entries).map(([role, e]) => ({ role, summary: e.summary }));
}

/** V8 options a role's process should start with (none for most roles). */
export function roleV8Flags(name: string): string[] {
  return [...((Object.hasOwn(entries, name) ? entries[name]?.v8Flags : undefined) ?? [])];
}

/** Names of every role. */
export function roleNames(): string[] {
  return Object.keys(entries);
}

/** Loads a role's definition; undefined for an unknown role. */
export async function loadRole(name: string): Promise<RoleDefinition<never> | undefined> {
  const entry = Object.hasOwn(entries, name) ? entries[name] : undefined;
  if (!entry) return undefined;
  const def = await entry.load();
  if (def.role !== name) throw new Error(`role module for ${name} defines ${def.role}`);
  return def;
}

/** Config schemas for loadNodeConfig: the loaded role's, plus every name (for the error text). */
export async function roleSchemasFor(name: string | undefined): Promise<ReadonlyMap<string, z.ZodType>> {
  const role = name ? await loadRole(name) : undefined;
  return role ? new Map([[role.role, role.configSchema as z.ZodType]]) : new Map();
}
