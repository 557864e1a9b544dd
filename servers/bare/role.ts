/**
 * Role "bare": a node with only the services every node has (NodeService, health,
 * reflection). Useful to check a machine's setup, as a target for `NodeService.Echo`
 * load tests, and by the runtime benchmark.
 */
import { z } from "zod";
import type { RoleDefinition } from "../runtime/role.js";

/** The bare role has no options of its own. */
export const bareRole: RoleDefinition<Record<string, never>> = {
  role: "bare",
  summary: "only the common services (node info and load, health, reflection)",
  configSchema: z.strictObject({}),
  create: async () => ({ services: [] }),
};
