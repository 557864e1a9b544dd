/**
 * A static HTTP/1.1 file server with Range support whose whole output is paced to a
 * byte rate, for the aria2c anchor of the `content` benchmark. Prints its port.
 * Usage: node limited-http-server.js FILE BYTES_PER_SECOND
 */
import { createServer } from "node:http";
import { createReadStream, statSync } from "node:fs";
import { Pacer } from "../../servers/content/pacer.js";

const [file, rateArg] = process.argv.slice(2);
if (!file) throw new Error("usage: limited-http-server FILE RATE");
const size = statSync(file).size;
const pacer = new Pacer(Number(rateArg ?? 0));
const server = createServer((req, res) => {
  let start = 0;
  let end = size - 1;
  const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? "");
  if (m) {
    start = m[1] ? Number(m[1]) : 0;
    end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
    res.writeHead(206, { "Content-Range": `bytes ${start}-${end}/${size}`, "Content-Length": end - start + 1, "Accept-Ranges": "bytes" });
  } else {
    res.writeHead(200, { "Content-Length": size, "Accept-Ranges": "bytes" });
  }
  if (req.method === "HEAD") {
    res.end();
    return;
  }
  const ac = new AbortController();
  res.on("close", () => ac.abort());
  void (async () => {
    try {
      for await (const chunk of createReadStream(file, { start, end, highWaterMark: 256 * 1024 })) {
        await pacer.take((chunk as Buffer).length, ac.signal);
        if (!res.write(chunk)) await new Promise((r) => res.once("drain", r));
      }
      res.end();
    } catch {
      res.destroy();
    }
  })();
});
server.listen(0, "127.0.0.1", () => {
  const a = server.address();
  process.stdout.write(`${typeof a === "object" && a ? a.port : 0}\n`);
});
