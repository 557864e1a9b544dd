/** Role "local": the pass-on node on the user's LAN; serves delegated apps, passes the rest to its center. */
import type { RoleDefinition } from "../runtime/role.js";
import { localConfigSchema, type LocalConfig } from "./config.js";
import { createPassonNode } from "./node.js";

/** The local role. */
export const localRole: RoleDefinition<LocalConfig> = {
  role: "local",
  summary: "pass-on local node: runs delegated WebAssembly apps, passes other requests to its center",
  configSchema: localConfigSchema,
  create: (ctx) => createPassonNode("local", ctx),
};
