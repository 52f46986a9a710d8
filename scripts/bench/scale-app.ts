import http from "node:http";
import { WebSocketServer } from "ws";

/**
 * The app "inside" every simulated workspace, in a process of its own: GET / answers a small
 * body (probes through the tunnel), and a WebSocket upgrade echoes every message back.
 */
export function runScaleApp(port: number): void {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/plain", "content-length": 13 });
    res.end("hello, world\n");
  });
  server.keepAliveTimeout = 65_000;
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  wss.on("connection", (socket) => {
    socket.on("message", (data, isBinary) => socket.send(data, { binary: isBinary }));
    socket.on("error", () => socket.terminate());
  });
  server.listen(port, "127.0.0.1", () => process.stdout.write(`scale app listening on ${port}\n`));
}
