/** Shared gRPC plumbing for Switchyard clients and for servers that call other servers. */
export * from "./rich-error.js";
export * from "./channel.js";
export * from "./call.js";
export * from "./retry.js";
export * from "./duration.js";
export * from "./framing.js";
