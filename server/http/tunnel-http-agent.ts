import http, { type ClientRequestArgs } from "node:http";
import type { Duplex } from "node:stream";
import type { Dialer } from "../tunnel/tunnel-dialer.js";

/** Request options that name the workspace port a request goes to. */
export interface TunnelRequestArgs extends ClientRequestArgs {
  readonly workspace: string;
  readonly workspacePort: number;
}

/**
 * node's http.Agent over tunnel streams: each "socket" is a TCP connection to the app inside
 * the workspace, carried by one tunnel stream, and kept alive between requests so that many
 * requests reuse one stream. Sockets are pooled per workspace and port.
 */
export class TunnelHttpAgent extends http.Agent {
  readonly #dialer: Dialer;

  constructor(dialer: Dialer, options: { freeSocketTimeoutMs: number; maxFreeSockets: number }) {
    super({
      keepAlive: true,
      // Shorter than node's default server keep-alive (5 s), so that we close an idle
      // connection before the app does and never send a request on a socket being closed.
      timeout: options.freeSocketTimeoutMs,
      maxFreeSockets: options.maxFreeSockets,
      scheduling: "lifo",
    });
    this.#dialer = dialer;
  }

  override getName(options?: ClientRequestArgs): string {
    const o = options as TunnelRequestArgs;
    return `${o.workspace}:${o.workspacePort}`;
  }

  override createConnection(options: ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    const o = options as TunnelRequestArgs;
    this.#dialer.dial(o.workspace, o.workspacePort).then(
      (socket) => callback?.(null, socket),
      (err: Error) => callback?.(err, undefined as unknown as Duplex),
    );
    return undefined;
  }
}
