import net from "node:net";
import tls from "node:tls";
import { Duplex } from "node:stream";

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

/**
 * A connection for node:http2 that keeps reading from the network while a write is blocked.
 *
 * node's HTTP/2 session stops reading its socket while a write to it is in progress (the
 * kernel's send buffer is full). Two such peers moving bulk data both ways at once (50 port
 * forwards uploading and downloading through one agent connection) fill both send buffers,
 * both stop reading, and neither write ever completes: the connection hangs until liveness
 * drops it. Wrapped in this stream, one side (the agent) reads on regardless: what arrives
 * while HTTP/2 is not reading waits here, bounded by the flow-control windows this side
 * advertised, and the peer's writes complete.
 */
export class AlwaysReadingSocket extends Duplex {
  readonly #socket: Duplex & { bytesRead?: number; bytesWritten?: number };

  constructor(socket: Duplex) {
    // Nothing is held back on this side: the HTTP/2 windows bound what can arrive.
    super({ allowHalfOpen: false, readableHighWaterMark: 64 * 1024 * 1024 });
    this.#socket = socket;
    socket.on("data", (chunk: Buffer) => this.push(chunk));
    socket.on("end", () => this.push(null));
    socket.on("error", (err: Error) => this.destroy(err));
    socket.on("close", () => this.destroy());
  }

  /** Bytes received from the network (liveness counts them, read by HTTP/2 or not yet). */
  get bytesRead(): number {
    return this.#socket.bytesRead ?? 0;
  }

  get bytesWritten(): number {
    return this.#socket.bytesWritten ?? 0;
  }

  override _read(): void {
    // Always flowing from the socket (see above).
  }

  /*
   * Writes complete as soon as the socket has the bytes, not when the kernel took them: a write
   * node's HTTP/2 sees as in progress stops it reading (the deadlock above), and a write still
   * pending when the session is destroyed trips an internal assertion in node's JS stream
   * socket (ERR_INTERNAL_ASSERTION in JSStreamSocket.doWrite, seen in a reconnect storm of
   * 5,000 agents). What waits in the socket is bounded by HTTP/2 flow control: DATA never
   * exceeds the windows the server granted (TUNNEL_WINDOWS: 32 MiB per connection).
   */
  override _write(chunk: Buffer, encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#socket.write(chunk, encoding);
    callback();
  }

  override _writev(chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>, callback: (err?: Error | null) => void): void {
    const socket = this.#socket as Duplex & { cork(): void; uncork(): void };
    socket.cork();
    for (const { chunk } of chunks) socket.write(chunk);
    socket.uncork();
    callback();
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.#socket.end(callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.#socket.destroy(err ?? undefined);
    callback(err);
  }
}
