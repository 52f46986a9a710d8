import http, { type IncomingMessage, type ServerResponse } from "node:http";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { sendError } from "./error-response.js";
import { requestHeadersForUpstream, responseHeadersForClient, type ForwardedInfo } from "./headers.js";
import type { TunnelHttpAgent, TunnelRequestArgs } from "./tunnel-http-agent.js";

export interface ProxyTarget {
  /** The workspace's name (for messages) and the id of the incarnation that was authorized. */
  readonly workspace: string;
  readonly workspaceId: string;
  readonly port: number;
}

export interface ReverseProxyOptions {
  readonly agent: TunnelHttpAgent;
  /** How long the app may take to start its response. */
  readonly upstreamTimeoutMs: number;
  readonly log: Logger;
  readonly filterCookie?: (cookie: string) => string | undefined;
}

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);

/**
 * The HTTP reverse proxy onto tunnel streams: per-request routing, keep-alive upstream
 * connections, bodies streamed both ways with backpressure, X-Forwarded-* set, hop-by-hop
 * headers dropped, and a short text answer for every failure.
 */
export class ReverseProxy {
  readonly #options: ReverseProxyOptions;

  constructor(options: ReverseProxyOptions) {
    this.#options = options;
  }

  handle(req: IncomingMessage, res: ServerResponse, target: ProxyTarget, forwarded: ForwardedInfo): void {
    const headers = requestHeadersForUpstream(req, forwarded, { filterCookie: this.#options.filterCookie });
    const chunked = /\bchunked\b/i.test(req.headers["transfer-encoding"] ?? "");
    if (chunked) headers.push("Transfer-Encoding", "chunked");
    const hasBody = chunked || (req.headers["content-length"] !== undefined && req.headers["content-length"] !== "0");
    const method = req.method ?? "GET";
    const canRetry = IDEMPOTENT.has(method) && !hasBody;

    const attempt = (retriesLeft: number) => {
      const args: TunnelRequestArgs = {
        agent: this.#options.agent,
        workspace: target.workspace,
        workspaceId: target.workspaceId,
        workspacePort: target.port,
        host: "127.0.0.1",
        port: target.port,
        method,
        path: req.url ?? "/",
        headers: headers as unknown as http.OutgoingHttpHeaders,
        setHost: false,
      };
      const upstream = http.request(args);
      let responded = false;
      // Once a tunnel socket is assigned the dial has succeeded: later failures are the app's
      // connection failing (502), not the dial's own answer (403/503/504).
      let connected = false;
      upstream.once("socket", () => (connected = true));
      const timer = setTimeout(() => {
        upstream.destroy(
          new WarrenError(
            ErrorCode.DeadlineExceeded,
            `port ${target.port} of workspace "${target.workspace}" did not respond within ${this.#options.upstreamTimeoutMs} ms`,
          ),
        );
      }, this.#options.upstreamTimeoutMs);
      const onClientGone = () => {
        if (!res.writableFinished) upstream.destroy();
      };
      res.once("close", onClientGone);

      // Informational answers pass on and the request goes on: hints now, the answer later.
      upstream.on("information", (info: http.InformationEvent) => {
        if (res.headersSent || res.destroyed) return;
        if (info.statusCode === 102) res.writeProcessing();
        else if (info.statusCode === 103) res.writeEarlyHints(earlyHintsOf(info.rawHeaders));
      });
      upstream.on("response", (upRes) => {
        responded = true;
        clearTimeout(timer);
        res.writeHead(
          upRes.statusCode ?? 502,
          upRes.statusMessage,
          responseHeadersForClient(upRes.rawHeaders, upRes.headers.connection) as unknown as http.OutgoingHttpHeaders,
        );
        upRes.pipe(res);
        upRes.on("error", () => res.destroy());
        upRes.on("aborted", () => res.destroy());
      });
      upstream.on("error", (err) => {
        clearTimeout(timer);
        res.off("close", onClientGone);
        if (res.destroyed) return;
        if (responded) {
          res.destroy();
          return;
        }
        // A kept-alive connection the app closed as we reused it: safe to retry once.
        if (retriesLeft > 0 && upstream.reusedSocket && !(err instanceof WarrenError && err.code === ErrorCode.DeadlineExceeded)) {
          attempt(retriesLeft - 1);
          return;
        }
        sendError(res, upstreamError(err, target, connected));
      });
      if (hasBody) {
        req.pipe(upstream);
        req.on("aborted", () => upstream.destroy());
      } else {
        upstream.end();
      }
    };
    attempt(canRetry ? 1 : 0);
  }
}

function upstreamError(err: unknown, target: ProxyTarget, connected: boolean): WarrenError {
  if (err instanceof WarrenError && (!connected || err.code === ErrorCode.DeadlineExceeded)) return err;
  return new WarrenError(
    ErrorCode.BadGateway,
    `connection to port ${target.port} of workspace "${target.workspace}" failed: ${(err as Error).message}`,
  );
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
