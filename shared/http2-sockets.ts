import net from "node:net";
import tls from "node:tls";
import type { Duplex } from "node:stream";

/**
 * node:http2 leaves Nagle's algorithm on for its TCP sockets. A tunnel sends many small
 * frames on one connection (a request head here, a WINDOW_UPDATE there): with Nagle, each
 * waits for the ACK of the previous one, which costs milliseconds per request under load.
 * Every HTTP/2 connection Warren makes or accepts turns it off.
 */
export function noDelayConnector(url: URL, options: { ca?: Buffer; servername?: string } = {}): () => Duplex {
  const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return overSocket(url, () => net.connect({ host, port, noDelay: true }), options);
}

/**
 * HTTP/2 for `url` over a given TCP connection (a proxy's CONNECT tunnel, say): TLS with ALPN h2
 * for https://, the connection itself for http:// (prior knowledge).
 */
export function overSocket(url: URL, transport: () => net.Socket, options: { ca?: Buffer; servername?: string } = {}): () => Duplex {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (url.protocol === "https:") {
    return () =>
      tls.connect({
        socket: transport(),
        host,
        // The name the certificate is checked for (SNI too): the host, unless told otherwise.
        servername: options.servername ?? (net.isIP(host) ? undefined : host),
        ALPNProtocols: ["h2"],
        ...(options.ca ? { ca: options.ca } : {}),
      });
  }
  return transport;
}

/** Turns Nagle off on every connection a server accepts (before HTTP/2 takes the socket). */
export function acceptWithNoDelay(server: net.Server): void {
  server.on("connection", (socket: net.Socket) => socket.setNoDelay(true));
}
