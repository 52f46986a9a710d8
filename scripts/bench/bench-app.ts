import http from "node:http";

const CHUNK = Buffer.alloc(64 * 1024, 0x61);

/**
 * The app "inside the workspace" for benchmarks, in a process of its own:
 * GET / answers a small body, GET /bytes?n=N streams N bytes, POST|PUT /sink counts bytes.
 */
export function runBenchApp(port: number): void {
  const server = http.createServer((req, res) => {
    const url = req.url ?? "/";
    if (url.startsWith("/bytes")) {
      const n = Number(new URL(url, "http://x").searchParams.get("n") ?? "0");
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": n });
      let left = n;
      const pump = () => {
        while (left > 0) {
          const piece = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
          left -= piece.length;
          if (!res.write(piece)) return void res.once("drain", pump);
        }
        res.end();
      };
      pump();
      return;
    }
    if (url.startsWith("/sink")) {
      let n = 0;
      req.on("data", (c: Buffer) => (n += c.length));
      req.on("end", () => res.end(String(n)));
      return;
    }
    res.writeHead(200, { "content-type": "text/plain", "content-length": 13 });
    res.end("hello, world\n");
  });
  server.keepAliveTimeout = 65_000;
  server.listen(port, "127.0.0.1", () => process.stdout.write(`bench app listening on ${port}\n`));
}
