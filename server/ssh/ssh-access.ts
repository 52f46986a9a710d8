import type { Principal } from "../domain/principal.js";
import { isValidWorkspaceName } from "../domain/workspace-name.js";
import type { SshKeyRecord, WorkspaceRecord } from "../domain/records.js";
import { ADMIN_KEY_OWNER } from "../domain/ssh-key-owner.js";
import type { PublicKey } from "../domain/ssh-public-key.js";

export type SshCredential =
  | { readonly kind: "password"; readonly password: string }
  /** A key the client proved it holds: the caller verified its signature first. */
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
   * Whether a public key offered without a signature is worth one (SSH's PK_OK). Answered from
   * the key alone, never from the workspace, so that a key query tells nobody which workspaces
   * the key reaches: true when any user registered it. Rejects only when the store fails.
   */
  acceptsKeyQuery(key: PublicKey): Promise<boolean>;
  /**
   * Resolves allowed or denied; never rejects for a wrong credential. Rejects only when the
   * backing store fails (WarrenError unavailable). `user` names the person when the
   * credential identified one (for logs).
   */
  authorize(workspace: string, credential: SshCredential): Promise<SshAccessDecision>;
}

export interface CredentialSshAccessOptions {
  /** Checks an access token (or the admin token) given as the password. */
  readonly authenticateCaller: (token: string) => Promise<Principal>;
  readonly getWorkspace: (name: string) => Promise<WorkspaceRecord | undefined>;
  /** Every user's registration of a key fingerprint. */
  readonly findSshKeys: (fingerprint: string) => Promise<SshKeyRecord[]>;
  /** The principal a registration's owner logs in as; undefined when the user is gone. */
  readonly principalOfKeyOwner: (record: SshKeyRecord) => Promise<Principal | undefined>;
  /** The shared rule of who reaches which workspace. */
  readonly mayReach: (principal: Principal, workspace: WorkspaceRecord) => boolean;
}

/**
 * Tokens as passwords, registered public keys, and the shared reach rule.
 *
 * A key registration proves nothing about holding the key (anyone can paste anyone's public
 * key), so registrations are scoped: a key logs in to workspace W only through a registration
 * by someone who reaches W (W's owner, or the admin's keys), and as that registrant. Whoever
 * registers somebody else's key blocks nobody and gains nothing: at most, the key's holder can
 * then enter the registrant's own workspaces, as the registrant.
 */
export class CredentialSshAccess implements SshAccess {
  readonly #options: CredentialSshAccessOptions;

  constructor(options: CredentialSshAccessOptions) {
    this.#options = options;
  }

  async acceptsKeyQuery(key: PublicKey): Promise<boolean> {
    return (await this.#registrationsOf(key)).length > 0;
  }

  async authorize(workspaceName: string, credential: SshCredential): Promise<SshAccessDecision> {
    if (credential.kind === "password") {
      let principal: Principal;
      try {
        principal = await this.#options.authenticateCaller(credential.password);
      } catch {
        return { allowed: false, reason: "bad_token", user: undefined };
      }
      const user = principal.kind === "user" ? principal.user : undefined;
      const workspace = await this.#workspace(workspaceName);
      if (!workspace) return { allowed: false, reason: "no_such_workspace", user };
      if (!this.#options.mayReach(principal, workspace)) return { allowed: false, reason: "not_allowed", user };
      return { allowed: true, workspace, principal, user };
    }

    const registrations = await this.#registrationsOf(credential.key);
    if (registrations.length === 0) return { allowed: false, reason: "unknown_key", user: undefined };
    const workspace = await this.#workspace(workspaceName);
    if (!workspace) return { allowed: false, reason: "no_such_workspace", user: undefined };
    // The owner's own registration first (the session is theirs), then the admin's keys.
    const ordered = [...registrations].sort((a, b) => rank(a, workspace) - rank(b, workspace));
    for (const record of ordered) {
      const principal = await this.#options.principalOfKeyOwner(record);
      if (principal && this.#options.mayReach(principal, workspace)) return { allowed: true, workspace, principal, user: record.user };
    }
    return { allowed: false, reason: "not_allowed", user: undefined };
  }

  async #registrationsOf(key: PublicKey): Promise<SshKeyRecord[]> {
    // The full key must match, not only its fingerprint.
    return (await this.#options.findSshKeys(key.fingerprint)).filter((r) => r.publicKey === key.line);
  }

  #workspace(name: string): Promise<WorkspaceRecord | undefined> {
    return isValidWorkspaceName(name) ? this.#options.getWorkspace(name) : Promise.resolve(undefined);
  }
}

/** 0: the workspace owner's registration, 1: the admin's, 2: anyone else's. */
function rank(record: SshKeyRecord, workspace: WorkspaceRecord): number {
  if (workspace.owner !== undefined && record.user === workspace.owner) return 0;
  return record.user === ADMIN_KEY_OWNER ? 1 : 2;
}
