import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { TokenRecord, WorkspaceRecord } from "./records.js";
import type { TokenStore, WorkspaceStore } from "./store.js";

/** The embedded store: everything in this process's memory, gone when it exits. */
export class MemoryStore implements WorkspaceStore, TokenStore {
  readonly #workspaces = new Map<string, WorkspaceRecord>();
  readonly #tokens = new Map<string, TokenRecord>();

  async createWorkspace(workspace: WorkspaceRecord): Promise<void> {
    if (this.#workspaces.has(workspace.name)) {
      throw new WarrenError(ErrorCode.AlreadyExists, `workspace "${workspace.name}" already exists`);
    }
    this.#workspaces.set(workspace.name, workspace);
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
    this.#workspaces.set(workspace.name, workspace);
  }

  async deleteWorkspace(name: string): Promise<boolean> {
    return this.#workspaces.delete(name);
  }

  async putToken(token: TokenRecord): Promise<void> {
    this.#tokens.set(token.id, token);
  }

  async getToken(id: string): Promise<TokenRecord | undefined> {
    return this.#tokens.get(id);
  }

  async deleteToken(id: string): Promise<void> {
    this.#tokens.delete(id);
  }
}
