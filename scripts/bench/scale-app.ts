import http from "node:http";
import net from "node:net";
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

/**
 * A plain TCP relay to 127.0.0.1:target, in a process of its own. Two in a row put as many
 * processes and loopback hops between client and app as Warren does (server, agent), with
 * none of its work: the floor for what those hops cost on this machine.
 */
export function runTcpRelay(port: number, target: number): void {
  const server = net.createServer({ noDelay: true }, (client) => {
    const upstream = net.connect({ host: "127.0.0.1", port: target, noDelay: true });
    client.pipe(upstream).pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", close).on("close", close);
    upstream.on("error", close).on("close", close);
  });
  server.listen(port, "127.0.0.1", () => process.stdout.write(`tcp relay listening on ${port}\n`));
}
