/** Config pieces shared by the reception and content-server roles. */
import { z } from "zod";
import { parseSecret, type KeySpec } from "./tickets.js";

const KEY_ID = /^[A-Za-z0-9._-]{1,63}$/;

/** A list of `{ id, secret }` keys; secrets are 32 bytes as 64 hex digits or base64. */
export function keyList(what: string): z.ZodType<KeySpec[], unknown> {
  return z
    .array(z.strictObject({ id: z.string().regex(KEY_ID, "1..63 of letters, digits, '.', '_', '-'"), secret: z.string() }))
    .min(1, `at least one ${what} is required`)
    .transform((keys, ctx) => {
      const out: KeySpec[] = [];
      keys.forEach((k, i) => {
        try {
          out.push({ id: k.id, secret: parseSecret(k.secret, "secret") });
        } catch (err) {
          ctx.addIssue({ code: "custom", path: [i, "secret"], message: (err as Error).message });
        }
      });
      if (new Set(keys.map((k) => k.id)).size !== keys.length) ctx.addIssue({ code: "custom", message: "key ids must be unique" });
      return out;
    }) as unknown as z.ZodType<KeySpec[], unknown>;
}
