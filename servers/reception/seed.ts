/**
 * Deterministic sample content for the default cluster: small real files (a text, a
 * CSV, a PPM image, a binary blob) generated from a seed, so nothing large is committed
 * and every content server of the cluster holds byte-identical copies.
 */
import { createHash } from "node:crypto";

/** Kinds of generated sample files. */
export type SampleKind = "text" | "csv" | "ppm" | "binary";

/** A deterministic byte stream (SHA-256 in counter mode over the seed). */
function prng(seed: string): (n: number) => Buffer {
  let counter = 0;
  let pool = Buffer.alloc(0);
  return (n) => {
    while (pool.length < n) {
      pool = Buffer.concat([pool, createHash("sha256").update(`${seed}:${counter++}`).digest()]);
    }
    const out = pool.subarray(0, n);
    pool = pool.subarray(n);
    return Buffer.from(out);
  };
}

const WORDS = "reception ticket content server order load queue wait admitted fetch client capacity estimate stream sealed verify replay expiry distance round trip".split(" ");

/** Generates `bytes` bytes of a sample file of `kind` from `seed`. */
export function sampleFile(kind: SampleKind, bytes: number, seed: string): { data: Buffer; contentType: string } {
  const rnd = prng(seed);
  if (kind === "binary") return { data: rnd(bytes), contentType: "application/octet-stream" };
  if (kind === "ppm") {
    const side = Math.max(1, Math.floor(Math.sqrt(bytes / 3)));
    const head = Buffer.from(`P6\n${side} ${side}\n255\n`);
    const px = Buffer.alloc(side * side * 3);
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        const o = (y * side + x) * 3;
        px[o] = (x * 255) / side;
        px[o + 1] = (y * 255) / side;
        px[o + 2] = ((x ^ y) * 4) & 255;
      }
    }
    return { data: Buffer.concat([head, px]), contentType: "image/x-portable-pixmap" };
  }
  const lines: string[] = [];
  let len = 0;
  for (let i = 0; len < bytes; i++) {
    const r = rnd(8);
    const line =
      kind === "csv"
        ? i === 0
          ? "order_id,client,item,bytes,wait_ms"
          : `${i},client-${r.readUInt16BE(0) % 500},item-${r[2]! % 16},${r.readUInt16BE(3)},${r.readUInt16BE(5) % 5000}`
        : Array.from(r, (b) => WORDS[b % WORDS.length]).join(" ") + ".";
    lines.push(line);
    len += line.length + 1;
  }
  const data = Buffer.from(lines.join("\n") + "\n").subarray(0, bytes);
  return { data: Buffer.from(data), contentType: kind === "csv" ? "text/csv" : "text/plain" };
}
