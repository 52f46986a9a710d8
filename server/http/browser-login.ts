import type { IncomingMessage, ServerResponse } from "node:http";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { Authenticator } from "../auth/authenticator.js";
import type { Principal } from "../domain/principal.js";
import { cookieValues, sessionCookieName, setCookieHeader, type SessionCookieSigner } from "../auth/session-cookie.js";
import { mintToken, parseToken, secretMatches, TokenKind } from "../domain/tokens.js";
import type { LoginCodeStore } from "../domain/store.js";
import { sendError } from "../web/error-response.js";
import { WARREN_TOKEN_HEADER } from "../proxy/wire.js";
import type { LoginProvider } from "./login-provider.js";
import type { SessionReader } from "./workspace-access.js";
import type { WorkspaceLookup } from "../domain/store.js";
import { workspaceIdOf } from "../domain/records.js";
import { parseHost } from "./workspace-host.js";
import { sendPage } from "../web/page.js";

/** Paths Warren answers itself on a workspace host; everything else goes to the app. */
export const CALLBACK_PATH = "/.warren/callback";
export const LOGOUT_PATH = "/.warren/logout";
const LOGIN_PATH = "/-/login";
const ROOT_LOGOUT_PATH = "/-/logout";
const MAX_FORM_BYTES = 16 * 1024;

export interface BrowserLoginOptions {
  readonly rootDomain: string;
  /** The public base URL (scheme, root domain, port); known once the listener is bound. */
  readonly publicBase: () => string;
  readonly providers: readonly LoginProvider[];
  readonly authenticator: Authenticator;
  readonly loginCodes: LoginCodeStore;
  /** Which workspace incarnation a host serves: login codes and cookies are bound to it. */
  readonly workspaces: WorkspaceLookup;
  readonly signer: SessionCookieSigner;
  /** Lifetime of a session cookie (capped by the token's own expiry). */
  readonly sessionTtlMs: number;
  /** Lifetime of a one-time login code (a minute at most). */
  readonly loginCodeTtlMs: number;
  readonly log: Logger;
  readonly now?: () => number;
  /** Called with the token id of each valid session cookie at sign-out (revokes single sign-on sessions). */
  readonly endSession?: (tokenId: string) => Promise<void>;
}

/**
 * Browser login. An unauthenticated browser request to a private workspace port is sent to
 * the login page on the root domain; after login there, a one-time code (single use, short
 * lived, bound to one workspace host) carries the user back to the workspace host, which
 * sets its own session cookie: host-only, HttpOnly, SameSite=Lax, Secure under TLS, signed,
 * expiring. The root domain keeps a session cookie of its own too, so that reaching the next
 * workspace needs no second login; it is never sent to workspace hosts (host-only).
 */
export class BrowserLogin implements SessionReader {
  readonly #options: BrowserLoginOptions;

  constructor(options: BrowserLoginOptions) {
    this.#options = options;
  }

  #now(): number {
    return (this.#options.now ?? Date.now)();
  }

  get #secure(): boolean {
    return this.#options.publicBase().startsWith("https:");
  }

  get #cookieName(): string {
    return sessionCookieName(this.#secure);
  }

  /** Whether a failed request should be redirected to the login page rather than answered 401. */
  wantsLogin(req: IncomingMessage): boolean {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    if (req.headers[WARREN_TOKEN_HEADER] !== undefined) return false;
    return /\btext\/html\b/i.test(req.headers.accept ?? "");
  }

  /** Sends the browser to the login page, to come back to the URL it asked for. */
  redirectToLogin(req: IncomingMessage, res: ServerResponse): void {
    const base = new URL(this.#options.publicBase());
    const returnTo = `${base.protocol}//${req.headers.host ?? ""}${req.url ?? "/"}`;
    redirect(res, 302, `${base.origin}${LOGIN_PATH}?return_to=${encodeURIComponent(returnTo)}`);
  }

  /** The principal of the request's session cookie for this host, or undefined. */
  async principalOf(req: IncomingMessage, host: string, workspace?: { readonly id: string | undefined }): Promise<Principal | undefined> {
    for (const value of cookieValues(req.headers.cookie, this.#cookieName)) {
      const claims = this.#options.signer.verify(value, host, workspace);
      if (!claims) continue;
      try {
        return await this.#options.authenticator.principalOfSession(claims);
      } catch {
        // The token behind the session was revoked or expired.
      }
    }
    return undefined;
  }

  /** Root-domain routes: the login page, its providers and logout. True when handled. */
  handleRoot(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    if (path === LOGIN_PATH || path.startsWith(`${LOGIN_PATH}/`)) {
      this.#login(req, res, path.slice(LOGIN_PATH.length)).catch((err) => sendError(res, err));
      return true;
    }
    if (path === ROOT_LOGOUT_PATH) {
      this.#logout(req, res).catch((err) => sendError(res, err));
      return true;
    }
    return false;
  }

  /** Workspace-host routes: the login callback and logout. True when handled. */
  handleWorkspace(req: IncomingMessage, res: ServerResponse, host: string, workspace: string): boolean {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname === CALLBACK_PATH) {
      this.#callback(res, host, workspace, url).catch((err) => sendError(res, err));
      return true;
    }
    if (url.pathname === LOGOUT_PATH) {
      this.#clearCookie(res);
      redirect(res, 303, `${new URL(this.#options.publicBase()).origin}${ROOT_LOGOUT_PATH}`);
      return true;
    }
    return false;
  }

  async #logout(req: IncomingMessage, res: ServerResponse): Promise<void> {
    for (const value of cookieValues(req.headers.cookie, this.#cookieName)) {
      const claims = this.#options.signer.verify(value, this.#options.rootDomain);
      if (claims) await this.#options.endSession?.(claims.tokenId);
    }
    this.#clearCookie(res);
    sendHtml(res, 200, "Logged out", "<p>You are logged out of Warren.</p>");
  }

  async #login(req: IncomingMessage, res: ServerResponse, rest: string): Promise<void> {
    const url = new URL(req.url ?? "/", "http://x");
    const form = req.method === "POST" ? await readForm(req) : new URLSearchParams();
    const returnTo = this.#validReturnTo(form.get("return_to") ?? url.searchParams.get("return_to"));
    if (req.method === "POST") this.#checkOrigin(req);
    if (rest === "" || rest === "/") {
      if (req.method !== "GET" && req.method !== "HEAD") throw new WarrenError(ErrorCode.InvalidArgument, "the login page takes GET");
      const session = await this.principalOf(req, this.#options.rootDomain);
      if (session) {
        await this.#sendBack(res, session, returnTo);
        return;
      }
      this.#page(res, 200, returnTo);
      return;
    }
    const [, id, ...more] = rest.split("/");
    const provider = this.#options.providers.find((p) => p.id === id);
    if (!provider) throw new WarrenError(ErrorCode.NotFound, `no login provider "${id ?? ""}"`);
    let principal: Principal | undefined;
    try {
      principal = await provider.handle({ req, res, subpath: more.length > 0 ? `/${more.join("/")}` : "", returnTo: returnTo.toString(), form });
    } catch (err) {
      const e = WarrenError.from(err);
      if (e.code !== ErrorCode.Unauthenticated) throw e;
      this.#options.log.info({ provider: provider.id }, "browser login refused");
      this.#page(res, 401, returnTo, e.message);
      return;
    }
    if (!principal) return;
    this.#options.log.info({ provider: provider.id, user: principal.kind === "user" ? principal.user : "admin" }, "browser login");
    await this.#setCookie(res, principal, this.#options.rootDomain);
    await this.#sendBack(res, principal, returnTo);
  }

  /** Finishes a login a provider completed outside the login page (the OIDC callback). */
  async completeLogin(res: ServerResponse, principal: Principal, returnTo: string): Promise<void> {
    const url = this.#validReturnTo(returnTo);
    await this.#setCookie(res, principal, this.#options.rootDomain);
    await this.#sendBack(res, principal, url);
  }

  /** Mints a one-time code for the target workspace host and redirects there with it. */
  async #sendBack(res: ServerResponse, principal: Principal, returnTo: URL): Promise<void> {
    // The dashboard on the root domain already has the session cookie.
    // (return_to may name a page of the root domain itself, such as `warren login`'s confirmation.)
    if (parseHost(returnTo.host, this.#options.rootDomain).kind === "root") {
      return redirect(res, 303, `${returnTo.origin}${pathOnThisHost(`${returnTo.pathname}${returnTo.search}`)}`);
    }
    const code = mintToken(TokenKind.LoginCode);
    const target = workspaceHostOf(returnTo, this.#options.rootDomain);
    const workspaceId = await this.#currentIncarnation(target.workspace);
    await this.#options.loginCodes.putLoginCode({
      id: code.id,
      hash: code.hash,
      host: target.host,
      ...(workspaceId !== undefined ? { workspaceId } : {}),
      ...(principal.kind === "user" ? { user: principal.user } : {}),
      tokenId: principal.tokenId,
      expiresAt: this.#now() + this.#options.loginCodeTtlMs,
    });
    const back = new URL(CALLBACK_PATH, returnTo.origin);
    back.searchParams.set("code", code.token);
    back.searchParams.set("path", `${returnTo.pathname}${returnTo.search}`);
    redirect(res, 303, back.toString());
  }

  /** The id of the workspace of that name now, or undefined when there is none. */
  async #currentIncarnation(name: string): Promise<string | undefined> {
    const record = await this.#options.workspaces.getWorkspace(name);
    return record ? workspaceIdOf(record) : undefined;
  }

  async #callback(res: ServerResponse, host: string, workspace: string, url: URL): Promise<void> {
    const refused = new WarrenError(
      ErrorCode.Unauthenticated,
      `login code is invalid, expired or already used; log in again at ${new URL(this.#options.publicBase()).origin}${LOGIN_PATH}`,
    );
    const parsed = parseToken(url.searchParams.get("code") ?? "");
    if (!parsed || parsed.kind !== TokenKind.LoginCode) throw refused;
    // Taken out of the store before anything else: a code works once, even when it fails.
    const record = await this.#options.loginCodes.takeLoginCode(parsed.id);
    if (!record || !secretMatches(parsed.secret, record.hash) || record.expiresAt <= this.#now() || record.host !== host) throw refused;
    // Minted for the workspace this host served then: not valid on a workspace created since under the same name.
    const workspaceId = await this.#currentIncarnation(workspace);
    if (record.workspaceId !== workspaceId) throw refused;
    const principal = await this.#options.authenticator.principalOfSession(record).catch(() => {
      throw refused;
    });
    const path = pathOnThisHost(url.searchParams.get("path"));
    await this.#setCookie(res, principal, host, workspaceId);
    redirect(res, 303, path);
  }

  async #setCookie(res: ServerResponse, principal: Principal, host: string, workspaceId?: string): Promise<void> {
    const now = this.#now();
    const tokenExpiry = await this.#options.authenticator.tokenExpiry(principal);
    const expiresAt = Math.min(now + this.#options.sessionTtlMs, tokenExpiry ?? Infinity);
    const value = this.#options.signer.sign({
      host,
      ...(principal.kind === "user" ? { user: principal.user } : {}),
      tokenId: principal.tokenId,
      expiresAt,
      ...(workspaceId !== undefined ? { workspaceId } : {}),
    });
    appendSetCookie(res, setCookieHeader({ name: this.#cookieName, value, maxAgeSeconds: (expiresAt - now) / 1000, secure: this.#secure }));
  }

  #clearCookie(res: ServerResponse): void {
    appendSetCookie(res, setCookieHeader({ name: this.#cookieName, value: "", maxAgeSeconds: 0, secure: this.#secure }));
  }

  /** return_to must be a workspace URL on this Warren (same scheme and port): no open redirects. */
  #validReturnTo(raw: string | null): URL {
    const bad = new WarrenError(ErrorCode.InvalidArgument, "return_to: must be the URL of a workspace on this server");
    if (!raw) throw new WarrenError(ErrorCode.InvalidArgument, "return_to: required (open the workspace URL to log in)");
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw bad;
    }
    const base = new URL(this.#options.publicBase());
    if (url.protocol !== base.protocol || url.port !== base.port || url.username || url.password) throw bad;
    const target = parseHost(url.host, this.#options.rootDomain).kind;
    // A workspace, or the dashboard (the root domain's own origin).
    if (target !== "workspace" && !(target === "root" && url.origin === base.origin)) throw bad;
    return url;
  }

  /** A login form posted from another site is refused (login CSRF). */
  #checkOrigin(req: IncomingMessage): void {
    const origin = req.headers.origin;
    // "null" is what a sandboxed frame or a redirect chain from elsewhere sends: not this site.
    if (origin !== undefined && origin !== new URL(this.#options.publicBase()).origin) {
      throw new WarrenError(ErrorCode.PermissionDenied, "login form posted from another site");
    }
  }

  #page(res: ServerResponse, status: number, returnTo: URL, error?: string): void {
    const forms = this.#options.providers.map((p) => p.renderForm({ returnTo: returnTo.toString(), escape: escapeHtml })).join("\n");
    const body = `<p>Log in to reach <code>${escapeHtml(returnTo.host)}</code>.</p>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>\n` : ""}${forms}`;
    sendHtml(res, status, "Log in to Warren", body);
  }
}

/**
 * Where the login callback sends the browser: the path (and query) of `raw` read as a browser
 * reads it, relative to this host, or "/" when it would lead anywhere else. Browsers drop tabs
 * and line breaks from URLs, so `/\t/evil.example/` is `//evil.example/`: the path is resolved
 * the same way and written back in its serialized (percent-encoded) form, which also never
 * carries a character that a header cannot.
 */
export function pathOnThisHost(raw: string | null): string {
  if (!raw || !raw.startsWith("/")) return "/";
  const base = "http://this-host.invalid";
  let url: URL;
  try {
    url = new URL(raw, base);
  } catch {
    return "/";
  }
  if (url.origin !== base) return "/";
  const path = `${url.pathname}${url.search}`;
  return path.startsWith("//") || path.startsWith("/\\") ? "/" : path;
}

/** `{port}-{workspace}.{root}` of a validated workspace URL: what cookies and codes are bound to. */
function workspaceHostOf(url: URL, rootDomain: string): { host: string; workspace: string } {
  const target = parseHost(url.host, rootDomain);
  if (target.kind !== "workspace") throw new WarrenError(ErrorCode.InvalidArgument, "return_to: not a workspace URL");
  return { host: `${target.port}-${target.workspace}.${rootDomain}`, workspace: target.workspace };
}

function redirect(res: ServerResponse, status: 302 | 303, location: string): void {
  res.statusCode = status;
  res.setHeader("location", location);
  res.setHeader("cache-control", "no-store");
  res.setHeader("content-type", "text/plain; charset=utf-8");
  res.end(`redirecting to ${location}\n`);
}

function appendSetCookie(res: ServerResponse, cookie: string): void {
  const existing = res.getHeader("set-cookie");
  const list = existing === undefined ? [] : Array.isArray(existing) ? existing : [String(existing)];
  res.setHeader("set-cookie", [...list, cookie]);
}

function sendHtml(res: ServerResponse, status: number, title: string, body: string): void {
  // The dashboard's look and strict CSP (never framed). No form-action: the login's redirect
  // goes on to a workspace host, which browsers would hold to it.
  sendPage(res, status, { title, narrow: true, formAction: false, main: `<h1>${escapeHtml(title)}</h1>\n${body}` });
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

export function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = req.headers["content-type"] ?? "";
  if (!/^application\/x-www-form-urlencoded\b/i.test(type)) {
    req.resume();
    return Promise.reject(new WarrenError(ErrorCode.InvalidArgument, "the login form must be application/x-www-form-urlencoded"));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_FORM_BYTES) {
        chunks.push(chunk);
        return;
      }
      // Answer at once; the rest of the body is read and dropped so the connection survives.
      req.off("data", onData);
      req.resume();
      reject(new WarrenError(ErrorCode.ResourceExhausted, `login form over ${MAX_FORM_BYTES} bytes`));
    };
    req.on("data", onData);
    req.once("end", () => resolve(new URLSearchParams(Buffer.concat(chunks).toString("utf8"))));
    req.once("error", reject);
  });
}
