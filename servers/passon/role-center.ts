/** Role "center": runs its apps, maintains its locals remotely, keeps billing and user data; passes on upward when it has a parent. */
import type { RoleDefinition } from "../runtime/role.js";
import { centerConfigSchema, type CenterConfig } from "./config.js";
import { createPassonNode } from "./node.js";

/** The center role. */
export const centerRole: RoleDefinition<CenterConfig> = {
  role: "center",
  summary: "pass-on center: runs apps, maintains and delegates to its locals, aggregates billing, masters user data",
  configSchema: centerConfigSchema,
  create: (ctx) => createPassonNode("center", ctx),
};
