/**
 * Retrying calls the way gRPC servers ask: after the server's RetryInfo delay when it
 * sent one, with jittered exponential backoff for transient codes otherwise.
 */
import { status as Status } from "@grpc/grpc-js";
import { parseRichError } from "./rich-error.js";

/** How to retry. */
export interface RetryPolicy {
  /** Attempts in total, the first one included. Default 5. */
  maxAttempts?: number;
  /** First backoff when the server gave no RetryInfo, in ms. Default 100. */
  initialBackoffMs?: number;
  /** Largest backoff, in ms. Default 5 000. */
  maxBackoffMs?: number;
  /** Give up when the next wait would pass this total, in ms. Default 60 000. */
  maxTotalWaitMs?: number;
  /** Codes retried without RetryInfo. Default UNAVAILABLE. */
  retryableCodes?: Status[];
  /** Stops waiting and retrying when aborted. */
  signal?: AbortSignal;
  /** Told before each wait: attempt number (1-based) that failed, the error, the wait. */
  onRetry?: (attempt: number, err: unknown, waitMs: number) => void;
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * The wait before retrying `err`, or undefined when it must not be retried.
 * A RetryInfo delay wins; otherwise retryable codes back off exponentially with full jitter.
 */
export function retryDelayFor(err: unknown, attempt: number, p: RetryPolicy = {}): number | undefined {
  const st = parseRichError(err);
  if (st.retryDelayMs !== undefined) return st.retryDelayMs;
  const retryable = p.retryableCodes ?? [Status.UNAVAILABLE];
  if (!retryable.includes(st.code)) return undefined;
  const cap = Math.min(p.maxBackoffMs ?? 5_000, (p.initialBackoffMs ?? 100) * 2 ** (attempt - 1));
  return Math.random() * cap;
}

/** Runs `fn` until it succeeds, the error is final, or the policy's limits are reached. */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, p: RetryPolicy = {}): Promise<T> {
  const maxAttempts = p.maxAttempts ?? 5;
  const maxTotal = p.maxTotalWaitMs ?? 60_000;
  let waited = 0;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      const wait = retryDelayFor(err, attempt, p);
      if (wait === undefined || attempt >= maxAttempts || waited + wait > maxTotal || p.signal?.aborted) throw err;
      p.onRetry?.(attempt, err, wait);
      await sleep(wait, p.signal);
      waited += wait;
    }
  }
}
