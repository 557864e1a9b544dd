/** Every role the `switchyard node` program can run. Subsystems add theirs here. */
import { bareRole } from "./bare/role.js";
import { printJobsRole } from "./print/role-print-jobs.js";
import { printStoreRole } from "./print/role-print-store.js";
import { printWorkerRole } from "./print/role-print-worker.js";
import { printerRole } from "./print/role-printer.js";
import type { RoleDefinition } from "./runtime/role.js";
import type { z } from "zod";

/** Roles by name. */
export const ROLES: ReadonlyMap<string, RoleDefinition<never>> = new Map(
  ([bareRole, printJobsRole, printWorkerRole, printStoreRole, printerRole] as RoleDefinition<never>[]).map((r) => [r.role, r]),
);

/** Config schemas by role name, for loadNodeConfig. */
export function roleSchemas(): ReadonlyMap<string, z.ZodType> {
  return new Map([...ROLES].map(([name, r]) => [name, r.configSchema as z.ZodType]));
}
