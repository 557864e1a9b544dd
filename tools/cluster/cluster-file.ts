/**
 * Cluster files: which nodes `switchyard up` starts, with what configuration.
 *
 * ```yaml
 * defaults:            # merged (deeply) into every node's configuration
 *   log: { level: info }
 * nodes:
 *   - id: reception-1
 *     role: reception
 *     listen: 127.0.0.1:7410          # optional; default 127.0.0.1:0
 *     config:                          # any node config sections, merged over defaults
 *       reception: { capacity: 10 }
 *   - id: content-1
 *     role: content-server
 *     config:
 *       contentServer: { reception: "${reception-1.address}" }
 * tips:                                # printed after start, with references resolved
 *   - "npx switchyard status"
 * ```
 * `${ID.address}` anywhere in a node's config (or a tip) is replaced by the address node ID
 * advertises once it serves; a node starts after every node it refers to.
 */
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";

const nodeEntry = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/),
  role: z.string(),
  listen: z.string().optional(),
  config: z.record(z.string(), z.unknown()).default({}),
});

const clusterSchema = z.strictObject({
  defaults: z.record(z.string(), z.unknown()).default({}),
  nodes: z.array(nodeEntry).min(1),
  tips: z.array(z.string()).default([]),
});

/** One node of a cluster file. */
export type ClusterNode = z.output<typeof nodeEntry>;
/** A parsed cluster file. */
export type ClusterFile = z.output<typeof clusterSchema>;

const REF = /\$\{([a-z0-9][a-z0-9._-]*)\.address\}/g;

/** Reads and validates a cluster file; the error names the bad key. */
export function readClusterFile(file: string): ClusterFile {
  const raw = parseYaml(readFileSync(file, "utf8")) as unknown;
  const parsed = clusterSchema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".") || "(root)"}: ${i.message}`);
    throw new Error(`invalid cluster file ${file}:\n${lines.join("\n")}`);
  }
  const ids = new Set<string>();
  for (const n of parsed.data.nodes) {
    if (ids.has(n.id)) throw new Error(`invalid cluster file ${file}: node id ${n.id} appears twice`);
    ids.add(n.id);
  }
  for (const n of parsed.data.nodes) {
    for (const ref of referencesOf(n.config)) {
      if (!ids.has(ref)) throw new Error(`invalid cluster file ${file}: node ${n.id} refers to unknown node ${ref}`);
      if (ref === n.id) throw new Error(`invalid cluster file ${file}: node ${n.id} refers to itself`);
    }
  }
  return parsed.data;
}

/** Ids of the nodes a config value refers to through `${ID.address}`. */
export function referencesOf(value: unknown): Set<string> {
  const out = new Set<string>();
  const walk = (v: unknown): void => {
    if (typeof v === "string") for (const m of v.matchAll(REF)) out.add(m[1] as string);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === "object") Object.values(v).forEach(walk);
  };
  walk(value);
  return out;
}

/** Replaces `${ID.address}` references with known addresses. */
export function resolveReferences<T>(value: T, addresses: ReadonlyMap<string, string>): T {
  const walk = (v: unknown): unknown => {
    if (typeof v === "string") {
      return v.replace(REF, (whole, id: string) => addresses.get(id) ?? whole);
    }
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return walk(value) as T;
}

/** Deep merge of plain objects; arrays and scalars of `over` replace those of `base`. */
export function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] =
      v && typeof v === "object" && !Array.isArray(v) && b && typeof b === "object" && !Array.isArray(b)
        ? deepMerge(b as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}
