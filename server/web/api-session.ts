import type { IncomingMessage } from "node:http";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Principal } from "../domain/principal.js";

/** The header the dashboard sends with every API call; other sites cannot send it without CORS. */
export const CSRF_HEADER = "x-warren-csrf";

/**
 * The principal of an API call that carries the root domain's session cookie instead of a
 * bearer token (the dashboard). Defence against cross-site requests: the custom header (a
 * form cannot send it, and a cross-origin fetch with it needs a CORS preflight Warren never
 * allows), and Origin / Sec-Fetch-Site, when the browser sends them, must be this origin.
 * Resolves undefined when there is no session cookie (the caller then needs a token).
 */
export function apiSessionReader(options: {
  readonly publicBase: () => string;
  readonly sessionOf: (req: Pick<IncomingMessage, "headers">) => Promise<Principal | undefined>;
}): (headers: Headers) => Promise<Principal | undefined> {
  return async (headers) => {
    const cookie = headers.get("cookie");
    if (!cookie || !/\bwarren_session=/.test(cookie)) return undefined;
    const refused = (why: string) => new WarrenError(ErrorCode.PermissionDenied, `a browser session may call the API only from Warren's own dashboard (${why})`);
    if (headers.get(CSRF_HEADER) !== "1") throw new WarrenError(ErrorCode.Unauthenticated, `API calls with the session cookie need the ${CSRF_HEADER}: 1 header; scripts use Authorization: Bearer <token>`);
    const origin = headers.get("origin");
    if (origin !== null && origin !== new URL(options.publicBase()).origin) throw refused(`Origin ${origin.slice(0, 100)}`);
    const site = headers.get("sec-fetch-site");
    if (site !== null && site !== "same-origin") throw refused(`Sec-Fetch-Site ${site.slice(0, 40)}`);
    const principal = await options.sessionOf({ headers: { cookie } });
    if (!principal) throw new WarrenError(ErrorCode.Unauthenticated, "session expired or signed out; sign in again");
    return principal;
  };
}
