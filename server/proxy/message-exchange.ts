import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "../../shared/logger.js";
import { sendError } from "../web/error-response.js";
import { AppConnection, BodyMode, type AppConnectionDeps, type Exchange, type ResponseSink } from "./app-connection.js";
import type { MessageHead } from "./http-message-parser.js";
import type { ProxyTarget } from "./proxy-target.js";
import { chunkFrame, hasRequestBody, headersOf, isChunked, LAST_CHUNK, mayRetry, responseHeadersForClient, upstreamRequestHead, type ForwardedInfo } from "./wire.js";

export interface MessageExchangeOptions {
  /** Dial, pool and upstream timeout of the workspace proxy (mode is decoded here). */
  readonly upstreams: Omit<AppConnectionDeps, "mode">;
  readonly filterCookie?: ((cookie: string) => string | undefined) | undefined;
  readonly log: Logger;
}

/**
 * The client side of the workspace proxy for requests that come as node's messages: HTTP/1.0,
 * `Expect: 100-continue`, requests node's HTTP server took for any other reason, and every
 * HTTP/2 request (through node's compatibility objects). The request goes through the same
 * pipeline as a spliced one (AppConnection: pool, retry rule, timeout, error answers); its
 * answer's body comes back without framing, and node frames it for its client.
 */
export class MessageExchanges {
  readonly #options: MessageExchangeOptions;
  readonly #deps: AppConnectionDeps;

  constructor(options: MessageExchangeOptions) {
    this.#options = options;
    this.#deps = { ...options.upstreams, mode: BodyMode.Decoded };
  }

  handle(req: IncomingMessage, res: ServerResponse, target: ProxyTarget, forwarded: ForwardedInfo): void {
    const chunked = isChunked(req.headers);
    const hasBody = hasRequestBody(req.headers);
    const method = req.method ?? "GET";
    const head = upstreamRequestHead(req, forwarded, { filterCookie: this.#options.filterCookie, chunked, close: false });
    let app: AppConnection | undefined;
    let answered = false;
    const sink: ResponseSink = {
      interim: (response) => {
        // Hints now, the answer later; HTTP/1.1's 100 Continue was node's to send.
        if (res.headersSent || res.destroyed) return true;
        if (response.statusCode === 102) res.writeProcessing();
        else if (response.statusCode === 103) res.writeEarlyHints(earlyHintsOf(response.rawHeaders));
        return true;
      },
      head: (response) => {
        res.writeHead(response.statusCode, response.statusMessage || undefined, responseHeadersForClient(response.rawHeaders, connectionOf(response)) as never);
        return true;
      },
      body: (chunk) => res.write(chunk),
      end: () => {
        answered = true;
        res.end();
        app?.release();
      },
      fail: (error) => {
        answered = true;
        if (res.headersSent) res.destroy();
        else sendError(res, error);
      },
    };
    const exchange: Exchange = { method, retryable: mayRetry(method, hasBody), sink };
    // The client left before its answer ended: the app connection cannot be reused.
    res.once("close", () => {
      if (!answered) app?.destroy();
    });
    res.on("drain", () => app?.resume());
    AppConnection.open(this.#deps, target, head, exchange, hasBody).then(
      (connection) => {
        app = connection;
        if (res.destroyed && !answered) {
          connection.destroy();
          req.resume();
          return;
        }
        if (!hasBody) {
          connection.endRequest();
          return;
        }
        this.#sendBody(req, connection, chunked);
      },
      (err: unknown) => {
        // Drain an unread body so the client connection can be kept alive.
        req.resume();
        answered = true;
        sendError(res, err);
      },
    );
  }

  /** Streams the request's body to the app with backpressure, framed again when chunked. */
  #sendBody(req: IncomingMessage, app: AppConnection, chunked: boolean): void {
    req.on("data", (chunk: Buffer) => {
      const written = app.write(chunked ? chunkFrame(chunk) : [chunk]);
      if (!app.needsDrain) return;
      req.pause();
      void written.then(() => req.resume());
    });
    req.on("end", () => {
      if (chunked) void app.write([LAST_CHUNK]);
      app.endRequest();
    });
    // A client gone mid-upload: the app must not wait for the rest.
    req.on("close", () => {
      if (!req.complete) app.destroy();
    });
  }
}

function connectionOf(head: MessageHead): string | string[] | undefined {
  return headersOf(head.rawHeaders).connection;
}

/** The headers of a 103 answer as writeEarlyHints takes them (repeated ones as lists). */
function earlyHintsOf(rawHeaders: readonly string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    const prior = out[name];
    out[name] = prior === undefined ? rawHeaders[i + 1]! : [...(Array.isArray(prior) ? prior : [prior]), rawHeaders[i + 1]!];
  }
  return out;
}
