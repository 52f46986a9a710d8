import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { Principal } from "../domain/principal.js";
import type { SshKeyRecord } from "../domain/records.js";
import type { SshKeyStore, UserStore } from "../domain/store.js";
import type { EventBus } from "../events/event-bus.js";
import { ADMIN_KEY_OWNER, sshKeyCredentialId } from "../domain/ssh-key-owner.js";
import { parsePublicKey } from "../domain/ssh-public-key.js";

export interface SshKeyManagerOptions {
  readonly keys: SshKeyStore;
  readonly users: UserStore;
  readonly log: Logger;
  readonly now?: () => number;
  /** Removals are announced cluster-wide: SSH sessions opened with the key close. */
  readonly events?: EventBus;
}

const MAX_TITLE = 200;
const MAX_KEYS_PER_USER = 100;

/**
 * Public keys people log in to the SSH front door with. A user manages their own keys; the
 * admin manages anyone's, and the keys of the reserved owner "admin", which log in as the admin.
 * Registering a key proves nothing about holding it, so a registration is its user's alone:
 * several users may register one key, and a key logs in to a workspace only through its
 * owner's registration (see CredentialSshAccess). Claiming someone's key blocks nobody.
 */
export class SshKeyManager {
  readonly #options: SshKeyManagerOptions;

  constructor(options: SshKeyManagerOptions) {
    this.#options = options;
  }

  async add(principal: Principal, input: { user: string; publicKey: string; title: string }): Promise<SshKeyRecord> {
    const user = await this.#owner(principal, input.user);
    const key = parsePublicKey(input.publicKey);
    const title = (input.title || key.comment).slice(0, MAX_TITLE);
    if ((await this.#options.keys.listSshKeys(user)).length >= MAX_KEYS_PER_USER) {
      throw new WarrenError(ErrorCode.ResourceExhausted, `user "${user}" already has ${MAX_KEYS_PER_USER} SSH keys; remove one first`);
    }
    const record: SshKeyRecord = { fingerprint: key.fingerprint, user, publicKey: key.line, title, createdAt: (this.#options.now ?? Date.now)() };
    await this.#options.keys.addSshKey(record);
    this.#options.log.info({ user, fingerprint: key.fingerprint }, "SSH key added");
    return record;
  }

  async list(principal: Principal, user: string): Promise<SshKeyRecord[]> {
    return this.#options.keys.listSshKeys(await this.#owner(principal, user));
  }

  async remove(principal: Principal, input: { user: string; fingerprint: string }): Promise<void> {
    const user = await this.#owner(principal, input.user);
    if (!input.fingerprint) throw new WarrenError(ErrorCode.InvalidArgument, "fingerprint: required");
    if (!(await this.#options.keys.removeSshKey(user, input.fingerprint))) {
      throw new WarrenError(ErrorCode.NotFound, `user "${user}" has no SSH key ${input.fingerprint.slice(0, 80)}`);
    }
    this.#options.log.info({ user, fingerprint: input.fingerprint }, "SSH key removed");
    // Stored first, announced second: a login racing with the removal is either refused or closed.
    await this.#options.events?.publish({ type: "token-revoked", tokenId: sshKeyCredentialId({ user, fingerprint: input.fingerprint }) });
  }

  /** Whose keys the call is about: the caller's own, or (admin) the named user's. */
  async #owner(principal: Principal, user: string): Promise<string> {
    if (principal.kind === "user") {
      if (user && user !== principal.user) throw new WarrenError(ErrorCode.PermissionDenied, "user: a user manages only their own SSH keys");
      return principal.user;
    }
    if (!user) throw new WarrenError(ErrorCode.InvalidArgument, `user: required with the admin token (or "${ADMIN_KEY_OWNER}" for the admin's own keys)`);
    if (user === ADMIN_KEY_OWNER) return user;
    if (!(await this.#options.users.getUser(user))) throw new WarrenError(ErrorCode.NotFound, `user "${user.slice(0, 80)}" not found`);
    return user;
  }
}
