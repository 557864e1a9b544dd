/**
 * Structured JSON logs (pino). Secrets never reach the log: fields named like tokens,
 * tickets, keys, passwords or payloads are redacted wherever they appear one or two levels
 * deep, and handlers log ids and sizes, never request bodies.
 */
import { pino, type Logger, type LevelWithSilent, type DestinationStream } from "pino";

export type { Logger };

const SECRET_FIELDS = ["token", "ticket", "key", "secret", "password", "authorization", "payload", "data", "grant"];

/** Paths pino redacts: each secret field at the top level and one or two levels down. */
export const REDACT_PATHS = SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]);

/** Creates the node's logger; every line carries the node id and role. */
export function createLogger(opts: {
  level: LevelWithSilent;
  nodeId: string;
  role: string;
  destination?: DestinationStream;
}): Logger {
  return pino(
    {
      level: opts.level,
      base: { node: opts.nodeId, role: opts.role, pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
