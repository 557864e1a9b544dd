/** The node runtime shared by every Switchyard server. */
export * from "./config.js";
export * from "./errors.js";
export * from "./logger.js";
export * from "./metrics.js";
export * from "./node.js";
export * from "./role.js";
export * from "./service.js";
export * from "./store.js";
export * from "./units.js";
export { packageRoot, packageVersion } from "./paths.js";
