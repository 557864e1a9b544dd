/**
 * Usage records: validation of what a relay reports, and the JSON form they are stored
 * in (LevelDB values are JSON; 64-bit counters are kept as decimal strings).
 */
import type { UsageRecord } from "../../gen/switchyard/relay/v1/usage.js";
import { LeaveReason } from "../../gen/switchyard/relay/v1/usage.js";
import { badField } from "./errors.js";

/** A usage record as stored (JSON-safe). */
export interface StoredUsage {
  recordId: string;
  subscriberId: string;
  stream: string;
  bytes: string;
  frames: string;
  startedAtMs: number;
  endedAtMs: number;
  relayId: string;
  droppedFrames: string;
  leaveReason: number;
}

/** Most records one ReportUsage call may carry. */
export const MAX_RECORDS_PER_REPORT = 500;

const STREAM_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const RECORD_ID = /^[\x21-\x7e]{1,128}$/;

/** True when `name` is a valid stream name. */
export function isStreamName(name: string): boolean {
  return STREAM_NAME.test(name);
}

/** Throws INVALID_ARGUMENT unless `name` is a valid stream name. */
export function checkStreamName(name: string, field = "stream"): void {
  if (!name) throw badField(field, "required", "STREAM_NAME_REQUIRED");
  if (!isStreamName(name)) {
    throw badField(field, "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", "STREAM_NAME_INVALID");
  }
}

/** Converts a record to its stored form. */
export function toStored(r: UsageRecord): StoredUsage {
  return {
    recordId: r.recordId,
    subscriberId: r.subscriberId,
    stream: r.stream,
    bytes: r.bytes.toString(),
    frames: r.frames.toString(),
    startedAtMs: r.startedAt?.getTime() ?? 0,
    endedAtMs: r.endedAt?.getTime() ?? 0,
    relayId: r.relayId,
    droppedFrames: r.droppedFrames.toString(),
    leaveReason: r.leaveReason,
  };
}

/** Converts a stored record back to the message. */
export function fromStored(s: StoredUsage): UsageRecord {
  return {
    recordId: s.recordId,
    subscriberId: s.subscriberId,
    stream: s.stream,
    bytes: BigInt(s.bytes),
    frames: BigInt(s.frames),
    startedAt: new Date(s.startedAtMs),
    endedAt: new Date(s.endedAtMs),
    relayId: s.relayId,
    droppedFrames: BigInt(s.droppedFrames),
    leaveReason: s.leaveReason as LeaveReason,
  };
}

/** Validates a ReportUsage batch; throws INVALID_ARGUMENT naming the first bad field. */
export function checkRecords(records: UsageRecord[]): void {
  if (records.length === 0) throw badField("records", "at least one record is required", "NO_RECORDS");
  if (records.length > MAX_RECORDS_PER_REPORT) {
    throw badField("records", `at most ${MAX_RECORDS_PER_REPORT} records per call, got ${records.length}`, "TOO_MANY_RECORDS");
  }
  records.forEach((r, i) => {
    const f = (name: string): string => `records[${i}].${name}`;
    if (!RECORD_ID.test(r.recordId)) throw badField(f("record_id"), "required: 1-128 printable ASCII characters", "RECORD_ID_INVALID");
    if (!isStreamName(r.stream)) throw badField(f("stream"), "not a valid stream name", "STREAM_NAME_INVALID");
    if (!r.startedAt || Number.isNaN(r.startedAt.getTime())) throw badField(f("started_at"), "required", "START_REQUIRED");
    if (!r.endedAt || Number.isNaN(r.endedAt.getTime())) throw badField(f("ended_at"), "required", "END_REQUIRED");
    if (r.endedAt < r.startedAt) throw badField(f("ended_at"), "before started_at", "END_BEFORE_START");
    if (r.subscriberId.length > 256) throw badField(f("subscriber_id"), "at most 256 characters", "SUBSCRIBER_ID_TOO_LONG");
    if (r.relayId.length > 128) throw badField(f("relay_id"), "at most 128 characters", "RELAY_ID_TOO_LONG");
    if (r.leaveReason === LeaveReason.UNSPECIFIED || LeaveReason[r.leaveReason] === undefined || r.leaveReason === LeaveReason.UNRECOGNIZED) {
      throw badField(f("leave_reason"), "required", "LEAVE_REASON_REQUIRED");
    }
  });
}

/** Reads an opaque page token (base64url of the last key); throws INVALID_ARGUMENT. */
export function readPageToken(token: string): string {
  if (!token) return "";
  const key = Buffer.from(token, "base64url").toString("utf8");
  if (!key || Buffer.from(key, "utf8").toString("base64url") !== token) throw badField("page_token", "not a token this service issued", "PAGE_TOKEN_INVALID");
  return key;
}

/** The page token that continues after `key`. */
export function pageTokenAfter(key: string): string {
  return Buffer.from(key, "utf8").toString("base64url");
}

/** The page size to use: 0 → 100, otherwise 1..1000. */
export function pageSize(n: number): number {
  if (n < 0 || n > 1000) throw badField("page_size", "must be between 0 and 1000", "PAGE_SIZE_INVALID");
  return n === 0 ? 100 : n;
}
