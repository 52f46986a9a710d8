import type { IncomingMessage } from "node:http";

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
