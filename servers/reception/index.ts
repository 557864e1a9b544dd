/** Reception subsystem: roles, ticket crypto and the cores tests and tools use. */
export { receptionRole, type ReceptionInstance } from "./role-reception.js";
export { contentServerRole, type ContentServerInstance } from "./role-content-server.js";
export { deriveServerKey, parseSecret, TicketMinter, TicketVerifier, parseToken, MAX_TOKEN_BYTES } from "./tickets.js";
export { estimateWait, VirtualQueue } from "./queue.js";
export { sampleFile } from "./seed.js";
