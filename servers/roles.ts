/** Every role the `switchyard node` program can run. Subsystems add theirs here. */
import { bareRole } from "./bare/role.js";
import { contentManagerRole } from "./content/role-content-manager.js";
import { distributionNodeRole } from "./content/role-distribution-node.js";
import type { RoleDefinition } from "./runtime/role.js";
import type { z } from "zod";

/** Roles by name. */
export const ROLES: ReadonlyMap<string, RoleDefinition<never>> = new Map(
  ([bareRole, contentManagerRole, distributionNodeRole] as RoleDefinition<never>[]).map((r) => [r.role, r]),
);

/** Config schemas by role name, for loadNodeConfig. */
export function roleSchemas(): ReadonlyMap<string, z.ZodType> {
  return new Map([...ROLES].map(([name, r]) => [name, r.configSchema as z.ZodType]));
}
