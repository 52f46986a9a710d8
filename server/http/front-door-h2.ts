import http2, {
  Http2ServerRequest,
  Http2ServerResponse,
  type Http2Server,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from "node:http2";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "../../shared/logger.js";
import { TUNNEL_WINDOWS } from "../../shared/tunnel-windows.js";

/** A browser's HTTP/2 connection with no stream for this long is closed (HTTP/1.1's keep-alive timeout). */
const IDLE_TIMEOUT_MS = 65_000;

/** Response headers HTTP/2 forbids (RFC 9113 8.2.2): node throws on them, an HTTP/1.1 app may send them. */
const CONNECTION_SPECIFIC = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "http2-settings", "te"]);

/**
 * node's compatibility response, made to take what the HTTP/1.1 code writes: a status message
 * (HTTP/2 has none: dropped without node's warning), header lists as [name, value, ...], and
 * the connection headers of an app's HTTP/1.1 answer (dropped).
 */
class Http2Response extends Http2ServerResponse {
  override writeHead(statusCode: number, messageOrHeaders?: string | OutgoingHttpHeaders | string[], headers?: OutgoingHttpHeaders | string[]): this {
    const given = typeof messageOrHeaders === "string" ? headers : (messageOrHeaders ?? headers);
    const out: OutgoingHttpHeaders = {};
    const add = (name: string, value: string | number | readonly string[] | undefined) => {
      const lower = name.toLowerCase();
      if (value === undefined || CONNECTION_SPECIFIC.has(lower) || lower.startsWith(":")) return;
      const prior = out[lower];
      const values = Array.isArray(value) ? value.map(String) : [String(value)];
      out[lower] = prior === undefined ? (values.length === 1 ? values[0] : values) : [...(Array.isArray(prior) ? prior : [String(prior)]), ...values];
    };
    if (Array.isArray(given)) for (let i = 0; i < given.length; i += 2) add(given[i]!, given[i + 1]);
    else if (given) for (const [name, value] of Object.entries(given)) add(name, value as string | number | readonly string[] | undefined);
    return super.writeHead(statusCode, out);
  }

  /** 102 Processing is gone from HTTP/2 (RFC 9113 8.1). */
  writeProcessing(): void {}
}

/**
 * The request as the HTTP/1.1 code reads it: a Host header from `:authority`, raw headers
 * without pseudo-headers, cookie crumbs (RFC 9113 8.2.3) joined into one Cookie header, and a
 * body without a length marked chunked, as HTTP/1.1 would carry it to the app.
 */
function http1View(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: readonly string[]): { headers: IncomingHttpHeaders; rawHeaders: string[] } {
  const raw: string[] = [];
  const cookies: string[] = [];
  let host = false;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.startsWith(":")) continue;
    const lower = name.toLowerCase();
    if (lower === "cookie") {
      cookies.push(rawHeaders[i + 1]!);
      continue;
    }
    if (lower === "host") host = true;
    // Answered here (see #onStream): the app's HTTP/1.1 gets the body as it comes.
    if (lower === "expect") continue;
    raw.push(name, rawHeaders[i + 1]!);
  }
  const authority = headers[":authority"];
  if (!host && typeof authority === "string") {
    raw.unshift("host", authority);
    headers.host = authority;
  }
  if (cookies.length > 0) {
    raw.push("cookie", cookies.join("; "));
    headers.cookie = cookies.join("; ");
  }
  if (headers["content-length"] === undefined && !stream.endAfterHeaders) headers["transfer-encoding"] = "chunked";
  return { headers, rawHeaders: raw };
}

export interface Http2FrontOptions {
  readonly settings: http2.Settings;
  readonly maxSessionMemory: number;
  /** Takes the streams that are not a browser's (an agent's); false: answer it as a request. */
  readonly takeStream?: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => boolean;
  /** Answers a request as the HTTP/1.1 listener does (node's compatibility objects). */
  readonly onRequest: (req: IncomingMessage, res: ServerResponse) => void;
  readonly log: Logger;
}

/**
 * HTTP/2 on the public listener, for connections the front door hands over: TLS ones that
 * chose `h2` by ALPN, plain ones that opened with the HTTP/2 preface (h2c, prior knowledge).
 * Agents' gRPC streams go to the agent endpoint; every other stream is a request answered
 * like an HTTP/1.1 one.
 */
export class Http2Front {
  readonly #options: Http2FrontOptions;
  readonly #server: Http2Server;
  readonly #sessions = new Set<ServerHttp2Session>();
  /** Sessions that carried an agent's stream: left to the agent drain, not closed with the browsers'. */
  readonly #agentSessions = new WeakSet<ServerHttp2Session>();

  constructor(options: Http2FrontOptions) {
    this.#options = options;
    // Never listens: the front door's listener hands it connections.
    this.#server = http2.createServer({ settings: options.settings, maxSessionMemory: options.maxSessionMemory, peerMaxConcurrentStreams: 100 });
    this.#server.on("session", (session: ServerHttp2Session) => {
      this.#sessions.add(session);
      session.on("error", () => session.destroy());
      session.once("close", () => this.#sessions.delete(session));
      // A browser's idle connection goes as an HTTP/1.1 keep-alive one would; an agent's stays
      // (it pings, and the agent endpoint watches it).
      session.setTimeout(IDLE_TIMEOUT_MS, () => {
        if (!this.#agentSessions.has(session)) session.close();
      });
      // Uploads run at the speed of the connection window, 64 KiB by default.
      session.once("remoteSettings", () => {
        try {
          session.setLocalWindowSize(TUNNEL_WINDOWS.sessionWindowBytes);
        } catch {
          // Session already gone.
        }
      });
    });
    this.#server.on("sessionError", (err: Error, session: ServerHttp2Session) => {
      options.log.debug({ err: err.message }, "HTTP/2 session error");
      session.destroy();
    });
    this.#server.on("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders: string[]) =>
      this.#onStream(stream, headers, rawHeaders),
    );
  }

  /** Takes a connection that speaks HTTP/2 (any bytes already read were put back on it). */
  accept(socket: Duplex): void {
    this.#server.emit("connection", socket);
  }

  /** Sessions open now that no agent uses. */
  get browserSessions(): number {
    let n = 0;
    for (const session of this.#sessions) if (!this.#agentSessions.has(session)) n++;
    return n;
  }

  /** Sessions open now that carry an agent. */
  get agentSessions(): number {
    return this.#sessions.size - this.browserSessions;
  }

  /** Browsers' sessions: no new requests (GOAWAY); those in flight finish. */
  closeBrowserSessions(): void {
    for (const session of this.#sessions) if (!this.#agentSessions.has(session) && !session.closed) session.close();
  }

  destroyAll(): void {
    for (const session of this.#sessions) session.destroy();
  }

  #onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[]): void {
    stream.on("error", () => {
      // A reset stream: its request and response see the close.
    });
    if (this.#options.takeStream?.(stream, headers)) {
      const session = stream.session as ServerHttp2Session;
      if (!this.#agentSessions.has(session)) {
        this.#agentSessions.add(session);
        session.setTimeout(0);
      }
      return;
    }
    const view = http1View(stream, headers, rawHeaders);
    const req = new Http2ServerRequest(stream, view.headers, {}, view.rawHeaders);
    const res = new Http2Response(stream);
    if (headers[":method"] === "CONNECT") {
      res.writeHead(405, { "content-type": "text/plain; charset=utf-8" });
      res.end("CONNECT is not supported here\n");
      return;
    }
    if (headers.expect !== undefined) {
      if (String(headers.expect).toLowerCase() !== "100-continue") {
        res.writeHead(417, { "content-type": "text/plain; charset=utf-8" });
        res.end("only Expect: 100-continue is supported\n");
        return;
      }
      delete headers.expect;
      res.writeContinue();
    }
    this.#options.onRequest(req as unknown as IncomingMessage, res as unknown as ServerResponse);
  }
}
