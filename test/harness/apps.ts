import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { WebSocketServer } from "ws";

/** An app inside the "workspace": a real HTTP server on a loopback port. */
export interface App {
  readonly port: number;
  readonly server: http.Server;
  /** TCP connections the app has accepted. */
  connections: number;
  close(): Promise<void>;
}

export async function listen(server: http.Server | net.Server, port = 0): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

export async function startApp(handler: http.RequestListener, options: { webSocketEcho?: boolean } = {}): Promise<App> {
  const server = http.createServer(handler);
  const app: App = {
    port: 0,
    server,
    connections: 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  server.on("connection", () => app.connections++);
  if (options.webSocketEcho) {
    const wss = new WebSocketServer({ server });
    wss.on("connection", (ws, req) => {
      ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
      ws.send(JSON.stringify({ hello: req.headers["x-forwarded-host"] ?? null }));
    });
  }
  (app as { port: number }).port = await listen(server);
  return app;
}

/** A free port with nothing listening on it (for "upstream down"). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  const port = await listen(s);
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
