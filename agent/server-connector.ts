import tls from "node:tls";
import http2, { type ClientHttp2Session } from "node:http2";
import type { Duplex } from "node:stream";
import { AlwaysReadingSocket, noDelayConnector, overSocket } from "../shared/http2-sockets.js";
import { openTunnel, proxyFor } from "../shared/proxy.js";
import { TUNNEL_WINDOWS } from "../shared/tunnel-windows.js";

/** What a connector reports back to the agent session that asked for a connection. */
export interface ConnectOutcome {
  /** False once the session gave up meanwhile (it was closed): a connection made late is dropped. */
  readonly wanted: () => boolean;
  /**
   * The HTTP/2 session is made. Called in the same turn as http2.connect, so that the caller's
   * listeners are on before node can emit any of the session's events ('connect' comes next tick).
   */
  readonly connected: (session: ClientHttp2Session) => void;
  /** No connection: why, in words for the agent's log. */
  readonly failed: (message: string) => void;
}

/**
 * Reaches a server and makes the HTTP/2 session of an agent on it. The default is
 * connectToServer; unit specs pass one that hands over a fake session.
 */
export type ServerConnector = (server: URL, ca: Buffer | undefined, outcome: ConnectOutcome) => void;

/** Why a connection to `server` failed, as the agent logs it. */
export function describeConnectFailure(server: URL, err: NodeJS.ErrnoException): string {
  return err.code === "ECONNREFUSED" ? `connection refused by ${server.host}` : err.message;
}

/**
 * TCP or TLS (verified against `ca` when given) to the server, through HTTPS_PROXY/HTTP_PROXY
 * when one applies, then HTTP/2 with the tunnel's flow-control windows.
 */
export const connectToServer: ServerConnector = (server, ca, outcome) => {
  let proxy: URL | undefined;
  try {
    proxy = proxyFor(server);
  } catch (err) {
    outcome.failed((err as Error).message);
    return;
  }
  if (!proxy) {
    connectVia(server, noDelayConnector(server, { ca }), outcome);
    return;
  }
  // Through the proxy: the CONNECT tunnel first, so a refusal is reported as the proxy's own answer.
  const port = Number(server.port || (server.protocol === "https:" ? 443 : 80));
  openTunnel(proxy, server.hostname.replace(/^\[|\]$/g, ""), port).then(
    (socket) => {
      if (!outcome.wanted()) socket.destroy();
      else connectVia(server, overSocket(server, () => socket, { ca }), outcome);
    },
    (err: Error) => outcome.failed(err.message),
  );
};

/**
 * Makes the connection, then the HTTP/2 session on it once it is up (TLS: verified): node
 * wraps the stream-like socket handed to it at once, so a failure to connect is reported here.
 */
function connectVia(server: URL, createConnection: () => Duplex, outcome: ConnectOutcome): void {
  let socket: Duplex;
  try {
    socket = createConnection();
  } catch (err) {
    outcome.failed((err as Error).message);
    return;
  }
  const state = socket as Duplex & { connecting?: boolean; secureConnecting?: boolean };
  if (!state.connecting && !state.secureConnecting) {
    startHttp2(server, socket, outcome);
    return;
  }
  const event = socket instanceof tls.TLSSocket ? "secureConnect" : "connect";
  const onError = (err: NodeJS.ErrnoException) => {
    socket.off(event, onReady);
    socket.destroy();
    outcome.failed(describeConnectFailure(server, err));
  };
  const onReady = () => {
    socket.off("error", onError);
    if (!outcome.wanted()) socket.destroy();
    else startHttp2(server, socket, outcome);
  };
  socket.once("error", onError);
  socket.once(event, onReady);
}

function startHttp2(server: URL, socket: Duplex, outcome: ConnectOutcome): void {
  let session: ClientHttp2Session;
  try {
    session = http2.connect(server.origin, {
      settings: {
        initialWindowSize: TUNNEL_WINDOWS.streamWindowBytes,
        maxFrameSize: TUNNEL_WINDOWS.maxFrameBytes,
        enablePush: false,
      },
      maxSessionMemory: TUNNEL_WINDOWS.maxSessionMemoryMb,
      // Reads on while a write is blocked: bulk both ways cannot deadlock the connection.
      createConnection: () => new AlwaysReadingSocket(socket),
    });
  } catch (err) {
    outcome.failed((err as Error).message);
    return;
  }
  outcome.connected(session);
}
