import { ErrorCode, WarrenError } from "../../shared/errors.js";

/**
 * The Warren user name for the value of the username claim: lowercase, the part before an
 * "@" (an e-mail address), other characters turned into hyphens, so "Alice.Smith@example.com"
 * becomes "alice-smith". Rejects with permission_denied when nothing usable is left.
 */
export function usernameFromClaim(value: unknown, claim: string): string {
  if (typeof value !== "string" || value.trim() === "") {
    throw new WarrenError(ErrorCode.PermissionDenied, `the identity provider sent no "${claim}" claim to name the Warren user (see WARREN_OIDC_USERNAME_CLAIM)`);
  }
  const local = value.trim().toLowerCase().split("@")[0]!;
  const name = local
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/-+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63)
    .replace(/-+$/, "");
  if (!/^[a-z]/.test(name)) {
    throw new WarrenError(ErrorCode.PermissionDenied, `the "${claim}" claim "${value.slice(0, 80)}" does not make a Warren user name (it must start with a letter)`);
  }
  return name;
}
