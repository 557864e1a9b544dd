/**
 * Benchmark harness: `npm run bench -- NAME` runs tools/bench/NAME, prints a table and
 * writes bench-results/NAME.json. Every benchmark measures its anchor in the same run and
 * reports ours/anchor, because absolute numbers drift on a shared machine.
 */
import { cpus, freemem, totalmem } from "node:os";

/** One row of results. */
export interface BenchRow {
  metric: string;
  unit: string;
  ours: number;
  anchor: number;
  anchorName: string;
  /** ours / anchor. */
  ratio: number;
  higherIsBetter: boolean;
}

/** What a benchmark module exports as default. */
export type Benchmark = (args: string[]) => Promise<BenchRow[]>;

/** A row with its ratio computed. */
export function row(metric: string, unit: string, ours: number, anchor: number, anchorName: string, higherIsBetter: boolean): BenchRow {
  return { metric, unit, ours, anchor, anchorName, ratio: anchor === 0 ? NaN : ours / anchor, higherIsBetter };
}

/** The machine the numbers were taken on. */
export function machine(): Record<string, unknown> {
  const c = cpus();
  return {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpus: c.length,
    cpuModel: c[0]?.model ?? "unknown",
    totalMemBytes: totalmem(),
    freeMemBytes: freemem(),
    date: new Date().toISOString(),
  };
}

/** Percentile (0..100) of an unsorted sample, nearest-rank. */
export function percentile(sample: number[], p: number): number {
  if (!sample.length) return NaN;
  const s = [...sample].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}

/** Median of a sample. */
export function median(sample: number[]): number {
  return percentile(sample, 50);
}
