/**
 * A bandwidth pacer (GCRA / virtual-clock token bucket) shared by every stream of a
 * node: `take(n)` resolves when sending n more bytes keeps the node at or under its
 * rate, allowing a small burst. Used for the node's `bandwidthLimit` option.
 */
import { setTimeout as delay } from "node:timers/promises";

/** Paces bytes to a rate. */
export class Pacer {
  private next = 0;

  /** `rate` in bytes/s (0 = unlimited); `burstBytes` may go out at once after idling. */
  constructor(
    readonly rate: number,
    private readonly burstBytes = Math.max(64 * 1024, rate / 20),
  ) {}

  /** Waits until `n` bytes may be sent. */
  async take(n: number, signal?: AbortSignal): Promise<void> {
    if (this.rate <= 0) return;
    const now = performance.now();
    const slack = (this.burstBytes / this.rate) * 1000;
    const start = Math.max(this.next, now - slack);
    this.next = start + (n / this.rate) * 1000;
    const wait = this.next - slack - now;
    if (wait > 1) await delay(wait, undefined, signal ? { signal } : {});
  }
}
