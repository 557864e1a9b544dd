/** The content subsystem's server side: roles and the pieces tests reach into. */
export { contentManagerRole, contentManagerConfigSchema, type ContentManagerConfig } from "./role-content-manager.js";
export { distributionNodeRole, distributionNodeConfigSchema, type DistributionNodeConfig } from "./role-distribution-node.js";
export { Manager } from "./manager.js";
export { GrantSigner } from "./grant.js";
export { PieceStore } from "./piece-store.js";
export { Pacer } from "./pacer.js";
