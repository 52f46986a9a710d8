import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2Session } from "node:http2";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { Logger } from "../../shared/logger.js";
import type { AppConnectionDeps } from "./app-connection.js";
import { MessageExchanges } from "./message-exchange.js";
import type { ProxyTarget } from "./proxy-target.js";
import { SplicedConnection, type SpliceDecision, type SplicedRequest } from "./spliced-connection.js";
import { UpstreamPool } from "./upstream-pool.js";
import type { ForwardedInfo } from "./wire.js";

export interface WorkspaceProxyOptions {
  /** Opens a connection to the app (a tunnel stream), sending `earlyData` with the dial; rejects with a WarrenError. */
  readonly dial: (target: ProxyTarget, earlyData: readonly Buffer[]) => Promise<Duplex>;
  /** How long an app may take to start its answer. */
  readonly upstreamTimeoutMs: number;
  /** Whether the agent (or peer server) session under a kept app connection still takes new work. */
  readonly acceptsNewWork: (session: Http2Session) => boolean;
  /** Drops Warren's own cookies from what goes to the app. */
  readonly filterCookie?: ((cookie: string) => string | undefined) | undefined;
  /** Observes each answer on a spliced connection (node's messages are observed where node answers them). */
  readonly onResponse?: ((status: number, startedAt: bigint) => void) | undefined;
  readonly log: Logger;
}

/** What the front door says about a connection it gives the fast path. */
export interface SpliceOptions {
  readonly proto: "http" | "https";
  readonly decide: (req: SplicedRequest, first: boolean) => Promise<SpliceDecision>;
  /** Gives the connection, with every byte read so far, to node's HTTP server. */
  readonly handOff: (socket: Socket, consumed: Buffer) => void;
}

/** How long a client may take over a request head, and keep an idle connection. */
const HEAD_TIMEOUT_MS = 30_000;
const IDLE_TIMEOUT_MS = 65_000;

/**
 * The workspace proxy: how an authorized HTTP request reaches its app and its answer comes
 * back. Two client sides (spliced HTTP/1.1 connections, and node's messages for HTTP/1.0,
 * Expect and HTTP/2) over one pipeline (AppConnection) and one pool of kept app connections;
 * reaching the workspace is the Dialer's (local agent or the server that holds it).
 */
export class WorkspaceProxy {
  readonly #options: WorkspaceProxyOptions;
  readonly #upstreams: Omit<AppConnectionDeps, "mode">;
  readonly #spliced = new Set<SplicedConnection>();
  readonly #messages: MessageExchanges;
  /** Kept-alive app connections, for every client connection and request. */
  readonly pool: UpstreamPool;

  constructor(options: WorkspaceProxyOptions) {
    this.#options = options;
    // Each kept app connection holds one of the agent's streams (at most 500 per connection):
    // a few dozen per port serve a burst of one-request clients without crowding out the rest.
    this.pool = new UpstreamPool({ maxIdlePerTarget: 32, idleTimeoutMs: 4000, acceptsNewWork: options.acceptsNewWork });
    this.#upstreams = { dial: options.dial, pool: this.pool, timeoutMs: options.upstreamTimeoutMs, log: options.log };
    this.#messages = new MessageExchanges({ upstreams: this.#upstreams, filterCookie: options.filterCookie, log: options.log });
  }

  /** Takes a new HTTP/1.1 client connection on the fast path. */
  splice(socket: Socket, options: SpliceOptions): void {
    const connection = new SplicedConnection({
      socket,
      proto: options.proto,
      decide: options.decide,
      upstreams: this.#upstreams,
      handOff: (s, consumed) => {
        this.#spliced.delete(connection);
        options.handOff(s, consumed);
      },
      filterCookie: this.#options.filterCookie,
      headTimeoutMs: HEAD_TIMEOUT_MS,
      idleTimeoutMs: IDLE_TIMEOUT_MS,
      onResponse: this.#options.onResponse,
      onClose: () => this.#spliced.delete(connection),
      log: this.#options.log,
    });
    this.#spliced.add(connection);
  }

  /** Answers a request node's HTTP server (or its HTTP/2 compatibility layer) parsed. */
  handle(req: IncomingMessage, res: ServerResponse, target: ProxyTarget, forwarded: ForwardedInfo): void {
    this.#messages.handle(req, res, target, forwarded);
  }

  /** Requests in flight on spliced connections. */
  get splicedInFlight(): number {
    let n = 0;
    for (const connection of this.#spliced) n += connection.inFlight;
    return n;
  }

  /** Spliced client connections open now. */
  get splicedConnections(): number {
    return this.#spliced.size;
  }

  /** No new clients will come (drain): kept app connections end, spliced ones close once idle. */
  stopAccepting(): void {
    this.pool.close();
    this.closeIdle();
  }

  /** Closes the spliced connections that are idle now, and the others after their answer in flight. */
  closeIdle(): void {
    for (const connection of this.#spliced) connection.closeWhenIdle();
  }

  /**
   * An agent or peer server session takes no new work: its kept app connections end, and
   * client connections on it send their next request to the agent's new connection.
   */
  moveOffSession(session: Http2Session): void {
    this.pool.closeIdleOf(session);
    for (const connection of this.#spliced) connection.moveOffSession(session);
  }

  destroyAll(): void {
    this.pool.close();
    for (const connection of this.#spliced) connection.destroy();
  }
}
