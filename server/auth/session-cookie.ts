import { createHmac, timingSafeEqual } from "node:crypto";

/** What a signed session cookie asserts. */
export interface SessionClaims {
  /** The exact host the cookie was minted for (a workspace port host, or the root domain). */
  readonly host: string;
  /** The user; undefined for the admin. */
  readonly user?: string;
  /** The token the login used ("admin:..." for the admin token): the session ends with it. */
  readonly tokenId: string;
  /**
   * On a workspace host: the workspace incarnation (id) it was minted for. A workspace created
   * later under the same name is another workspace, and the cookie is not valid there.
   */
  readonly workspaceId?: string;
  /** Milliseconds since the epoch. */
  readonly expiresAt: number;
}

/**
 * Name of the cookie; `__Host-` makes browsers insist on Secure, Path=/ and no Domain, so no
 * other host (a workspace app included) can set or shadow it. It takes the prefix whenever it
 * can: a `__Host-` cookie must be Secure, and browsers store Secure cookies only from https, so
 * over plain http the prefix would make the cookie vanish. There the cookie is host-only all
 * the same, and apps cannot set Domain cookies over it: the front door strips Domain from
 * their Set-Cookie (headers.ts, hostOnlyCookie).
 */
export function sessionCookieName(secure: boolean): string {
  return secure ? "__Host-warren_session" : "warren_session";
}

/** Both names, for stripping the cookie before a request reaches the app. */
export const SESSION_COOKIE_NAMES: ReadonlySet<string> = new Set([sessionCookieName(true), sessionCookieName(false)]);

const MAX_COOKIE_CHARS = 2048;

/**
 * Signs and verifies session cookies: base64url(JSON claims) "." base64url(HMAC-SHA256).
 * Stateless, so every server of a cluster accepts every other's cookies (they share the key);
 * a cookie is valid only on the host it names and only until it expires.
 */
export class SessionCookieSigner {
  readonly #key: Buffer;
  /** Keys of earlier secrets: cookies they signed still verify; new cookies use #key. */
  readonly #acceptedKeys: readonly Buffer[];
  readonly #now: () => number;

  constructor(options: { key: Buffer; acceptedKeys?: readonly Buffer[]; now?: () => number }) {
    this.#key = options.key;
    this.#acceptedKeys = options.acceptedKeys ?? [];
    this.#now = options.now ?? Date.now;
  }

  sign(claims: SessionClaims): string {
    const payload = Buffer.from(JSON.stringify({ h: claims.host, u: claims.user, t: claims.tokenId, e: claims.expiresAt, w: claims.workspaceId })).toString("base64url");
    return `${payload}.${this.#mac(payload).toString("base64url")}`;
  }

  /**
   * The claims when the value is authentic, unexpired and minted for `host`; else undefined.
   * `workspace` names the incarnation a workspace host serves now: a cookie minted for another
   * incarnation (or for none) is refused. Leave it out on the root domain; pass
   * `{ id: undefined }` for a workspace host whose workspace does not exist (any answer there is
   * a 404, and the person's identity decides only 401 or 404).
   */
  verify(value: string, host: string, workspace?: { readonly id: string | undefined }): SessionClaims | undefined {
    if (value.length > MAX_COOKIE_CHARS) return undefined;
    const dot = value.indexOf(".");
    if (dot <= 0) return undefined;
    const payload = value.slice(0, dot);
    const mac = Buffer.from(value.slice(dot + 1), "base64url");
    // Every key compared, so the time taken tells nothing of which one matched.
    let authentic = false;
    for (const key of [this.#key, ...this.#acceptedKeys]) {
      const expected = this.#mac(payload, key);
      authentic = (mac.length === expected.length && timingSafeEqual(mac, expected)) || authentic;
    }
    if (!authentic) return undefined;
    let raw: { h?: unknown; u?: unknown; t?: unknown; e?: unknown; w?: unknown };
    try {
      raw = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as typeof raw;
    } catch {
      return undefined;
    }
    if (typeof raw.h !== "string" || typeof raw.t !== "string" || typeof raw.e !== "number") return undefined;
    if (raw.u !== undefined && typeof raw.u !== "string") return undefined;
    if (raw.w !== undefined && typeof raw.w !== "string") return undefined;
    if (raw.h !== host || raw.e <= this.#now()) return undefined;
    if (workspace && workspace.id !== undefined && raw.w !== workspace.id) return undefined;
    return { host: raw.h, user: raw.u as string | undefined, tokenId: raw.t, expiresAt: raw.e, ...(raw.w !== undefined ? { workspaceId: raw.w as string } : {}) };
  }

  #mac(payload: string, key: Buffer = this.#key): Buffer {
    return createHmac("sha256", key).update(`warren-session.${payload}`).digest();
  }
}

/** The values of the named cookie in a Cookie header (a client may send several). */
export function cookieValues(header: string | undefined, name: string): string[] {
  if (!header) return [];
  const out: string[] = [];
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) out.push(part.slice(eq + 1).trim());
  }
  return out;
}

/** The Cookie header without Warren's session cookies; undefined when nothing is left. */
export function withoutSessionCookies(header: string): string | undefined {
  const kept = header
    .split(";")
    .map((p) => p.trim())
    .filter((p) => p !== "" && !SESSION_COOKIE_NAMES.has(p.slice(0, Math.max(0, p.indexOf("="))).trim()));
  return kept.length > 0 ? kept.join("; ") : undefined;
}

/** A Set-Cookie value: host-only (no Domain), HttpOnly, SameSite=Lax, Secure under TLS. */
export function setCookieHeader(options: { name: string; value: string; maxAgeSeconds: number; secure: boolean }): string {
  const parts = [`${options.name}=${options.value}`, "Path=/", `Max-Age=${Math.max(0, Math.floor(options.maxAgeSeconds))}`, "HttpOnly", "SameSite=Lax"];
  if (options.secure) parts.push("Secure");
  return parts.join("; ");
}
