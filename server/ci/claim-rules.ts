import { ErrorCode, WarrenError } from "../../shared/errors.js";

/** A claim that must match one of its globs (`*` matches any run of characters, `/` included). */
export interface ClaimRequirement {
  readonly claim: string;
  readonly globs: readonly string[];
}

/** Literal text and `{claim}` placeholders, e.g. `{user_login}` or `gh-{actor}`. */
export interface OwnerTemplate {
  readonly text: string;
  readonly parts: readonly ({ readonly literal: string } | { readonly claim: string })[];
}

const PLACEHOLDER = /\{([A-Za-z0-9_.:-]+)\}/g;

export function parseOwnerTemplate(text: string): OwnerTemplate {
  const parts: OwnerTemplate["parts"][number][] = [];
  let last = 0;
  for (const m of text.matchAll(PLACEHOLDER)) {
    if (m.index > last) parts.push({ literal: text.slice(last, m.index) });
    parts.push({ claim: m[1]! });
    last = m.index + m[0].length;
  }
  if (last < text.length) parts.push({ literal: text.slice(last) });
  if (!parts.some((p) => "claim" in p)) throw new Error(`"${text}" names no claim; use {claim}, e.g. "{user_login}" or "{actor}"`);
  if (parts.some((p) => "literal" in p && /[{}]/.test(p.literal))) throw new Error(`"${text}" has a brace that is not a {claim} placeholder`);
  return { text, parts };
}

/** A claim as text: strings as they are, numbers and booleans as JSON writes them; undefined otherwise. */
function claimText(claims: Record<string, unknown>, name: string): string | undefined {
  const value = claims[name];
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return undefined;
}

/**
 * The Warren user the template names for these claims, lowercased (GitHub and GitLab names
 * are case-insensitive; Warren's are lowercase). Rejects with permission_denied, naming the
 * claim, when one is missing.
 */
export function ownerOf(template: OwnerTemplate, claims: Record<string, unknown>): string {
  return template.parts
    .map((p) => {
      if ("literal" in p) return p.literal;
      const value = claimText(claims, p.claim);
      if (value === undefined || value === "") {
        throw new WarrenError(ErrorCode.PermissionDenied, `the ID token has no "${p.claim}" claim, which names the owner (owner: "${template.text}")`);
      }
      return value;
    })
    .join("")
    .toLowerCase();
}

export function globMatches(glob: string, value: string): boolean {
  const re = new RegExp(`^${glob.split("*").map(escapeRegExp).join(".*")}$`, "s");
  return re.test(value);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Rejects with permission_denied, naming the first claim that does not match its requirement. */
export function checkRequirements(requirements: readonly ClaimRequirement[], claims: Record<string, unknown>): void {
  for (const r of requirements) {
    const value = claimText(claims, r.claim);
    if (value === undefined || !r.globs.some((g) => globMatches(g, value))) {
      const shown = value === undefined ? "missing" : `"${value.slice(0, 100)}"`;
      throw new WarrenError(
        ErrorCode.PermissionDenied,
        `the ID token's claim ${r.claim} is ${shown}, which does not match ${r.globs.map((g) => `"${g}"`).join(" or ")} (WARREN_CI_ISSUERS require)`,
      );
    }
  }
}
