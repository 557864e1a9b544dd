/**
 * GC tuning for the print nodes that pass page images through their heap.
 *
 * A print worker and the print store handle every page as short-lived buffers — the render
 * process's IPC message, the protobuf and gRPC frames of PutPage, several MB a page at
 * 300 DPI — on a small live heap (~20 MB). With V8's default heap growing for a heap that
 * small, the old-generation limit sat a few tens of MB above the live size, and a full
 * mark-compact (plus concurrent marking) ran every ~5 pages: most of these processes' own
 * CPU a page. A limit further above the live size (heap growing 150 %) makes it one every
 * ~13 pages (the worker's own CPU a page halves) for ~50 MB more RSS at most. The flag is
 * process-wide (role config `heapGrowingPercent`; 0 leaves V8's default, e.g. for nodes run
 * inside a test process).
 */
import { setFlagsFromString } from "node:v8";

/** Lets the old generation grow `percent` % above the live size before a full GC (0: V8's default). */
export function relaxOldGenerationLimit(percent: number): void {
  if (percent > 0) setFlagsFromString(`--heap-growing-percent=${Math.round(percent)}`);
}
