import type { IncomingMessage } from "node:http";
import type { Http2Session } from "node:http2";
import type { Duplex } from "node:stream";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { TunnelSocket } from "../../shared/tunnel-socket.js";
import type { Dialer } from "../tunnel/tunnel-dialer.js";
import { sendUpgradeError } from "../web/error-response.js";
import { requestHeadersForUpstream, responseHeadForClient, responseHeadNeedsRewrite, type ForwardedInfo } from "../proxy/wire.js";
import { HttpMessageParser, type MessageHead } from "../proxy/http-message-parser.js";
import type { ProxyTarget } from "../proxy/proxy-target.js";

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
 * is rewritten like any proxied request and written on a fresh tunnel stream; once the app
 * answers 101 both directions are spliced. Any other answer ends the upgrade attempt, and the
 * client connection goes back to HTTP.
 */
export class WebSocketProxy {
  readonly #options: WebSocketProxyOptions;
  #open = 0;
  /** Client socket of each upgraded connection -> its tunnel, for closeAll() and closeRidingOn(). */
  readonly #upstreamOf = new Map<Duplex, Duplex>();

  constructor(options: WebSocketProxyOptions) {
    this.#options = options;
  }

  /** Upgraded connections open now. */
  get openCount(): number {
    return this.#open;
  }

  /** Closes every upgraded connection (shutdown: their clients reconnect elsewhere). Never blocks. */
  closeAll(): void {
    for (const client of this.#upstreamOf.keys()) client.destroy();
  }

  /**
   * Closes the upgraded connections that ride on a peer server's session which has stopped
   * taking work (that server drains and its agents have moved): their clients reconnect now,
   * through this server to the agent's new connection, instead of at that server's shutdown
   * timeout. Never blocks.
   */
  closeRidingOn(session: Http2Session): void {
    for (const [client, upstream] of this.#upstreamOf) {
      if ((upstream as TunnelSocket).http2Stream?.session === session) client.destroy();
    }
  }

  /**
   * Passes an upgrade request to the app. A 101 answer splices both ways from then on; any
   * other final answer passes to the client and the connection goes back to HTTP: `resumeHttp`
   * gets the socket with what the client sent after the upgrade request, so that later
   * requests are parsed, authorized and rewritten like any other.
   */
  async handle(
    req: IncomingMessage,
    client: Duplex,
    head: Buffer,
    target: ProxyTarget,
    forwarded: ForwardedInfo,
    resumeHttp?: (socket: Duplex, unread: Buffer) => void,
  ): Promise<void> {
    client.on("error", () => client.destroy());
    // Nothing the client sends goes to the app before the app agreed to switch protocols.
    client.pause();
    let upstream;
    try {
      upstream = await this.#options.dialer.dial({ name: target.workspace, id: target.workspaceId }, target.port);
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
    this.#upstreamOf.set(client, upstream);
    upstream.once("close", () => {
      this.#open--;
      this.#upstreamOf.delete(client);
    });
    const headers = requestHeadersForUpstream(req, forwarded, { upgrade: true, filterCookie: this.#options.filterCookie });
    let text = `${req.method ?? "GET"} ${req.url ?? "/"} HTTP/1.1\r\n`;
    for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
    text += "\r\n";
    upstream.write(text);

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

    // The answer is read with node's parser until it says 101 (switch) or ends (no switch).
    let switched = false;
    let interim = false;
    let keepAlive = true;
    let ended = false;
    // Heads are held back until the one that decides (101 or final) is whole, then passed on
    // with the app's cookies kept to the workspace host.
    const heads: MessageHead[] = [];
    let held: Buffer[] | undefined = [];
    const parser = new HttpMessageParser("response", {
      onHead: (response) => {
        heads.push(response);
        if (response.statusCode === 101) switched = true;
        else if (response.statusCode < 200) interim = true;
        else keepAlive = response.shouldKeepAlive && req.headers.connection?.toLowerCase() !== "close";
        return req.method === "HEAD";
      },
      onComplete: () => {
        if (interim) interim = false;
        else ended = true;
      },
    });
    const onAnswer = (chunk: Buffer) => {
      answered = true;
      clearTimeout(timer);
      try {
        parser.execute(chunk);
      } catch {
        parser.close();
        report("failed");
        upstream.destroy();
        client.destroy();
        return;
      }
      let out: Buffer[] = [chunk];
      if (held) {
        held.push(chunk);
        if ((!switched && !ended && heads.every((h) => h.statusCode < 200)) || parser.inHead) return;
        out = headsForClient(Buffer.concat(held), heads);
        held = undefined;
      }
      let ok = true;
      for (const part of out) ok = client.write(part);
      if (!ok) upstream.pause();
      if (switched) {
        report("ok");
        parser.close();
        upstream.off("data", onAnswer);
        client.off("drain", onDrain);
        if (head.length > 0) upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
        client.resume();
      } else if (ended) {
        // No switch: this request is over, and so is this app connection.
        report("failed");
        parser.close();
        upstream.off("data", onAnswer);
        upstream.off("close", onClose);
        client.off("drain", onDrain);
        client.off("close", onClientClose);
        upstream.end();
        if (keepAlive && resumeHttp) resumeHttp(client, head);
        else client.end();
      }
    };
    const onDrain = () => upstream.resume();
    const onClose = () => {
      clearTimeout(timer);
      report("failed");
      parser.close();
      if (!client.destroyed && !client.writableEnded && answered) client.end();
    };
    const onClientClose = () => upstream.destroy();
    upstream.on("data", onAnswer);
    client.on("drain", onDrain);
    upstream.on("error", () => {
      clearTimeout(timer);
      report("failed");
      if (!answered) sendUpgradeError(client, new WarrenError(ErrorCode.BadGateway, `connection to port ${target.port} of workspace "${target.workspace}" failed`));
      else client.destroy();
    });
    upstream.on("close", onClose);
    client.on("close", onClientClose);
  }
}

/** Bytes that start with the given response heads, each rewritten for the client where it needs to be. */
function headsForClient(bytes: Buffer, heads: readonly MessageHead[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const head of heads) {
    const end = bytes.indexOf("\r\n\r\n", at);
    if (end < 0) break;
    const text = bytes.subarray(at, end + 4);
    out.push(responseHeadNeedsRewrite(head.rawHeaders, false) ? responseHeadForClient(text, false) : text);
    at = end + 4;
  }
  out.push(bytes.subarray(at));
  return out;
}
