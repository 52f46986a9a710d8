import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { Dialer } from "../tunnel/tunnel-dialer.js";
import { sendUpgradeError } from "./error-response.js";
import { requestHeadersForUpstream, type ForwardedInfo } from "./headers.js";
import type { ProxyTarget } from "./reverse-proxy.js";

export interface WebSocketProxyOptions {
  readonly dialer: Dialer;
  readonly upstreamTimeoutMs: number;
  readonly log: Logger;
  readonly filterCookie?: (cookie: string) => string | undefined;
  /** Observes how each upgrade ended up: spliced to the app (ok) or failed (metrics). */
  readonly onOutcome?: (outcome: "ok" | "failed") => void;
}

/**
 * Upgrades (WebSocket and any other HTTP/1.1 Upgrade) pass through as bytes: the request head
 * is rewritten like any proxied request and written on a fresh tunnel stream, and from then on
 * both directions are spliced, the app's 101 answer included.
 */
export class WebSocketProxy {
  readonly #options: WebSocketProxyOptions;
  #open = 0;
  /** Client sockets of the upgraded connections, for closeAll() at shutdown. */
  readonly #clients = new Set<Duplex>();

  constructor(options: WebSocketProxyOptions) {
    this.#options = options;
  }

  /** Upgraded connections open now. */
  get openCount(): number {
    return this.#open;
  }

  /** Closes every upgraded connection (shutdown: their clients reconnect elsewhere). Never blocks. */
  closeAll(): void {
    for (const client of this.#clients) client.destroy();
  }

  async handle(req: IncomingMessage, client: Duplex, head: Buffer, target: ProxyTarget, forwarded: ForwardedInfo): Promise<void> {
    client.on("error", () => client.destroy());
    let upstream;
    try {
      upstream = await this.#options.dialer.dial(target.workspace, target.port);
    } catch (err) {
      this.#options.onOutcome?.("failed");
      sendUpgradeError(client, err);
      return;
    }
    if (client.destroyed) {
      upstream.destroy();
      return;
    }
    this.#open++;
    this.#clients.add(client);
    upstream.once("close", () => {
      this.#open--;
      this.#clients.delete(client);
    });
    const headers = requestHeadersForUpstream(req, forwarded, { upgrade: true, filterCookie: this.#options.filterCookie });
    let text = `${req.method ?? "GET"} ${req.url ?? "/"} HTTP/1.1\r\n`;
    for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
    text += "\r\n";
    upstream.write(text);
    if (head.length > 0) upstream.write(head);

    let answered = false;
    let reported = false;
    const report = (outcome: "ok" | "failed") => {
      if (reported) return;
      reported = true;
      this.#options.onOutcome?.(outcome);
    };
    const timer = setTimeout(() => {
      if (answered) return;
      report("failed");
      upstream.destroy();
      sendUpgradeError(
        client,
        new WarrenError(ErrorCode.DeadlineExceeded, `port ${target.port} of workspace "${target.workspace}" did not answer the upgrade within ${this.#options.upstreamTimeoutMs} ms`),
      );
    }, this.#options.upstreamTimeoutMs);
    upstream.once("data", () => {
      answered = true;
      clearTimeout(timer);
      report("ok");
    });
    upstream.on("error", () => {
      clearTimeout(timer);
      report("failed");
      if (!answered) sendUpgradeError(client, new WarrenError(ErrorCode.BadGateway, `connection to port ${target.port} of workspace "${target.workspace}" failed`));
      else client.destroy();
    });
    upstream.on("close", () => {
      clearTimeout(timer);
      report("failed");
      if (!client.destroyed && !client.writableEnded && answered) client.end();
    });
    client.on("close", () => upstream.destroy());
    upstream.pipe(client);
    client.pipe(upstream);
  }
}
