import type { IncomingMessage, ServerResponse } from "node:http";
import * as client from "openid-client";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { httpStatusOf } from "../../shared/http-status.js";
import type { Logger } from "../../shared/logger.js";
import type { Principal } from "../domain/principal.js";
import { cookieValues, setCookieHeader } from "../auth/session-cookie.js";
import type { UserManager } from "../control/user-manager.js";
import type { LoginProvider, LoginRequest } from "../http/login-provider.js";
import { escapeHtml, sendPage } from "../web/page.js";
import { isLoopback, type OidcConfig } from "./oidc-settings.js";
import { transactionCookieName, TransactionSealer } from "./oidc-transaction.js";
import { usernameFromClaim } from "./oidc-username.js";

/** Where the provider sends the browser back: `{public URL}/-/oidc/callback`. */
export const OIDC_CALLBACK_PATH = "/-/oidc/callback";
/** How long a sign-in may take at the provider. */
const TRANSACTION_TTL_MS = 10 * 60_000;
/** How long a failed discovery is remembered before the next sign-in tries again. */
const DISCOVERY_TIMEOUT_S = 5;

export interface OidcLoginOptions {
  readonly oidc: OidcConfig;
  readonly publicBase: () => string;
  readonly sealer: TransactionSealer;
  readonly users: Pick<UserManager, "provisionUser" | "mintSessionToken">;
  /** Lifetime of a browser session (and of the token it rides on). */
  readonly sessionTtlMs: number;
  /** Finishes the login: sets the root-domain session and sends the browser on. */
  readonly complete: (res: ServerResponse, principal: Principal, returnTo: string) => Promise<void>;
  readonly log: Logger;
  readonly now?: () => number;
}

/** Why a sign-in failed, said to the person; the code gives the status. */
class SignInFailure extends WarrenError {}

/**
 * Single sign-on with OpenID Connect: authorization code flow with PKCE, `state` and `nonce`
 * checked, the ID token's signature verified against the issuer's JWKS (openid-client's
 * non-repudiation checks) along with its issuer, audience and lifetime. The first sign-in
 * creates the Warren user; each sign-in mints the access token the browser session rides on,
 * so revoking it (dashboard, API) ends the session everywhere.
 */
export class OidcLogin implements LoginProvider {
  readonly id = "oidc";
  readonly #options: OidcLoginOptions;
  #configuration: Promise<client.Configuration> | undefined;

  constructor(options: OidcLoginOptions) {
    this.#options = options;
  }

  #now(): number {
    return (this.#options.now ?? Date.now)();
  }

  get #secure(): boolean {
    return this.#options.publicBase().startsWith("https:");
  }

  get #redirectUri(): string {
    return `${new URL(this.#options.publicBase()).origin}${OIDC_CALLBACK_PATH}`;
  }

  renderForm({ returnTo, escape }: { returnTo: string; escape: (text: string) => string }): string {
    const host = new URL(this.#options.oidc.issuer).host;
    return `<p><a class="button primary" href="/-/login/oidc?return_to=${escape(encodeURIComponent(returnTo))}">Sign in with single sign-on</a> <span class="muted">(${escape(host)})</span></p>`;
  }

  /** `/-/login/oidc`: sends the browser to the provider, with a sealed transaction cookie. */
  async handle({ res, returnTo }: LoginRequest): Promise<Principal | undefined> {
    let configuration: client.Configuration;
    try {
      configuration = await this.#discover();
    } catch (err) {
      this.#failPage(res, err);
      return undefined;
    }
    const codeVerifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(configuration, {
      redirect_uri: this.#redirectUri,
      scope: this.#options.oidc.scopes.join(" "),
      code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: "S256",
      state,
      nonce,
    });
    const sealed = this.#options.sealer.seal({ state, nonce, codeVerifier, returnTo, expiresAt: this.#now() + TRANSACTION_TTL_MS });
    res.writeHead(303, {
      location: url.href,
      "cache-control": "no-store",
      "set-cookie": setCookieHeader({ name: transactionCookieName(this.#secure), value: sealed, maxAgeSeconds: TRANSACTION_TTL_MS / 1000, secure: this.#secure }),
      "content-type": "text/plain; charset=utf-8",
    });
    res.end(`redirecting to the identity provider\n`);
    return undefined;
  }

  /** Root-domain route for the provider's redirect. True when handled. */
  route(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    if (path !== OIDC_CALLBACK_PATH) return false;
    this.#callback(req, res).catch((err) => this.#failPage(res, err));
    return true;
  }

  async #callback(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // The transaction works once: its cookie goes whatever happens next.
    res.setHeader("set-cookie", setCookieHeader({ name: transactionCookieName(this.#secure), value: "", maxAgeSeconds: 0, secure: this.#secure }));
    if (req.method !== "GET") throw new SignInFailure(ErrorCode.InvalidArgument, "the sign-in callback takes GET");
    const current = new URL(req.url ?? "/", this.#redirectUri);
    const providerError = current.searchParams.get("error");
    if (providerError) {
      const description = current.searchParams.get("error_description");
      throw new SignInFailure(ErrorCode.Unauthenticated, `the identity provider refused the sign-in: ${providerError}${description ? ` (${description})` : ""}`);
    }
    let transaction: ReturnType<TransactionSealer["open"]>;
    for (const value of cookieValues(req.headers.cookie, transactionCookieName(this.#secure))) {
      transaction ??= this.#options.sealer.open(value);
    }
    if (!transaction) {
      throw new SignInFailure(
        ErrorCode.Unauthenticated,
        "this sign-in was not started in this browser, took longer than 10 minutes, or was already finished; sign in again",
      );
    }
    // Checked here as well as by openid-client, to say clearly what is wrong (login CSRF).
    if (current.searchParams.get("state") !== transaction.state) {
      throw new SignInFailure(ErrorCode.Unauthenticated, "the sign-in answer does not belong to the sign-in this browser started (state mismatch); sign in again");
    }
    const configuration = await this.#discover();
    const tokens = await client
      .authorizationCodeGrant(configuration, new URL(`${this.#redirectUri}${current.search}`), {
        pkceCodeVerifier: transaction.codeVerifier,
        expectedState: transaction.state,
        expectedNonce: transaction.nonce,
        idTokenExpected: true,
      })
      .catch((err: unknown) => {
        throw explain(err, this.#options.oidc.issuer);
      });
    const claims: Record<string, unknown> = { ...tokens.claims() };
    const { usernameClaim, groupsClaim, allowedGroups, adminGroups } = this.#options.oidc;
    const needGroups = allowedGroups.length > 0 || adminGroups.length > 0;
    if (claims[usernameClaim] === undefined || (needGroups && claims[groupsClaim] === undefined)) {
      // Some providers put profile and groups in userinfo only.
      const info = await client.fetchUserInfo(configuration, tokens.access_token, String(claims["sub"])).catch((err: unknown) => {
        throw explain(err, this.#options.oidc.issuer);
      });
      for (const [k, v] of Object.entries(info)) if (claims[k] === undefined) claims[k] = v;
    }
    const user = usernameFromClaim(claims[usernameClaim], usernameClaim);
    const groups = groupsOf(claims[groupsClaim]);
    if (allowedGroups.length > 0 && !groups.some((g) => allowedGroups.includes(g))) {
      this.#options.log.info({ user, groups }, "single sign-on refused: not in an allowed group");
      throw new SignInFailure(
        ErrorCode.PermissionDenied,
        `"${user}" is not a member of a group allowed to use Warren (${allowedGroups.join(", ")}); ask an administrator to add you`,
      );
    }
    const admin = adminGroups.length > 0 && groups.some((g) => adminGroups.includes(g));
    await this.#options.users.provisionUser(user).catch((err: unknown) => {
      throw new SignInFailure(ErrorCode.PermissionDenied, `cannot sign in as "${user}": ${WarrenError.from(err).message}`);
    });
    const token = await this.#options.users.mintSessionToken(user, { ttlMs: this.#options.sessionTtlMs, admin, name: "browser session (single sign-on)" });
    this.#options.log.info({ user, admin, tokenId: token.id }, "single sign-on");
    await this.#options.complete(res, { kind: "user", user, tokenId: token.id, ...(admin ? { admin: true } : {}) }, transaction.returnTo);
  }

  /** Discovery, kept once it worked; a provider that is down is asked again at the next sign-in. */
  #discover(): Promise<client.Configuration> {
    if (!this.#configuration) {
      const { issuer, clientId, clientSecret } = this.#options.oidc;
      const insecure = new URL(issuer).protocol === "http:" && isLoopback(new URL(issuer).hostname);
      const pending = client
        .discovery(new URL(issuer), clientId, clientSecret, clientSecret === undefined ? client.None() : undefined, {
          timeout: DISCOVERY_TIMEOUT_S,
          ...(insecure ? { execute: [client.allowInsecureRequests] } : {}),
        })
        .then((configuration) => {
          client.enableNonRepudiationChecks(configuration);
          return configuration;
        })
        .catch((err: unknown) => {
          this.#configuration = undefined;
          throw explain(err, issuer);
        });
      this.#configuration = pending;
    }
    return this.#configuration;
  }

  #failPage(res: ServerResponse, err: unknown): void {
    const e = err instanceof SignInFailure ? err : WarrenError.from(err);
    if (!(err instanceof SignInFailure)) this.#options.log.warn({ err: e.message }, "single sign-on failed");
    else this.#options.log.info({ err: e.message }, "single sign-on refused");
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const status = httpStatusOf(e.code);
    sendPage(res, status, {
      title: "Sign-in failed",
      narrow: true,
      main: `<h1>Sign-in failed</h1>
<p class="error" role="alert">${escapeHtml(e.message)}</p>
<p><a class="button primary" href="/-/login?return_to=${encodeURIComponent(`${new URL(this.#options.publicBase()).origin}/`)}">Sign in again</a></p>`,
    });
  }
}

/** The groups claim as a list (a string is one group). */
function groupsOf(value: unknown): string[] {
  if (Array.isArray(value)) return value.filter((g): g is string => typeof g === "string");
  return typeof value === "string" ? [value] : [];
}

/** What went wrong with the provider, in words a person can act on. */
function explain(err: unknown, issuer: string): WarrenError {
  if (err instanceof WarrenError) return err;
  const e = err as Error & { code?: string; error?: string; error_description?: string; cause?: unknown };
  if (e instanceof client.ResponseBodyError || e instanceof client.AuthorizationResponseError) {
    if (e.error === "invalid_grant") {
      return new SignInFailure(ErrorCode.Unauthenticated, "the identity provider refused the sign-in code: it was already used or has expired; sign in again");
    }
    return new SignInFailure(ErrorCode.Unauthenticated, `the identity provider refused the sign-in: ${e.error}${e.error_description ? ` (${e.error_description})` : ""}`);
  }
  // openid-client wraps what went wrong ("invalid response encountered"): read the whole chain.
  const chain: { name?: string; code?: string; message?: string }[] = [];
  for (let c: unknown = e; c && typeof c === "object" && chain.length < 6; c = (c as { cause?: unknown }).cause) chain.push(c as (typeof chain)[number]);
  const codes = chain.map((c) => c.code ?? "");
  const text = chain.map((c) => c.message ?? "").join(": ");
  const network = codes.find((c) => /^(ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|UND_ERR_\w+)$/.test(c));
  if (network || chain.some((c) => c.name === "TimeoutError" || c.name === "AbortError" || c.message === "fetch failed")) {
    return new SignInFailure(ErrorCode.Unavailable, `cannot reach the identity provider at ${issuer} (${network ?? "no answer"}); try again in a moment`);
  }
  const message = text || String(err);
  if (/signature/i.test(message) || codes.includes("OAUTH_KEY_SELECTION_FAILED")) {
    return new SignInFailure(ErrorCode.Unauthenticated, "the ID token's signature does not verify with the identity provider's published keys (JWKS); sign-in refused");
  }
  if (codes.includes("OAUTH_JWT_TIMESTAMP_CHECK_FAILED")) {
    return new SignInFailure(ErrorCode.Unauthenticated, `the ID token has expired or is not valid yet (${message}); check the clocks of Warren and the identity provider`);
  }
  if (/nonce/i.test(message)) return new SignInFailure(ErrorCode.Unauthenticated, "the ID token was not issued for this sign-in (nonce mismatch); sign in again");
  return new SignInFailure(ErrorCode.Unauthenticated, `the identity provider's answer was not accepted: ${message}`);
}
