import type { Principal } from "./principal.js";
import type { SshKeyRecord } from "./records.js";

/**
 * Keys registered to the reserved user name "admin" log in as the admin (there is no admin
 * user record; the admin is whoever holds the admin token); every other key owner is that user.
 */
export const ADMIN_KEY_OWNER = "admin";

export async function provisionalPrincipalOfKeyOwner(record: Pick<SshKeyRecord, "user" | "fingerprint">): Promise<Principal> {
  const tokenId = sshKeyCredentialId(record);
  return record.user === ADMIN_KEY_OWNER ? { kind: "admin", tokenId } : { kind: "user", user: record.user, tokenId };
}

const SSH_KEY_CREDENTIAL_PREFIX = "ssh-key:";

/**
 * The credential id of a key login: one user's registration of one key. Sessions opened with
 * it are leased on it, and removing the registration (RemoveSshKey) revokes it, closing them.
 */
export function sshKeyCredentialId(record: Pick<SshKeyRecord, "user" | "fingerprint">): string {
  return `${SSH_KEY_CREDENTIAL_PREFIX}${record.user}:${record.fingerprint}`;
}

/** The registration behind a key login's credential id, or undefined for any other credential. */
export function sshKeyOfCredential(tokenId: string): { user: string; fingerprint: string } | undefined {
  if (!tokenId.startsWith(SSH_KEY_CREDENTIAL_PREFIX)) return undefined;
  const rest = tokenId.slice(SSH_KEY_CREDENTIAL_PREFIX.length);
  // Fingerprints ("SHA256:...") hold a colon; user names never do.
  const colon = rest.indexOf(":");
  return colon > 0 ? { user: rest.slice(0, colon), fingerprint: rest.slice(colon + 1) } : undefined;
}
