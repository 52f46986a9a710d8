import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { WebSocketServer } from "ws";
import { TUNNEL_WINDOWS } from "../../shared/tunnel-windows.js";

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

const FLOOR_SETTINGS = { initialWindowSize: TUNNEL_WINDOWS.streamWindowBytes, maxFrameSize: TUNNEL_WINDOWS.maxFrameBytes };

/**
 * The floor of an idle agent on node:http2: a bare server with Warren's settings and windows
 * that answers every stream with response headers and keeps it open, nothing else.
 */
export function runH2FloorServer(): void {
  const server = http2.createServer({ settings: FLOOR_SETTINGS, maxSessionMemory: TUNNEL_WINDOWS.maxSessionMemoryMb });
  const ignore = () => {};
  server.on("session", (session) => {
    session.on("error", ignore);
    session.once("remoteSettings", () => session.setLocalWindowSize(TUNNEL_WINDOWS.sessionWindowBytes));
  });
  server.on("stream", (stream) => {
    stream.on("error", ignore);
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
  });
  server.listen(0, "127.0.0.1", () => process.stdout.write(`h2 floor server listening on ${(server.address() as net.AddressInfo).port}\n`));
}

/** `count` sessions to the floor server, each with a control stream and two idle streams, like an agent's. */
export function runH2FloorClient(port: number, count: number): void {
  const headers = {
    ":method": "POST",
    ":path": "/warren.v1.AgentService/Tunnel",
    "content-type": "application/grpc",
    te: "trailers",
    authorization: `Bearer wat_${"0".repeat(56)}`,
    "user-agent": "warren-agent/0.1.0",
  };
  const sessions: http2.ClientHttp2Session[] = [];
  let answered = 0;
  const open = (i: number) => {
    for (; i < count; i++) {
      const session = http2.connect(`http://127.0.0.1:${port}`, { settings: FLOOR_SETTINGS, maxSessionMemory: TUNNEL_WINDOWS.maxSessionMemoryMb });
      session.on("error", () => {});
      sessions.push(session);
      for (let s = 0; s < 3; s++) {
        const stream = session.request(headers, { endStream: false });
        stream.on("error", () => {});
        stream.once("response", () => {
          if (++answered === 3 * count) process.stdout.write(`h2 floor client ready: ${count} sessions\n`);
        });
      }
      // A few hundred at a time, as the agents are connected.
      if (i % 250 === 249) return void setTimeout(() => open(i + 1), 50);
    }
  };
  open(0);
}
