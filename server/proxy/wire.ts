import type { IncomingHttpHeaders, IncomingMessage } from "node:http";
import type { MessageHead } from "./http-message-parser.js";

/*
 * The proxy's wire: pure functions over HTTP/1.1 heads and framing, shared by both client
 * sides (spliced connections and node's messages) and driven by the framing fuzz tests.
 */

/** Hop-by-hop headers (RFC 9110 7.6.1): they describe one connection and are never forwarded. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/**
 * Headers a client cannot have dropped by naming them in Connection: without Host the app
 * cannot route, and without Content-Length a forwarded body would be read as the next request.
 */
const NEVER_CONNECTION_SCOPED = new Set(["host", "content-length"]);

/** Warren's own credentials: stripped before a request reaches the workspace. */
export const WARREN_TOKEN_HEADER = "x-warren-token";

function connectionTokens(value: string | string[] | undefined): Set<string> {
  const out = new Set<string>();
  const values = Array.isArray(value) ? value : value ? [value] : [];
  for (const v of values) for (const t of v.split(",")) if (t.trim()) out.add(t.trim().toLowerCase());
  for (const kept of NEVER_CONNECTION_SCOPED) out.delete(kept);
  return out;
}

export interface ForwardedInfo {
  readonly clientIp: string;
  readonly proto: "http" | "https";
  readonly host: string;
}

export interface RequestHeaderOptions {
  /** Keep Connection/Upgrade (a WebSocket upgrade passes through as it is). */
  readonly upgrade?: boolean;
  /** Drops or rewrites the Cookie header (Warren's session cookie must not reach the app). */
  readonly filterCookie?: (cookie: string) => string | undefined;
}

/**
 * Headers for the request to the workspace, as a flat [name, value, ...] list that keeps the
 * client's casing and repeated headers. Drops hop-by-hop headers, the headers named in
 * Connection and Warren's token; appends X-Forwarded-For and sets X-Forwarded-Proto/Host.
 * The app's own Authorization header passes through untouched.
 */
export function requestHeadersForUpstream(req: IncomingMessage, forwarded: ForwardedInfo, options: RequestHeaderOptions = {}): string[] {
  const named = connectionTokens(req.headers.connection);
  const raw = req.rawHeaders;
  const out: string[] = [];
  let priorXff: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (lower === WARREN_TOKEN_HEADER) continue;
    if (lower === "x-forwarded-for") {
      priorXff = priorXff ? `${priorXff}, ${value}` : value;
      continue;
    }
    if (lower === "x-forwarded-proto" || lower === "x-forwarded-host") continue;
    if (lower === "cookie" && options.filterCookie) {
      const kept = options.filterCookie(value);
      if (kept) out.push(name, kept);
      continue;
    }
    if (options.upgrade && (lower === "connection" || lower === "upgrade")) {
      out.push(name, value);
      continue;
    }
    if (HOP_BY_HOP.has(lower) || named.has(lower)) continue;
    out.push(name, value);
  }
  out.push("X-Forwarded-For", priorXff ? `${priorXff}, ${forwarded.clientIp}` : forwarded.clientIp);
  out.push("X-Forwarded-Proto", forwarded.proto);
  out.push("X-Forwarded-Host", forwarded.host);
  return out;
}

/**
 * Response headers from the workspace to pass on to the client: everything but hop-by-hop,
 * with the app's cookies kept to the workspace host.
 */
export function responseHeadersForClient(rawHeaders: readonly string[], connectionHeader: string | string[] | undefined): string[] {
  const named = connectionTokens(connectionHeader);
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const lower = rawHeaders[i]!.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named.has(lower)) continue;
    out.push(rawHeaders[i]!, lower === "set-cookie" ? hostOnlyCookie(rawHeaders[i + 1]!) : rawHeaders[i + 1]!);
  }
  return out;
}


/**
 * A Set-Cookie value without its Domain attribute, so the browser keeps the cookie to the
 * workspace host that set it: an app must not set cookies for other workspaces or for the
 * root domain (where Warren's login lives).
 */
export function hostOnlyCookie(setCookie: string): string {
  return setCookie.replace(/;\s*domain\s*=[^;]*/gi, "");
}

/** Whether a raw response head needs rewriting for the client (see responseHeadForClient). */
export function responseHeadNeedsRewrite(rawHeaders: readonly string[], close: boolean): boolean {
  if (close) return true;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.length === 10 && rawHeaders[i]!.toLowerCase() === "set-cookie" && /domain/i.test(rawHeaders[i + 1]!)) return true;
  }
  return false;
}

/**
 * A whole response head as the app sent it (status line to the empty line), rewritten for the
 * client: Set-Cookie kept to the workspace host, and with `close` the head says
 * `Connection: close` in place of the app's keep-alive headers (they were for the app
 * connection, which stays open for the next client).
 */
export function responseHeadForClient(head: Buffer, close: boolean): Buffer {
  const lines = head.toString("latin1", 0, head.length - 4).split("\r\n");
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (i > 0 && close && /^(connection|keep-alive)[ \t]*:/i.test(line)) continue;
    out.push(i > 0 && /^set-cookie[ \t]*:/i.test(line) ? hostOnlyCookie(line) : line);
  }
  if (close) out.push("Connection: close");
  out.push("", "");
  return Buffer.from(out.join("\r\n"), "latin1");
}

/** The client's IP without the IPv4-mapped IPv6 prefix. */
export function clientIpOf(req: IncomingMessage): string {
  const ip = req.socket.remoteAddress ?? "";
  return ip.startsWith("::ffff:") ? ip.slice(7) : ip;
}

/**
 * The head of a request as it goes to the app: its headers rewritten (requestHeadersForUpstream),
 * a chunked body said so, and `Connection: close` when the app connection ends with it.
 */
export function upstreamRequestHead(
  req: IncomingMessage,
  forwarded: ForwardedInfo,
  options: { readonly filterCookie?: ((cookie: string) => string | undefined) | undefined; readonly chunked: boolean; readonly close: boolean },
): Buffer {
  const headers = requestHeadersForUpstream(req, forwarded, { filterCookie: options.filterCookie });
  if (options.chunked) headers.push("Transfer-Encoding", "chunked");
  if (options.close) headers.push("Connection", "close");
  return serializeRequestHead(req.method ?? "GET", req.url ?? "/", headers);
}

/** A request head for the app: always HTTP/1.1, whatever the client spoke. */
export function serializeRequestHead(method: string, target: string, headers: readonly string[]): Buffer {
  let text = `${method} ${target} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return Buffer.from(`${text}\r\n`, "latin1");
}

/** One piece of a chunked body (nothing for an empty piece: a zero-size chunk would end the body). */
export function chunkFrame(chunk: Buffer): Buffer[] {
  if (chunk.length === 0) return [];
  return [Buffer.from(`${chunk.length.toString(16)}\r\n`, "latin1"), chunk, Buffer.from("\r\n")];
}

/** The end of a chunked body. */
export const LAST_CHUNK = Buffer.from("0\r\n\r\n");

/** Lower-cased headers, repeated ones joined as node:http joins them. */
export function headersOf(raw: readonly string[]): IncomingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    const prior = out[name];
    if (prior === undefined) out[name] = name === "set-cookie" ? [value] : value;
    else if (Array.isArray(prior)) prior.push(value);
    else out[name] = `${prior}${name === "cookie" ? "; " : ", "}${value}`;
  }
  return out as IncomingHttpHeaders;
}

/** Keep-alive as an answer with no body at all says it (its Connection header and version). */
export function keepsAliveWithoutBody(response: MessageHead): boolean {
  let close = response.versionMajor === 1 && response.versionMinor === 0;
  for (let i = 0; i < response.rawHeaders.length; i += 2) {
    if (response.rawHeaders[i]!.toLowerCase() !== "connection") continue;
    const tokens = response.rawHeaders[i + 1]!.toLowerCase().split(",").map((t) => t.trim());
    if (tokens.includes("close")) return false;
    if (tokens.includes("keep-alive")) close = false;
  }
  return !close;
}

/** Whether a request body goes to the app chunked (the client sent it chunked). */
export function isChunked(headers: IncomingHttpHeaders): boolean {
  return /\bchunked\b/i.test(String(headers["transfer-encoding"] ?? ""));
}

/** Whether a request carries a body (framed by Content-Length or chunked). */
export function hasRequestBody(headers: IncomingHttpHeaders): boolean {
  if (isChunked(headers)) return true;
  const length = headers["content-length"];
  return length !== undefined && length !== "0";
}

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);

/**
 * The one retry rule: a request may go again, once, on a fresh app connection when the kept
 * one it was sent on closed before a byte of the answer came back (the app closed it as we
 * reused it), and only when sending it twice cannot change anything: an idempotent method
 * without a body (RFC 9110 9.2.2), as browsers and node's HTTP client do.
 */
export function mayRetry(method: string, hasBody: boolean): boolean {
  return !hasBody && IDEMPOTENT.has(method);
}
