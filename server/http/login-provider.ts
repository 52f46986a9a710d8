import type { IncomingMessage, ServerResponse } from "node:http";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Authenticator } from "../auth/authenticator.js";
import type { Principal } from "../domain/principal.js";

/** What a login provider gets to work with for one request. */
export interface LoginRequest {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** Path below `/-/login/{provider id}` ("" or "/callback"...). */
  readonly subpath: string;
  /** Where the user is headed: a validated workspace URL. */
  readonly returnTo: string;
  /** The form fields of a POST (urlencoded), already read and size-limited. */
  readonly form: URLSearchParams;
}

/**
 * One way of proving who you are on the login page. The access-token form is the first;
 * an OIDC provider fits the same shape: its form is a "Sign in with ..." button, its handle()
 * redirects to the identity provider and, on `/-/login/oidc/callback`, maps the verified
 * identity to a Warren user.
 */
export interface LoginProvider {
  /** Path segment under /-/login/ (lowercase letters). */
  readonly id: string;
  /** HTML for the provider's part of the login page; `returnTo` must go back in the form. */
  renderForm(options: { returnTo: string; escape: (text: string) => string }): string;
  /**
   * Handles a request under its path. Resolves with the principal when the user is
   * authenticated, or undefined when the provider answered the request itself (a redirect to
   * an identity provider). Rejects with unauthenticated when the credentials are wrong: the
   * login page shows the message again.
   */
  handle(request: LoginRequest): Promise<Principal | undefined>;
}

/** Log in by pasting an access token (`wut_...`) or the admin token. */
export class AccessTokenLogin implements LoginProvider {
  readonly id = "token";
  readonly #authenticator: Authenticator;

  constructor(authenticator: Authenticator) {
    this.#authenticator = authenticator;
  }

  renderForm({ returnTo, escape }: { returnTo: string; escape: (text: string) => string }): string {
    return `<form method="post" action="/-/login/token">
  <input type="hidden" name="return_to" value="${escape(returnTo)}">
  <label>Access token <input type="password" name="token" autocomplete="off" autofocus required></label>
  <button type="submit" class="primary">Log in</button>
</form>`;
  }

  async handle({ req, form }: LoginRequest): Promise<Principal | undefined> {
    if (req.method !== "POST") throw new WarrenError(ErrorCode.InvalidArgument, "send the form with POST");
    const token = form.get("token")?.trim();
    if (!token) throw new WarrenError(ErrorCode.Unauthenticated, "enter an access token");
    return this.#authenticator.authenticateCaller(token);
  }
}
