import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { LoginCodeRecord, TokenRecord, UserRecord, WorkspaceRecord } from "./records.js";
import type { ControlStore } from "./store.js";

/**
 * The embedded store: everything in this process's memory, gone when it exits. Records are
 * frozen copies, so that no caller can change stored state except through the interface.
 */
export class MemoryStore implements ControlStore {
  readonly #workspaces = new Map<string, WorkspaceRecord>();
  readonly #tokens = new Map<string, TokenRecord>();
  readonly #users = new Map<string, UserRecord>();
  readonly #loginCodes = new Map<string, LoginCodeRecord>();
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
    // Expired codes are dropped as new ones arrive, so abandoned logins do not pile up.
    const now = this.#now();
    for (const [id, c] of this.#loginCodes) if (c.expiresAt <= now) this.#loginCodes.delete(id);
    this.#loginCodes.set(code.id, frozen(code));
  }

  async takeLoginCode(id: string): Promise<LoginCodeRecord | undefined> {
    const code = this.#loginCodes.get(id);
    this.#loginCodes.delete(id);
    return code;
  }
}

function frozen<T extends object>(record: T): T {
  return Object.freeze(structuredClone(record));
}
