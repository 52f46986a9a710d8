/**
 * Workspace names. A name is a DNS label (lowercase letters, digits and hyphens, not at either
 * end): it is the second half of the host label `{port}-{workspace}`.
 */
export const WORKSPACE_NAME_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Longest name a new workspace may take: `{port}-{name}` is one DNS label (63 octets at most)
 * and the longest port is 5 digits and a hyphen.
 */
export const MAX_NEW_WORKSPACE_NAME_CHARS = 63 - "65535-".length;

/** A name a workspace may have (ones created before names were capped at 57 included). */
export function isValidWorkspaceName(name: string): boolean {
  return WORKSPACE_NAME_RE.test(name);
}

/** A name a new workspace may take: every `{port}-{name}` of it fits a DNS label. */
export function isValidNewWorkspaceName(name: string): boolean {
  return name.length <= MAX_NEW_WORKSPACE_NAME_CHARS && WORKSPACE_NAME_RE.test(name);
}
