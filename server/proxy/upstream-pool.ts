import type { Http2Session } from "node:http2";
import type { Duplex } from "node:stream";
import type { TunnelSocket } from "../../shared/tunnel-socket.js";
import type { ProxyTarget } from "./proxy-target.js";

export interface UpstreamPoolOptions {
  /** Idle connections kept per workspace port. */
  readonly maxIdlePerTarget: number;
  /**
   * How long an idle connection is kept: shorter than node's default server keep-alive (5 s),
   * so that we close it before the app does and rarely send a request on one being closed.
   */
  readonly idleTimeoutMs: number;
  /** Whether the tunnel's agent session still takes new work (a draining one does not). */
  readonly acceptsNewWork: (session: Http2Session) => boolean;
}

interface IdleUpstream {
  readonly upstream: Duplex;
  readonly timer: NodeJS.Timeout;
  readonly drop: () => void;
}

/**
 * Kept-alive connections to apps (tunnel streams at a response boundary) left by spliced
 * client connections that closed, for the next client connection to the same workspace port:
 * a client that opens a connection per request then costs no tunnel stream, no dial and no
 * new app connection. Most recently used first, so that surplus ones time out.
 */
export class UpstreamPool {
  readonly #options: UpstreamPoolOptions;
  readonly #idle = new Map<string, IdleUpstream[]>();
  #closed = false;

  constructor(options: UpstreamPoolOptions) {
    this.#options = options;
  }

  /** Idle connections held, all targets together. */
  get size(): number {
    let n = 0;
    for (const list of this.#idle.values()) n += list.length;
    return n;
  }

  /** A kept-alive connection to the target, out of the pool; undefined when there is none. */
  take(target: ProxyTarget): Duplex | undefined {
    const list = this.#idle.get(keyOf(target));
    while (list && list.length > 0) {
      const idle = list.pop()!;
      this.#forget(idle);
      if (list.length === 0) this.#idle.delete(keyOf(target));
      if (this.usable(idle.upstream)) return idle.upstream;
      idle.upstream.destroy();
    }
    return undefined;
  }

  /**
   * Keeps a connection that sits at a response boundary, with no listener of its caller left
   * on it; ends it instead when the pool is full, closed or its agent session is going.
   */
  give(target: ProxyTarget, upstream: Duplex): void {
    const key = keyOf(target);
    const list = this.#idle.get(key) ?? [];
    if (this.#closed || list.length >= this.#options.maxIdlePerTarget || !this.usable(upstream)) {
      upstream.end();
      return;
    }
    const drop = () => {
      const current = this.#idle.get(key);
      const at = current?.findIndex((i) => i.upstream === upstream) ?? -1;
      if (at >= 0) {
        const [idle] = current!.splice(at, 1);
        this.#forget(idle!);
        if (current!.length === 0) this.#idle.delete(key);
      }
      upstream.destroy();
    };
    const timer = setTimeout(() => {
      drop();
    }, this.#options.idleTimeoutMs);
    timer.unref();
    // Bytes from an idle app connection answer no request, and an end means the app closed it.
    upstream.on("data", drop);
    upstream.on("end", drop);
    upstream.on("error", drop);
    upstream.on("close", drop);
    upstream.resume();
    list.push({ upstream, timer, drop });
    this.#idle.set(key, list);
  }

  /** Ends the idle connections that ride on an agent session that stops taking new work. */
  closeIdleOf(session: Http2Session): void {
    for (const list of [...this.#idle.values()]) {
      for (const idle of [...list]) {
        if ((idle.upstream as TunnelSocket).http2Stream?.session === session) idle.drop();
      }
    }
  }

  /** Ends every idle connection and keeps no more (server shutdown). */
  close(): void {
    this.#closed = true;
    for (const list of [...this.#idle.values()]) for (const idle of [...list]) idle.drop();
  }

  #forget(idle: IdleUpstream): void {
    clearTimeout(idle.timer);
    idle.upstream.off("data", idle.drop);
    idle.upstream.off("end", idle.drop);
    idle.upstream.off("error", idle.drop);
    idle.upstream.off("close", idle.drop);
  }

  /**
   * Whether a kept-alive app connection may carry a new request: open both ways, and its agent
   * (or peer server) session still takes new work.
   */
  usable(upstream: Duplex): boolean {
    if (upstream.destroyed || !upstream.writable || upstream.readableEnded) return false;
    const tunnel = upstream as TunnelSocket;
    if (tunnel.peerEnded === true) return false;
    const session = tunnel.http2Stream?.session;
    return session === undefined || this.#options.acceptsNewWork(session);
  }
}

function keyOf(target: ProxyTarget): string {
  return `${target.port}-${target.workspaceId}`;
}
