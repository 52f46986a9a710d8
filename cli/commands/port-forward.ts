import net from "node:net";
import WebSocket from "ws";
import { bridgeWebSocket } from "../../shared/websocket-bridge.js";
import { lookup } from "../api-client.js";

/** One `--tcp [LOCAL_ADDR:]LOCAL_PORT:REMOTE_PORT`. */
export interface TcpForward {
  readonly localAddress: string;
  readonly localPort: number;
  readonly remotePort: number;
}

/** Parses a --tcp value; throws with a message naming what is wrong. */
export function parseTcpForward(raw: string): TcpForward {
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[^:\s]+):)?(\d{1,5}):(\d{1,5})$/.exec(raw.trim());
  if (!m) throw new Error(`--tcp: "${raw}" is not [LOCAL_ADDR:]LOCAL_PORT:REMOTE_PORT (e.g. 5432:5432 or 0.0.0.0:8080:80)`);
  const localAddress = (m[1] ?? "127.0.0.1").replace(/^\[|\]$/g, "");
  const localPort = Number(m[2]);
  const remotePort = Number(m[3]);
  if (localPort > 65535) throw new Error(`--tcp ${raw}: local port ${localPort} is not a port number 0-65535`);
  if (remotePort < 1 || remotePort > 65535) throw new Error(`--tcp ${raw}: remote port ${remotePort} is not a port number 1-65535`);
  return { localAddress, localPort, remotePort };
}

/** The WebSocket URL of one forwarded connection, on the server's root domain. */
export function portForwardUrl(server: string, workspace: string, port: number): string {
  const url = new URL("/-/port-forward", server);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("workspace", workspace);
  url.searchParams.set("port", String(port));
  return url.toString();
}

export interface ForwardTarget {
  readonly server: string;
  readonly token: string;
}

/**
 * Opens one WebSocket to `path` on the server and resolves once it is open, paused (the caller
 * resumes it once it listens); rejects with the
 * server's own message when it refuses (the HTTP status's text body), or when it cannot be
 * reached.
 */
export function openTunnelSocket(target: ForwardTarget, url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      headers: { authorization: `Bearer ${target.token}`, "user-agent": "warren-cli" },
      perMessageDeflate: false,
      lookup,
      handshakeTimeout: 30_000,
      maxPayload: 16 * 1024 * 1024,
      // Masking (an XOR of every byte sent, in JavaScript here) keeps a script in a browser from
      // steering bytes on the wire that a transparent proxy might misread; under TLS no
      // intermediary sees them, and a zero mask lets both ends skip the work.
      ...(url.startsWith("wss:") ? { generateMask: (mask: Buffer) => void mask.fill(0) } : {}),
    });
    // Paused until the caller attaches its listeners: a server that speaks first (an SSH
    // banner, a database greeting) may have its first message in the same read as the 101.
    ws.once("open", () => {
      ws.pause();
      resolve(ws);
    });
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c.slice(0, 2000)));
      res.on("end", () => reject(new Error(body.trim() || `the server answered HTTP ${res.statusCode}`)));
      res.on("error", () => reject(new Error(`the server answered HTTP ${res.statusCode}`)));
    });
    ws.once("error", (err: NodeJS.ErrnoException) => reject(new Error(`cannot reach ${new URL(target.server).origin}: ${err.code ?? err.message}`)));
  });
}

export interface PortForwardRun {
  /** Resolves when every listener is up, with the addresses bound (port 0 picks a free one). */
  readonly listening: Promise<Array<{ address: string; port: number; remotePort: number }>>;
  close(): void;
}

/**
 * Listens on each local address; each connection accepted goes through the server to the
 * port in the workspace, over a WebSocket of its own. A refused connection is closed and its
 * reason printed once per distinct message.
 */
export function startPortForward(target: ForwardTarget, workspace: string, forwards: readonly TcpForward[], report: (line: string) => void): PortForwardRun {
  const servers: net.Server[] = [];
  const said = new Set<string>();
  const listening = Promise.all(
    forwards.map(
      (f) =>
        new Promise<{ address: string; port: number; remotePort: number }>((resolve, reject) => {
          const server = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (socket) => {
            socket.on("error", () => {});
            openTunnelSocket(target, portForwardUrl(target.server, workspace, f.remotePort)).then(
              (ws) =>
                void bridgeWebSocket(ws, socket).then((end) => {
                  if (end.reset && !said.has(end.reset)) {
                    said.add(end.reset);
                    report(`warren: port-forward ${f.localAddress}:${f.localPort} -> ${workspace}:${f.remotePort}: connection reset: ${end.reset}`);
                  }
                }),
              (err: Error) => {
                if (!said.has(err.message)) {
                  said.add(err.message);
                  report(`warren: port-forward ${f.localAddress}:${f.localPort} -> ${workspace}:${f.remotePort}: ${err.message}`);
                }
                socket.destroy();
              },
            );
          });
          servers.push(server);
          server.once("error", (err: NodeJS.ErrnoException) =>
            reject(new Error(`cannot listen on ${f.localAddress}:${f.localPort}: ${err.code === "EADDRINUSE" ? "the address is in use" : (err.code ?? err.message)}`)),
          );
          server.listen(f.localPort, f.localAddress, () => {
            const address = server.address() as net.AddressInfo;
            resolve({ address: address.address, port: address.port, remotePort: f.remotePort });
          });
        }),
    ),
  );
  return {
    listening,
    close: () => {
      for (const server of servers) server.close();
    },
  };
}
