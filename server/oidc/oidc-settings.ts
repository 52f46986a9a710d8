import { readFileSync } from "node:fs";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { parseCommaList, parseNonEmpty, parseReadableFile, setting } from "../../shared/settings.js";

function parseIssuer(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new Error(`"${raw}" is not a URL`);
  }
  if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopback(url.hostname))) {
    throw new Error("must be an https URL (plain http only for a provider on this machine: localhost or 127.0.0.1)");
  }
  if (url.search || url.hash) throw new Error("must have no query or fragment");
  return url.href.replace(/\/$/, "");
}

/** Plain-HTTP issuers are accepted on loopback only (development and tests). */
export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "127.0.0.1" || hostname === "[::1]" || hostname.endsWith(".localhost");
}

function parseScopes(raw: string): string[] {
  const scopes = raw.split(/[\s,]+/).filter(Boolean);
  if (!scopes.includes("openid")) throw new Error(`"${raw}" must include openid`);
  return scopes;
}

function parseClaimName(raw: string): string {
  if (!/^[A-Za-z0-9_:./-]{1,128}$/.test(raw)) throw new Error(`"${raw}" is not a claim name`);
  return raw;
}

/** Single sign-on with an OpenID Connect provider (off unless WARREN_OIDC_ISSUER is set). */
export const OIDC_SETTINGS = {
  oidcIssuer: setting<string | undefined>({
    key: "oidcIssuer",
    flag: "oidc-issuer",
    env: "WARREN_OIDC_ISSUER",
    description:
      "OpenID Connect issuer URL for single sign-on (discovery at {issuer}/.well-known/openid-configuration); register {public URL}/-/oidc/callback as the redirect URI",
    defaultText: "off",
    parse: parseIssuer,
  }),
  oidcClientId: setting<string | undefined>({
    key: "oidcClientId",
    flag: "oidc-client-id",
    env: "WARREN_OIDC_CLIENT_ID",
    description: "client id Warren has at the OpenID provider",
    defaultText: "none",
    parse: parseNonEmpty,
  }),
  oidcClientSecret: setting<string | undefined>({
    key: "oidcClientSecret",
    flag: "oidc-client-secret",
    env: "WARREN_OIDC_CLIENT_SECRET",
    description: "client secret at the OpenID provider (or WARREN_OIDC_CLIENT_SECRET_FILE); none: a public client with PKCE only",
    parse: parseNonEmpty,
  }),
  oidcClientSecretFile: setting<string | undefined>({
    key: "oidcClientSecretFile",
    flag: "oidc-client-secret-file",
    env: "WARREN_OIDC_CLIENT_SECRET_FILE",
    description: "file holding the client secret (trailing newline ignored)",
    defaultText: "none",
    parse: parseReadableFile,
  }),
  oidcScopes: setting<string[]>({
    key: "oidcScopes",
    flag: "oidc-scopes",
    env: "WARREN_OIDC_SCOPES",
    description: "scopes asked for (space- or comma-separated; must include openid)",
    default: ["openid", "profile", "email"],
    defaultText: "openid profile email",
    parse: parseScopes,
  }),
  oidcUsernameClaim: setting<string>({
    key: "oidcUsernameClaim",
    flag: "oidc-username-claim",
    env: "WARREN_OIDC_USERNAME_CLAIM",
    description: "ID token claim that names the Warren user (made into a DNS label: lowercase, '@domain' dropped)",
    default: "preferred_username",
    defaultText: "preferred_username",
    parse: parseClaimName,
  }),
  oidcGroupsClaim: setting<string>({
    key: "oidcGroupsClaim",
    flag: "oidc-groups-claim",
    env: "WARREN_OIDC_GROUPS_CLAIM",
    description: "ID token (or userinfo) claim that lists the user's groups",
    default: "groups",
    defaultText: "groups",
    parse: parseClaimName,
  }),
  oidcAllowedGroups: setting<string[]>({
    key: "oidcAllowedGroups",
    flag: "oidc-allowed-groups",
    env: "WARREN_OIDC_ALLOWED_GROUPS",
    description: "comma-separated groups whose members may sign in; empty: everyone the provider signs in",
    default: [],
    defaultText: "everyone",
    parse: parseCommaList,
  }),
  oidcAdminGroups: setting<string[]>({
    key: "oidcAdminGroups",
    flag: "oidc-admin-groups",
    env: "WARREN_OIDC_ADMIN_GROUPS",
    description: "comma-separated groups whose members are Warren admins while signed in through the provider (they see and manage every workspace and user)",
    default: [],
    defaultText: "none",
    parse: parseCommaList,
  }),
};

/** What the OIDC login needs, resolved; undefined when single sign-on is off. */
export interface OidcConfig {
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string | undefined;
  readonly scopes: readonly string[];
  readonly usernameClaim: string;
  readonly groupsClaim: string;
  readonly allowedGroups: readonly string[];
  readonly adminGroups: readonly string[];
}

type OidcSettings = {
  oidcIssuer: string | undefined;
  oidcClientId: string | undefined;
  oidcClientSecret: string | undefined;
  oidcClientSecretFile: string | undefined;
  oidcScopes: string[];
  oidcUsernameClaim: string;
  oidcGroupsClaim: string;
  oidcAllowedGroups: string[];
  oidcAdminGroups: string[];
};

/** Checks the OIDC settings together (at start) and resolves the client secret. */
export function oidcConfigOf(config: OidcSettings): OidcConfig | undefined {
  const invalid = (message: string) => new WarrenError(ErrorCode.InvalidArgument, message);
  if (config.oidcIssuer === undefined) {
    if (config.oidcClientId !== undefined) throw invalid("WARREN_OIDC_CLIENT_ID is set but WARREN_OIDC_ISSUER is not: set both for single sign-on");
    return undefined;
  }
  if (config.oidcClientId === undefined) throw invalid("WARREN_OIDC_ISSUER needs WARREN_OIDC_CLIENT_ID (the client id Warren has at the provider)");
  if (config.oidcClientSecret !== undefined && config.oidcClientSecretFile !== undefined) {
    throw invalid("set WARREN_OIDC_CLIENT_SECRET or WARREN_OIDC_CLIENT_SECRET_FILE, not both");
  }
  let clientSecret = config.oidcClientSecret;
  if (config.oidcClientSecretFile !== undefined) {
    clientSecret = readFileSync(config.oidcClientSecretFile, "utf8").replace(/\r?\n$/, "");
    if (clientSecret === "") throw invalid(`WARREN_OIDC_CLIENT_SECRET_FILE: ${config.oidcClientSecretFile} is empty`);
  }
  return {
    issuer: config.oidcIssuer,
    clientId: config.oidcClientId,
    clientSecret,
    scopes: config.oidcScopes,
    usernameClaim: config.oidcUsernameClaim,
    groupsClaim: config.oidcGroupsClaim,
    allowedGroups: config.oidcAllowedGroups,
    adminGroups: config.oidcAdminGroups,
  };
}
