/**
 * Who is calling, once authenticated, and with which token (so that a browser session made
 * with a token ends when the token is revoked).
 */
export type Principal =
  | { readonly kind: "admin"; readonly tokenId: string }
  /** `expiresAt`: when the token expires (ms since the epoch), where it was read. */
  | { readonly kind: "user"; readonly user: string; readonly tokenId: string; readonly expiresAt?: number; readonly admin?: boolean };

/**
 * Whether the principal has the admin's rights: the admin token, or a user signed in through
 * single sign-on as a member of WARREN_OIDC_ADMIN_GROUPS (their session's token says so).
 */
export function isAdmin(principal: Principal): boolean {
  return principal.kind === "admin" || principal.admin === true;
}
