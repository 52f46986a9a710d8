import http, { type ClientRequestArgs } from "node:http";
import type { Http2Session } from "node:http2";
import type { Duplex } from "node:stream";
import type { TunnelSocket } from "../../shared/tunnel-socket.js";
import type { Dialer } from "../tunnel/tunnel-dialer.js";

/** Request options that name the workspace port a request goes to. */
export interface TunnelRequestArgs extends ClientRequestArgs {
  readonly workspace: string;
  /** The incarnation authorized: pooled sockets are never shared between incarnations of a name. */
  readonly workspaceId: string;
  readonly workspacePort: number;
}

/**
 * node's http.Agent over tunnel streams: each "socket" is a TCP connection to the app inside
 * the workspace, carried by one tunnel stream, and kept alive between requests so that many
 * requests reuse one stream. Sockets are pooled per workspace and port.
 */
export class TunnelHttpAgent extends http.Agent {
  readonly #dialer: Dialer;
  readonly #acceptsNewWork: (session: Http2Session) => boolean;

  constructor(
    dialer: Dialer,
    options: {
      freeSocketTimeoutMs: number;
      maxFreeSockets: number;
      /** Whether the agent session still takes new work; sockets on a draining one are not kept. */
      acceptsNewWork: (session: Http2Session) => boolean;
    },
  ) {
    super({
      keepAlive: true,
      // Shorter than node's default server keep-alive (5 s), so that we close an idle
      // connection before the app does and never send a request on a socket being closed.
      timeout: options.freeSocketTimeoutMs,
      maxFreeSockets: options.maxFreeSockets,
      scheduling: "lifo",
    });
    this.#dialer = dialer;
    this.#acceptsNewWork = options.acceptsNewWork;
  }

  override keepSocketAlive(socket: Duplex): boolean {
    const tunnel = socket as unknown as TunnelSocket;
    // The app closed its side: HTTP/1.1 is over on this connection (net.Socket would close itself).
    if (tunnel.peerEnded) return false;
    const session = tunnel.http2Stream?.session;
    if (session && !this.#acceptsNewWork(session)) return false;
    return (super.keepSocketAlive as (s: Duplex) => boolean)(socket);
  }

  override getName(options?: ClientRequestArgs): string {
    const o = options as TunnelRequestArgs;
    return `${o.workspaceId}:${o.workspacePort}`;
  }

  /**
   * Ends the kept-alive connections that ride on an agent session that stops taking new
   * work (draining agent), so that its open streams can finish and the agent can exit.
   */
  closeIdleSocketsOf(session: Http2Session): void {
    for (const sockets of Object.values(this.freeSockets)) {
      for (const socket of sockets ?? []) {
        if ((socket as unknown as TunnelSocket).http2Stream?.session !== session) continue;
        // Ended (no longer writable) and then out of the pool, so no request picks it.
        socket.end();
        socket.emit("agentRemove");
        setTimeout(() => socket.destroy(), 5000).unref();
      }
    }
  }

  #isFree(socket: Duplex): boolean {
    return Object.values(this.freeSockets).some((list) => list?.includes(socket as never));
  }

  override createConnection(options: ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    const o = options as TunnelRequestArgs;
    this.#dialer.dial({ name: o.workspace, id: o.workspaceId }, o.workspacePort).then(
      (socket) => {
        // A kept-alive connection the app closes (it exited, or its keep-alive timer ran out)
        // must leave the pool at once: the next request on it would never be answered.
        socket.on("tunnel-peer-end", () => {
          if (this.#isFree(socket)) socket.destroy();
        });
        callback?.(null, socket);
      },
      (err: Error) => callback?.(err, undefined as unknown as Duplex),
    );
    return undefined;
  }
}
