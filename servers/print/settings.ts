/** Print settings with their defaults applied and ranges checked. */
import { ColorMode, type PrintSettings } from "../../gen/switchyard/print/v1/print_job.js";
import type { SessionId } from "../../gen/switchyard/print/v1/print_job.js";
import { badField } from "./errors.js";

/** Settings after defaults. */
export interface ResolvedSettings {
  dpi: number;
  colorMode: ColorMode.COLOR | ColorMode.MONOCHROME;
  jpegQuality: number;
  password: string;
}

/** Applies defaults and checks ranges; throws INVALID_ARGUMENT naming the field. */
export function resolveSettings(s: PrintSettings | undefined, field = "settings"): ResolvedSettings {
  const dpi = s?.dpi || 150;
  if (dpi < 36 || dpi > 600) throw badField(`${field}.dpi`, `must be between 36 and 600, got ${dpi}`, "SETTINGS_INVALID");
  const q = s?.jpegQuality || 85;
  if (q < 1 || q > 100) throw badField(`${field}.jpeg_quality`, `must be between 1 and 100, got ${q}`, "SETTINGS_INVALID");
  const mode = s?.colorMode || ColorMode.COLOR;
  if (mode !== ColorMode.COLOR && mode !== ColorMode.MONOCHROME) throw badField(`${field}.color_mode`, `unknown colour mode ${String(mode)}`, "SETTINGS_INVALID");
  return { dpi, colorMode: mode, jpegQuality: q, password: s?.password ?? "" };
}

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** True for a valid job or printer id. */
export function validId(id: string): boolean {
  return ID.test(id);
}

/** Checks a SessionId and returns its store key "job_id/printer_id". */
export function sessionKey(s: SessionId | undefined, field = "session"): string {
  if (!s) throw badField(field, "required");
  if (!validId(s.jobId)) throw badField(`${field}.job_id`, "letters, digits, '.', '_' or '-', at most 63, required");
  if (!validId(s.printerId)) throw badField(`${field}.printer_id`, "letters, digits, '.', '_' or '-', at most 63, required");
  return `${s.jobId}/${s.printerId}`;
}
