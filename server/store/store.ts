import type { TokenRecord, WorkspaceRecord } from "./records.js";

/**
 * Durable state of the control module. Two implementations: in memory (one server, the
 * embedded default) and Redis (cluster mode), chosen at the composition root.
 * Every method is asynchronous, resolves when the change is stored, and rejects with a
 * WarrenError (unavailable when the backing store cannot be reached).
 */
export interface WorkspaceStore {
  /** Stores a new workspace; rejects with already_exists when the name is taken. */
  createWorkspace(workspace: WorkspaceRecord): Promise<void>;
  getWorkspace(name: string): Promise<WorkspaceRecord | undefined>;
  listWorkspaces(): Promise<WorkspaceRecord[]>;
  /** Replaces an existing workspace; rejects with not_found when it is gone. */
  updateWorkspace(workspace: WorkspaceRecord): Promise<void>;
  /** Removes the workspace; resolves false when there was none. */
  deleteWorkspace(name: string): Promise<boolean>;
}

export interface TokenStore {
  putToken(token: TokenRecord): Promise<void>;
  /** The token by id, whether or not it has expired. */
  getToken(id: string): Promise<TokenRecord | undefined>;
  deleteToken(id: string): Promise<void>;
}
