/** Channel settings of CLI commands, from the environment (TLS for secured clusters). */
import type { ChannelSettings } from "../../clients/grpc/channel.js";

/**
 * SWITCHYARD_CLIENT_CA / _CERT / _KEY enable TLS (and mTLS with a certificate);
 * SWITCHYARD_CLIENT_SERVER_NAME overrides the expected server name.
 */
export function clientSettings(env: NodeJS.ProcessEnv = process.env): ChannelSettings {
  const caFile = env["SWITCHYARD_CLIENT_CA"];
  if (!caFile) return {};
  return {
    tls: {
      caFile,
      ...(env["SWITCHYARD_CLIENT_CERT"] ? { certFile: env["SWITCHYARD_CLIENT_CERT"] } : {}),
      ...(env["SWITCHYARD_CLIENT_KEY"] ? { keyFile: env["SWITCHYARD_CLIENT_KEY"] } : {}),
      ...(env["SWITCHYARD_CLIENT_SERVER_NAME"] ? { serverNameOverride: env["SWITCHYARD_CLIENT_SERVER_NAME"] } : {}),
    },
  };
}
