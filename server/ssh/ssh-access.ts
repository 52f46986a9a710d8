import type { Principal } from "../auth/authenticator.js";
import { isValidWorkspaceName } from "../http/workspace-host.js";
import type { SshKeyRecord, WorkspaceRecord } from "../store/records.js";
import type { PublicKey } from "./ssh-public-key.js";

export type SshCredential =
  | { readonly kind: "password"; readonly password: string }
  /** A key the client proved it holds (or offers, before signing). */
  | { readonly kind: "publickey"; readonly key: PublicKey };

/** Why a login is refused; only logs see it, the client is told "Permission denied" either way. */
export type SshDenial = "bad_token" | "unknown_key" | "no_such_workspace" | "not_allowed";

export type SshAccessDecision =
  | { readonly allowed: true; readonly workspace: WorkspaceRecord; readonly principal: Principal; readonly user: string | undefined }
  | { readonly allowed: false; readonly reason: SshDenial; readonly user: string | undefined };

/**
 * Who may open an SSH session to which workspace. The SSH user name is the workspace name.
 * A workspace the caller may not reach is refused exactly like one that does not exist.
 */
export interface SshAccess {
  /**
   * Resolves allowed or denied; never rejects for a wrong credential. Rejects only when the
   * backing store fails (WarrenError unavailable). `user` names the person when the
   * credential identified one (for rate limits and logs).
   */
  authorize(workspace: string, credential: SshCredential): Promise<SshAccessDecision>;
}

export interface CredentialSshAccessOptions {
  /** Checks an access token (or the admin token) given as the password. */
  readonly authenticateCaller: (token: string) => Promise<Principal>;
  readonly getWorkspace: (name: string) => Promise<WorkspaceRecord | undefined>;
  readonly getSshKey: (fingerprint: string) => Promise<SshKeyRecord | undefined>;
  /** The principal a registered key's owner logs in as; undefined when the user is gone. */
  readonly principalOfKeyOwner: (user: string) => Promise<Principal | undefined>;
  /** The shared rule of who reaches which workspace. */
  readonly mayReach: (principal: Principal, workspace: WorkspaceRecord) => boolean;
}

/** Tokens as passwords, registered public keys, and the shared reach rule. */
export class CredentialSshAccess implements SshAccess {
  readonly #options: CredentialSshAccessOptions;

  constructor(options: CredentialSshAccessOptions) {
    this.#options = options;
  }

  async authorize(workspaceName: string, credential: SshCredential): Promise<SshAccessDecision> {
    let principal: Principal;
    let user: string | undefined;
    if (credential.kind === "password") {
      try {
        principal = await this.#options.authenticateCaller(credential.password);
      } catch {
        return { allowed: false, reason: "bad_token", user: undefined };
      }
      user = principal.kind === "user" ? principal.user : undefined;
    } else {
      const record = await this.#options.getSshKey(credential.key.fingerprint);
      if (!record || record.publicKey !== credential.key.line) return { allowed: false, reason: "unknown_key", user: undefined };
      user = record.user;
      const owner = await this.#options.principalOfKeyOwner(record.user);
      if (!owner) return { allowed: false, reason: "unknown_key", user };
      principal = owner;
    }
    const workspace = isValidWorkspaceName(workspaceName) ? await this.#options.getWorkspace(workspaceName) : undefined;
    if (!workspace) return { allowed: false, reason: "no_such_workspace", user };
    if (!this.#options.mayReach(principal, workspace)) return { allowed: false, reason: "not_allowed", user };
    return { allowed: true, workspace, principal, user };
  }
}

/**
 * Keys registered to the reserved user name "admin" log in as the admin (there is no admin
 * user record; the admin is whoever holds the admin token); every other key owner is that user.
 */
export const ADMIN_KEY_OWNER = "admin";

export async function provisionalPrincipalOfKeyOwner(user: string): Promise<Principal> {
  return user === ADMIN_KEY_OWNER ? { kind: "admin", tokenId: "ssh-key" } : { kind: "user", user, tokenId: "ssh-key" };
}
