/**
 * Writing a download into a file at each piece's offset. A file download does not hand
 * its plaintext to a JavaScript reader: each piece is written where it belongs as soon
 * as it is authenticated, by the thread that decrypted it (this thread, or the fetch
 * worker that fetched it). Plaintext then lives only until its write completed, and with
 * fetch workers it never crosses to the main thread at all (docs/content.md, "File
 * downloads").
 */
import { open, type FileHandle } from "node:fs/promises";

/** Where a file download's fetch workers write: the file's path, under an id of this download. */
export interface FileTarget {
  /** Unique per download (per PieceWorkers), so a worker never confuses two downloads of one path. */
  sink: number;
  path: string;
}

/** Writes all of `bufs` at `position` (repeating short writes); returns the bytes written. */
export async function writeAllAt(fh: FileHandle, bufs: Buffer[], position: number): Promise<number> {
  let rest = bufs.filter((b) => b.length > 0);
  let pos = position;
  while (rest.length > 0) {
    const { bytesWritten } = await fh.writev(rest, pos);
    if (bytesWritten <= 0) throw new Error(`write at offset ${pos} made no progress`);
    pos += bytesWritten;
    let n = bytesWritten;
    let i = 0;
    while (i < rest.length && n >= (rest[i] as Buffer).length) n -= (rest[i++] as Buffer).length;
    rest = rest.slice(i);
    if (n > 0) rest[0] = (rest[0] as Buffer).subarray(n);
  }
  return pos - position;
}

/**
 * A worker's open files, by sink id. Writes are tracked so `close` returns only after the
 * last one finished; a sink once closed is never reopened (a late attempt of a finished
 * download must not write into a file its caller already has back).
 */
export class SinkFiles {
  private readonly open = new Map<number, { fh: Promise<FileHandle>; writes: Set<Promise<number>> }>();
  private readonly closed = new Set<number>();

  /** Writes `bufs` at `position` of the sink's file (opened on first use). */
  write(target: FileTarget, bufs: Buffer[], position: number): Promise<number> {
    if (this.closed.has(target.sink)) return Promise.reject(new Error(`download ${target.sink} is over; not writing to ${target.path}`));
    let f = this.open.get(target.sink);
    if (!f) {
      f = { fh: open(target.path, "r+"), writes: new Set() };
      f.fh.catch(() => undefined); // reported by the write that awaits it
      this.open.set(target.sink, f);
    }
    const file = f;
    const w = file.fh.then((fh) => writeAllAt(fh, bufs, position));
    file.writes.add(w);
    const forget = (): void => {
      file.writes.delete(w);
    };
    w.then(forget, forget);
    return w;
  }

  /** Waits for the sink's writes, closes its file and refuses later writes. */
  async close(sink: number): Promise<void> {
    this.closed.add(sink);
    const f = this.open.get(sink);
    if (!f) return;
    this.open.delete(sink);
    await Promise.allSettled([...f.writes]);
    await (await f.fh.catch(() => undefined))?.close().catch(() => undefined);
  }
}
