import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { LoginCodeRecord, PinnedHostKey, SshKeyRecord, TokenRecord, UserRecord, WorkspaceRecord, WorkspaceSshIdentity } from "../domain/records.js";
import type { ControlStore } from "../domain/store.js";

/**
 * The embedded store: everything in this process's memory, gone when it exits. Records are
 * frozen copies, so that no caller can change stored state except through the interface.
 */
export class MemoryStore implements ControlStore {
  readonly #workspaces = new Map<string, WorkspaceRecord>();
  readonly #tokens = new Map<string, TokenRecord>();
  readonly #users = new Map<string, UserRecord>();
  readonly #loginCodes = new Map<string, LoginCodeRecord>();
  /** `<user> <fingerprint>` -> the user's registration of the key. */
  readonly #sshKeys = new Map<string, SshKeyRecord>();
  readonly #sshIdentities = new Map<string, WorkspaceSshIdentity>();
  readonly #hostKeys = new Map<string, PinnedHostKey>();
  readonly #now: () => number;

  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
  }

  async createWorkspace(workspace: WorkspaceRecord): Promise<void> {
    if (this.#workspaces.has(workspace.name)) {
      throw new WarrenError(ErrorCode.AlreadyExists, `workspace "${workspace.name}" already exists`);
    }
    this.#workspaces.set(workspace.name, frozen(workspace));
  }

  async getWorkspace(name: string): Promise<WorkspaceRecord | undefined> {
    return this.#workspaces.get(name);
  }

  async listWorkspaces(): Promise<WorkspaceRecord[]> {
    return [...this.#workspaces.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  async updateWorkspace(workspace: WorkspaceRecord): Promise<void> {
    if (!this.#workspaces.has(workspace.name)) {
      throw new WarrenError(ErrorCode.NotFound, `workspace "${workspace.name}" not found`);
    }
    this.#workspaces.set(workspace.name, frozen(workspace));
  }

  async updateWorkspaceIf(workspace: WorkspaceRecord, expectedRevision: number): Promise<boolean> {
    const current = this.#workspaces.get(workspace.name);
    if (!current || (current.revision ?? 0) !== expectedRevision) return false;
    this.#workspaces.set(workspace.name, frozen(workspace));
    return true;
  }

  async deleteWorkspace(name: string): Promise<boolean> {
    return this.#workspaces.delete(name);
  }

  async putToken(token: TokenRecord): Promise<void> {
    this.#tokens.set(token.id, frozen(token));
  }

  async getToken(id: string): Promise<TokenRecord | undefined> {
    return this.#tokens.get(id);
  }

  async listTokens(subject: string): Promise<TokenRecord[]> {
    return [...this.#tokens.values()].filter((t) => t.subject === subject);
  }

  async deleteToken(id: string): Promise<void> {
    this.#tokens.delete(id);
  }

  async createUser(user: UserRecord): Promise<void> {
    if (this.#users.has(user.name)) throw new WarrenError(ErrorCode.AlreadyExists, `user "${user.name}" already exists`);
    this.#users.set(user.name, frozen(user));
  }

  async getUser(name: string): Promise<UserRecord | undefined> {
    return this.#users.get(name);
  }

  async listUsers(): Promise<UserRecord[]> {
    return [...this.#users.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  async putLoginCode(code: LoginCodeRecord): Promise<void> {
    // Expired codes are dropped as new ones arrive, so abandoned logins do not pile up. Codes
    // live for one fixed time, so the Map's insertion order is their expiry order: only the
    // expired ones at its front are visited, never every live code on every insert.
    const now = this.#now();
    for (const [id, c] of this.#loginCodes) {
      if (c.expiresAt > now) break;
      this.#loginCodes.delete(id);
    }
    this.#loginCodes.set(code.id, frozen(code));
  }

  async takeLoginCode(id: string): Promise<LoginCodeRecord | undefined> {
    const code = this.#loginCodes.get(id);
    this.#loginCodes.delete(id);
    return code;
  }

  async addSshKey(key: SshKeyRecord): Promise<void> {
    const id = `${key.user} ${key.fingerprint}`;
    if (this.#sshKeys.has(id)) {
      throw new WarrenError(ErrorCode.AlreadyExists, `user "${key.user}" already registered SSH key ${key.fingerprint}`);
    }
    this.#sshKeys.set(id, key);
  }

  async findSshKeys(fingerprint: string): Promise<SshKeyRecord[]> {
    return [...this.#sshKeys.values()].filter((k) => k.fingerprint === fingerprint).sort((a, b) => a.createdAt - b.createdAt);
  }

  async listSshKeys(user: string): Promise<SshKeyRecord[]> {
    return [...this.#sshKeys.values()].filter((k) => k.user === user).sort((a, b) => a.createdAt - b.createdAt);
  }

  async removeSshKey(user: string, fingerprint: string): Promise<boolean> {
    return this.#sshKeys.delete(`${user} ${fingerprint}`);
  }

  async getSshIdentity(workspace: string): Promise<WorkspaceSshIdentity | undefined> {
    return this.#sshIdentities.get(workspace);
  }

  async putSshIdentityIfAbsent(workspace: string, identity: WorkspaceSshIdentity): Promise<WorkspaceSshIdentity> {
    const existing = this.#sshIdentities.get(workspace);
    if (existing && existing.workspaceCreatedAt === identity.workspaceCreatedAt) return existing;
    this.#sshIdentities.set(workspace, identity);
    return identity;
  }

  async getPinnedHostKey(workspace: string): Promise<PinnedHostKey | undefined> {
    return this.#hostKeys.get(workspace);
  }

  async pinHostKeyIfAbsent(workspace: string, key: PinnedHostKey): Promise<PinnedHostKey> {
    const existing = this.#hostKeys.get(workspace);
    if (existing && existing.workspaceCreatedAt === key.workspaceCreatedAt) return existing;
    this.#hostKeys.set(workspace, key);
    return key;
  }

  async forgetHostKey(workspace: string): Promise<boolean> {
    return this.#hostKeys.delete(workspace);
  }
}

function frozen<T extends object>(record: T): T {
  return Object.freeze(structuredClone(record));
}
