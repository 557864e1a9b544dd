/** Role "upper-center": a center whose children are centers; may itself have a parent (any depth). */
import type { RoleDefinition } from "../runtime/role.js";
import { centerConfigSchema, type CenterConfig } from "./config.js";
import { createPassonNode } from "./node.js";

/** The upper-center role. */
export const upperCenterRole: RoleDefinition<CenterConfig> = {
  role: "upper-center",
  summary: "pass-on upper center: serves the apps too costly or rare to install below, maintains its centers",
  configSchema: centerConfigSchema,
  create: (ctx) => createPassonNode("upper-center", ctx),
};
