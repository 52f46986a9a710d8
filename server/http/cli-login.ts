import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { httpStatusOf } from "../../shared/http-status.js";
import type { Logger } from "../../shared/logger.js";
import type { Principal } from "../domain/principal.js";
import { mintToken, parseToken, secretMatches, TokenKind } from "../domain/tokens.js";
import type { TokenRecord } from "../domain/records.js";
import type { LoginCodeStore } from "../domain/store.js";
import { sendPage } from "../web/page.js";
import { escapeHtml, readForm } from "./browser-login.js";
import { sendError } from "../web/error-response.js";

/**
 * `warren login` through the browser (OAuth 2.0 for native apps, RFC 8252, with PKCE, RFC
 * 7636): the CLI listens on a loopback port and opens this page; the person signs in with the
 * ordinary login (token form or single sign-on), confirms, and the browser is sent back to the
 * CLI with a one-time code; the CLI trades code and verifier for a new access token.
 */
export const CLI_LOGIN_PATH = "/-/cli-login";
export const CLI_LOGIN_TOKEN_PATH = "/-/cli-login/token";
/** What a CLI login code's record names instead of a workspace host: no workspace callback redeems it. */
export const CLI_LOGIN_CODE_HOST = "cli-login";
const LOGIN_PATH = "/-/login";
const MAX_JSON_BYTES = 16 * 1024;
const STATE_RE = /^[A-Za-z0-9_-]{16,128}$/;
/** base64url of a SHA-256: what S256 makes of any verifier. */
const CHALLENGE_RE = /^[A-Za-z0-9_-]{43}$/;
/** RFC 7636's verifier alphabet and length. */
const VERIFIER_RE = /^[A-Za-z0-9._~-]{43,128}$/;
const LOOPBACK_HOSTS = new Set(["127.0.0.1", "[::1]", "localhost"]);
const DEFAULT_TOKEN_NAME = "warren login";

/** One validated authorization request, as the CLI sent it. */
interface CliLoginRequest {
  readonly redirectUri: string;
  readonly state: string;
  readonly codeChallenge: string;
  /** Label of the access token to be created (shown by `warren token list`). */
  readonly name: string;
}

export interface CliLoginOptions {
  /** The public base URL (scheme, root domain, port). */
  readonly publicBase: () => string;
  /** The root-domain browser session of a request, if any (the ordinary login's cookie). */
  readonly sessionOf: (req: IncomingMessage) => Promise<Principal | undefined>;
  /** The principal behind a stored code, if its session token is still valid. */
  readonly principalOfCode: (code: { user?: string; tokenId: string }) => Promise<Principal>;
  readonly createAccessToken: (principal: Principal, name: string) => Promise<{ token: string; record: TokenRecord }>;
  readonly loginCodes: LoginCodeStore;
  /** Key of the confirmation form's CSRF field. */
  readonly csrfKey: Buffer;
  /** Lifetime of a code (a minute at most). */
  readonly codeTtlMs: number;
  readonly log: Logger;
  readonly now?: () => number;
}

export class CliLogin {
  readonly #options: CliLoginOptions;

  constructor(options: CliLoginOptions) {
    this.#options = options;
  }

  /** Root-domain route: the confirmation page, its form and the code exchange. True when handled. */
  route(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    if (path === CLI_LOGIN_TOKEN_PATH) {
      this.#exchange(req, res).catch((err) => sendJsonError(res, err));
      return true;
    }
    if (path !== CLI_LOGIN_PATH) return false;
    const handle = req.method === "POST" ? this.#confirm(req, res) : this.#show(req, res);
    handle.catch((err) => sendError(res, err));
    return true;
  }

  #now(): number {
    return (this.#options.now ?? Date.now)();
  }

  async #show(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== "GET" && req.method !== "HEAD") throw new WarrenError(ErrorCode.InvalidArgument, "this page takes GET, and its form POST");
    const base = new URL(this.#options.publicBase());
    // The session cookie lives on the public root domain: a CLI given another name for the
    // server (an IP address) is sent there first.
    if (req.headers.host !== base.host) return redirect(res, 302, `${base.origin}${req.url ?? CLI_LOGIN_PATH}`);
    const request = parseRequest(new URL(req.url ?? "/", base.origin).searchParams);
    const principal = await this.#options.sessionOf(req);
    if (!principal) {
      const back = new URL(CLI_LOGIN_PATH, base.origin);
      back.search = new URLSearchParams(queryOf(request)).toString();
      return redirect(res, 302, `${base.origin}${LOGIN_PATH}?return_to=${encodeURIComponent(back.toString())}`);
    }
    if (principal.kind !== "user") throw adminRefusal();
    const loopback = new URL(request.redirectUri);
    const hidden = Object.entries({ ...queryOf(request), csrf: this.#csrf(principal, request) })
      .map(([k, v]) => `<input type="hidden" name="${k}" value="${escapeHtml(v)}">`)
      .join("\n  ");
    sendHtml(
      res,
      200,
      "Sign in the warren CLI?",
      `<p>The <code>warren</code> command line on this computer asks to sign in as <strong>${escapeHtml(principal.user)}</strong>.</p>
<p>It gets a new access token of yours named <strong>${escapeHtml(request.name)}</strong> (<code>warren token list</code> shows it, <code>warren token revoke</code> ends it), handed to the program listening on port ${escapeHtml(loopback.port || "80")} of this computer.</p>
<p class="muted">Allow this only if you just ran <code>warren login</code>.</p>
<form method="post" action="${CLI_LOGIN_PATH}">
  ${hidden}
  <div class="actions">
    <button type="submit" name="decision" value="allow" class="primary">Allow</button>
    <button type="submit" name="decision" value="deny">Deny</button>
  </div>
</form>`,
    );
  }

  async #confirm(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = await readForm(req);
    checkOrigin(req, this.#options.publicBase());
    const request = parseRequest(form);
    const principal = await this.#options.sessionOf(req);
    if (!principal) throw new WarrenError(ErrorCode.Unauthenticated, "your browser session has ended; run warren login again");
    if (principal.kind !== "user") throw adminRefusal();
    const presented = Buffer.from(form.get("csrf") ?? "", "utf8");
    const expected = Buffer.from(this.#csrf(principal, request), "utf8");
    if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
      throw new WarrenError(ErrorCode.PermissionDenied, "this confirmation was not made on this server's page for your session (CSRF check); run warren login again");
    }
    const back = new URL(request.redirectUri);
    back.searchParams.set("state", request.state);
    if (form.get("decision") !== "allow") {
      back.searchParams.set("error", "access_denied");
      this.#options.log.info({ user: principal.user }, "CLI login denied in the browser");
      return redirect(res, 303, back.toString());
    }
    const code = mintToken(TokenKind.LoginCode);
    await this.#options.loginCodes.putLoginCode({
      id: code.id,
      hash: code.hash,
      host: CLI_LOGIN_CODE_HOST,
      user: principal.user,
      tokenId: principal.tokenId,
      expiresAt: this.#now() + this.#options.codeTtlMs,
      cliLogin: { codeChallenge: request.codeChallenge, redirectUri: request.redirectUri, name: request.name },
    });
    back.searchParams.set("code", code.token);
    this.#options.log.info({ user: principal.user }, "CLI login approved in the browser");
    redirect(res, 303, back.toString());
  }

  /** POST {code, code_verifier, redirect_uri} (JSON): the new access token, once per code. */
  async #exchange(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== "POST") throw new WarrenError(ErrorCode.InvalidArgument, `${CLI_LOGIN_TOKEN_PATH} takes POST`);
    const body = await readJson(req);
    const refused = new WarrenError(ErrorCode.Unauthenticated, "login code is invalid, expired or already used; run warren login again");
    const parsed = parseToken(typeof body["code"] === "string" ? body["code"] : "");
    if (!parsed || parsed.kind !== TokenKind.LoginCode) throw refused;
    // Taken out of the store before anything else: a code works once, even when it fails.
    const record = await this.#options.loginCodes.takeLoginCode(parsed.id);
    if (!record?.cliLogin || record.host !== CLI_LOGIN_CODE_HOST || !secretMatches(parsed.secret, record.hash) || record.expiresAt <= this.#now()) throw refused;
    if (body["redirect_uri"] !== record.cliLogin.redirectUri) {
      throw new WarrenError(ErrorCode.PermissionDenied, "redirect_uri does not match the one this login code was issued for; run warren login again");
    }
    const verifier = typeof body["code_verifier"] === "string" ? body["code_verifier"] : "";
    const challenge = VERIFIER_RE.test(verifier) ? createHash("sha256").update(verifier).digest("base64url") : "";
    if (challenge.length !== record.cliLogin.codeChallenge.length || !timingSafeEqual(Buffer.from(challenge), Buffer.from(record.cliLogin.codeChallenge))) {
      throw new WarrenError(ErrorCode.PermissionDenied, "code_verifier does not match this login's code_challenge (the code was taken by another program?); run warren login again");
    }
    const principal = await this.#options.principalOfCode(record).catch(() => {
      throw new WarrenError(ErrorCode.Unauthenticated, "the browser session that approved this login has ended; run warren login again");
    });
    const { token, record: made } = await this.#options.createAccessToken(principal, record.cliLogin.name);
    this.#options.log.info({ user: made.subject, tokenId: made.id }, "CLI login completed");
    const json = JSON.stringify({ token, id: made.id, user: made.subject, expireTime: new Date(made.expiresAt).toISOString() });
    res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store", "content-length": String(Buffer.byteLength(json)) });
    res.end(json);
  }

  /** Ties the confirmation form to the session that saw it and to this very request. */
  #csrf(principal: Principal, request: CliLoginRequest): string {
    const fields = [principal.tokenId, request.redirectUri, request.state, request.codeChallenge, request.name];
    return createHmac("sha256", this.#options.csrfKey).update(fields.join("\n")).digest("base64url");
  }
}

/** Checks the CLI's parameters; throws invalid_argument naming the first that is wrong. */
function parseRequest(params: URLSearchParams): CliLoginRequest {
  const redirectUri = loopbackRedirect(params.get("redirect_uri"));
  const state = params.get("state") ?? "";
  if (!STATE_RE.test(state)) throw new WarrenError(ErrorCode.InvalidArgument, "state: required, 16-128 characters of A-Z a-z 0-9 _ -");
  const method = params.get("code_challenge_method") ?? "S256";
  if (method !== "S256") throw new WarrenError(ErrorCode.InvalidArgument, `code_challenge_method: only S256 is accepted, not "${method.slice(0, 20)}"`);
  const codeChallenge = params.get("code_challenge") ?? "";
  if (!CHALLENGE_RE.test(codeChallenge)) throw new WarrenError(ErrorCode.InvalidArgument, "code_challenge: required, the base64url SHA-256 of the code verifier (43 characters)");
  const name = (params.get("name") ?? "").trim() || DEFAULT_TOKEN_NAME;
  if (name.length > 100) throw new WarrenError(ErrorCode.InvalidArgument, "name: at most 100 characters");
  return { redirectUri, state, codeChallenge, name };
}

/** Only the CLI on the same computer may receive a code: http on a loopback address, any port. */
export function loopbackRedirect(raw: string | null): string {
  const refused = new WarrenError(
    ErrorCode.InvalidArgument,
    "redirect_uri: only a loopback address is accepted (http://127.0.0.1:PORT/..., http://[::1]:PORT/... or http://localhost:PORT/...): the code goes back to the warren CLI on this computer",
  );
  if (!raw) throw new WarrenError(ErrorCode.InvalidArgument, "redirect_uri: required (start the login with warren login)");
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw refused;
  }
  if (url.protocol !== "http:" || !LOOPBACK_HOSTS.has(url.hostname) || url.username || url.password || url.hash) throw refused;
  return url.toString();
}

function queryOf(request: CliLoginRequest): Record<string, string> {
  return { redirect_uri: request.redirectUri, state: request.state, code_challenge: request.codeChallenge, code_challenge_method: "S256", name: request.name };
}

function adminRefusal(): WarrenError {
  return new WarrenError(
    ErrorCode.PermissionDenied,
    "you are signed in with the admin token, which has no access tokens of its own: sign in as a user, or run warren login --token with the admin token",
  );
}

/** The confirmation form is refused when posted from another site, like the login form. */
function checkOrigin(req: IncomingMessage, publicBase: string): void {
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== new URL(publicBase).origin) throw new WarrenError(ErrorCode.PermissionDenied, "confirmation posted from another site");
}

function redirect(res: ServerResponse, status: 302 | 303, location: string): void {
  res.statusCode = status;
  res.setHeader("location", location);
  res.setHeader("cache-control", "no-store");
  res.setHeader("content-type", "text/plain; charset=utf-8");
  res.end(`redirecting to ${location}\n`);
}

function sendHtml(res: ServerResponse, status: number, title: string, body: string): void {
  // No form-action: the confirmation's answer redirects to the CLI's loopback address.
  sendPage(res, status, { title, narrow: true, formAction: false, main: `<h1>${escapeHtml(title)}</h1>\n${body}` });
}

function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  if (!/^application\/json\b/i.test(req.headers["content-type"] ?? "")) {
    req.resume();
    return Promise.reject(new WarrenError(ErrorCode.InvalidArgument, "send a JSON body (content-type: application/json)"));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_JSON_BYTES) chunks.push(chunk);
    });
    req.once("error", reject);
    req.once("end", () => {
      if (size > MAX_JSON_BYTES) return reject(new WarrenError(ErrorCode.ResourceExhausted, `body over ${MAX_JSON_BYTES} bytes`));
      try {
        const value = JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown;
        if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("not an object");
        resolve(value as Record<string, unknown>);
      } catch {
        reject(new WarrenError(ErrorCode.InvalidArgument, "the body is not a JSON object"));
      }
    });
  });
}

/** Errors of the exchange as the API answers them: JSON {code, message}, for the CLI to print. */
function sendJsonError(res: ServerResponse, err: unknown): void {
  if (res.headersSent) return void res.destroy();
  const e = WarrenError.from(err);
  const json = JSON.stringify({ code: e.code, message: e.message });
  res.writeHead(httpStatusOf(e.code), { "content-type": "application/json", "cache-control": "no-store", "content-length": String(Buffer.byteLength(json)) });
  res.end(json);
}
