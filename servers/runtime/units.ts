/**
 * Config value types with units: durations ("250ms", "10s", "5m", "2h" or a number of
 * milliseconds) and byte sizes ("512KiB", "16MiB", "1GiB", "1.5MB" or a number of bytes).
 */
import { z } from "zod";

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/;
const DURATION_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?$/;
const SIZE_BYTES: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  TiB: 1024 ** 4,
};

/** Parses a duration to ms, or undefined when it is not one. */
export function parseDurationMs(v: unknown): number | undefined {
  if (typeof v === "number") return Number.isFinite(v) && v >= 0 ? v : undefined;
  if (typeof v !== "string") return undefined;
  const m = DURATION.exec(v.trim());
  if (!m || !m[1] || !m[2]) return undefined;
  return Math.round(Number(m[1]) * (DURATION_MS[m[2]] ?? NaN));
}

/** Parses a byte size, or undefined when it is not one. */
export function parseBytes(v: unknown): number | undefined {
  if (typeof v === "number") return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  if (typeof v !== "string") return undefined;
  const m = SIZE.exec(v.trim());
  if (!m || !m[1]) return undefined;
  return Math.round(Number(m[1]) * (SIZE_BYTES[m[2] ?? "B"] ?? NaN));
}

/** A zod type for a duration option; the parsed value is in milliseconds. */
export function duration(): z.ZodType<number, unknown> {
  return z.unknown().transform((v, ctx) => {
    const ms = parseDurationMs(v);
    if (ms === undefined) {
      ctx.addIssue({ code: "custom", message: `expected a duration such as "500ms", "10s", "5m" or a number of ms, got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return ms;
  });
}

/** A zod type for a byte-size option; the parsed value is in bytes. */
export function bytes(): z.ZodType<number, unknown> {
  return z.unknown().transform((v, ctx) => {
    const n = parseBytes(v);
    if (n === undefined) {
      ctx.addIssue({ code: "custom", message: `expected a size such as "64KiB", "16MiB" or a number of bytes, got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return n;
  });
}

/** A "host:port" address (port 0 = any free port). */
export function hostPort(): z.ZodString {
  return z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected "host:port", e.g. "127.0.0.1:7000"');
}
