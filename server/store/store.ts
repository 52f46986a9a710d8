import type { PinnedHostKey, SshKeyRecord, TokenRecord, WorkspaceRecord, WorkspaceSshIdentity } from "./records.js";

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

/** Public keys users registered for SSH logins. */
export interface SshKeyStore {
  /** Stores the key; rejects with already_exists when its fingerprint is registered to anyone. */
  addSshKey(key: SshKeyRecord): Promise<void>;
  getSshKey(fingerprint: string): Promise<SshKeyRecord | undefined>;
  /** The user's keys, oldest first. */
  listSshKeys(user: string): Promise<SshKeyRecord[]>;
  /** Removes the user's key; resolves false when the user has no such key. */
  removeSshKey(user: string, fingerprint: string): Promise<boolean>;
}

/**
 * What the SSH front door remembers per workspace. The "if absent" writes are atomic, so two
 * servers racing on a first use agree on one value: the one the call resolves with.
 */
export interface WorkspaceSshStore {
  getSshIdentity(workspace: string): Promise<WorkspaceSshIdentity | undefined>;
  /** Stores the identity unless one of the same workspace incarnation exists; resolves with the stored one. */
  putSshIdentityIfAbsent(workspace: string, identity: WorkspaceSshIdentity): Promise<WorkspaceSshIdentity>;
  getPinnedHostKey(workspace: string): Promise<PinnedHostKey | undefined>;
  /** Pins the host key unless one of the same workspace incarnation is pinned; resolves with the pinned one. */
  pinHostKeyIfAbsent(workspace: string, key: PinnedHostKey): Promise<PinnedHostKey>;
  /** Forgets the pinned host key (the workspace's sshd got a new one on purpose); false when none was pinned. */
  forgetHostKey(workspace: string): Promise<boolean>;
}
