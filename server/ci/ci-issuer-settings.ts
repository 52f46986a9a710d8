import { parse as parseYaml } from "yaml";
import { formatDuration, parseDuration, setting } from "../../shared/settings.js";
import { isLoopback } from "../oidc/oidc-settings.js";
import { parseOwnerTemplate, type ClaimRequirement, type OwnerTemplate } from "./claim-rules.js";

/** One CI system whose OIDC ID tokens enroll workspaces (an entry of WARREN_CI_ISSUERS). */
export interface CiIssuerConfig {
  /** The `iss` of its tokens; discovery at {issuer}/.well-known/openid-configuration. */
  readonly issuer: string;
  /** The `aud` its tokens must carry; undefined: the server's public URL. */
  readonly audience?: string;
  /** Names the Warren user who owns the job's workspace, e.g. `{user_login}` (GitLab) or `{actor}` (GitHub). */
  readonly owner: OwnerTemplate;
  /** Claims that must match (all of them), each against one glob or any of a list. */
  readonly require: readonly ClaimRequirement[];
  /** The longest time to live of a workspace it enrolls. */
  readonly maxTtlMs: number;
  /** Create the owner as a Warren user when missing; otherwise an unknown owner is refused. */
  readonly createUsers: boolean;
}

export const DEFAULT_CI_MAX_TTL_MS = 6 * 3_600_000;
const MAX_CI_TTL_MS = 7 * 86_400_000;
const KEYS = new Set(["issuer", "audience", "owner", "require", "maxTtl", "createUsers"]);

/**
 * Parses WARREN_CI_ISSUERS: a list (YAML in the config file, JSON in the variable or flag) of
 * `{issuer, audience?, owner, require?, maxTtl?, createUsers?}`. Throws an Error naming the
 * entry and field that is wrong.
 */
export function parseCiIssuers(raw: string): CiIssuerConfig[] {
  let doc: unknown;
  try {
    doc = parseYaml(raw);
  } catch (err) {
    throw new Error(`not a JSON or YAML list: ${(err as Error).message.split("\n")[0]}`);
  }
  if (!Array.isArray(doc)) throw new Error("must be a list of issuers, e.g. [{\"issuer\": \"https://gitlab.example.com\", \"owner\": \"{user_login}\"}]");
  const seen = new Set<string>();
  return doc.map((entry: unknown, i) => {
    const where = `issuer ${i + 1}`;
    if (entry === null || typeof entry !== "object" || Array.isArray(entry)) throw new Error(`${where}: must be a mapping with issuer and owner`);
    const e = entry as Record<string, unknown>;
    for (const key of Object.keys(e)) if (!KEYS.has(key)) throw new Error(`${where}: unknown field "${key}" (known: ${[...KEYS].join(", ")})`);
    const issuer = parseIssuerUrl(where, e["issuer"]);
    if (seen.has(issuer)) throw new Error(`${where}: ${issuer} is listed twice`);
    seen.add(issuer);
    if (typeof e["owner"] !== "string") throw new Error(`${where}: owner is required, a template such as "{user_login}" or "{actor}"`);
    let owner: OwnerTemplate;
    try {
      owner = parseOwnerTemplate(e["owner"]);
    } catch (err) {
      throw new Error(`${where}: owner: ${(err as Error).message}`);
    }
    const audience = e["audience"];
    if (audience !== undefined && (typeof audience !== "string" || audience.trim() === "")) throw new Error(`${where}: audience must be a non-empty string`);
    const createUsers = e["createUsers"] ?? false;
    if (typeof createUsers !== "boolean") throw new Error(`${where}: createUsers must be true or false`);
    return {
      issuer,
      ...(audience !== undefined ? { audience: audience as string } : {}),
      owner,
      require: parseRequire(where, e["require"]),
      maxTtlMs: parseMaxTtl(where, e["maxTtl"]),
      createUsers,
    };
  });
}

function parseIssuerUrl(where: string, value: unknown): string {
  if (typeof value !== "string") throw new Error(`${where}: issuer is required (the URL in the tokens' iss claim)`);
  let url: URL;
  try {
    url = new URL(value.trim());
  } catch {
    throw new Error(`${where}: issuer "${value}" is not a URL`);
  }
  if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopback(url.hostname))) {
    throw new Error(`${where}: issuer must be an https URL (plain http only on this machine)`);
  }
  if (url.search || url.hash) throw new Error(`${where}: issuer must have no query or fragment`);
  // `iss` is compared exactly: GitHub's is https://token.actions.githubusercontent.com, no slash.
  return value.trim().replace(/\/$/, "");
}

function parseRequire(where: string, value: unknown): ClaimRequirement[] {
  if (value === undefined || value === null) return [];
  if (typeof value !== "object" || Array.isArray(value)) throw new Error(`${where}: require must be a mapping of claim to glob, e.g. {project_path: "group/*"}`);
  return Object.entries(value as Record<string, unknown>).map(([claim, globs]) => {
    const list = Array.isArray(globs) ? globs : [globs];
    if (list.length === 0 || list.some((g) => typeof g !== "string" && typeof g !== "boolean" && typeof g !== "number")) {
      throw new Error(`${where}: require.${claim} must be a glob or a list of globs`);
    }
    return { claim, globs: list.map(String) };
  });
}

function parseMaxTtl(where: string, value: unknown): number {
  if (value === undefined) return DEFAULT_CI_MAX_TTL_MS;
  let ms: number;
  try {
    ms = parseDuration(String(value));
  } catch (err) {
    throw new Error(`${where}: maxTtl: ${(err as Error).message}`);
  }
  if (ms < 60_000 || ms > MAX_CI_TTL_MS) throw new Error(`${where}: maxTtl ${String(value)} is out of range 1m-${formatDuration(MAX_CI_TTL_MS)}`);
  return ms;
}

export const CI_SETTINGS = {
  ciIssuers: setting<CiIssuerConfig[]>({
    key: "ciIssuers",
    flag: "ci-issuers",
    env: "WARREN_CI_ISSUERS",
    description:
      "CI systems whose OIDC ID tokens may enroll workspaces (`warren-agent ci`): a list (YAML in the config file, JSON in the variable) of {issuer, audience (default: the public URL), owner (e.g. \"{user_login}\"), require (claim: glob), maxTtl (default 6h), createUsers (default false)}",
    default: [],
    defaultText: "none",
    structured: true,
    parse: parseCiIssuers,
  }),
};
