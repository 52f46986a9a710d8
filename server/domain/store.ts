import type { LoginCodeRecord, PinnedHostKey, SshKeyRecord, TokenRecord, UserRecord, WorkspaceRecord, WorkspaceSshIdentity } from "./records.js";

/**
 * Durable state of the control module. Two implementations: in memory (one server, the
 * embedded default) and Redis (cluster mode), chosen at the composition root.
 * Every method is asynchronous, resolves when the change is stored, and rejects with a
 * WarrenError (unavailable when the backing store cannot be reached). Records are plain
 * JSON-serializable data; callers never mutate a record they passed in or got back.
 */
export interface WorkspaceStore {
  /** Stores a new workspace; rejects with already_exists when the name is taken. */
  createWorkspace(workspace: WorkspaceRecord): Promise<void>;
  getWorkspace(name: string): Promise<WorkspaceRecord | undefined>;
  /** Every workspace, sorted by name. */
  listWorkspaces(): Promise<WorkspaceRecord[]>;
  /** Replaces an existing workspace; rejects with not_found when it is gone. */
  updateWorkspace(workspace: WorkspaceRecord): Promise<void>;
  /**
   * Compare-and-set: replaces the workspace only if its stored `revision` (0 when absent)
   * equals `expectedRevision`, storing `workspace` as given (the caller bumps `revision`).
   * Resolves true when stored, false when the record changed meanwhile or is gone; the
   * caller re-reads and retries. Atomic across servers in the Redis store (WATCH/MULTI or Lua).
   */
  updateWorkspaceIf(workspace: WorkspaceRecord, expectedRevision: number): Promise<boolean>;
  /** Removes the workspace; resolves false when there was none. */
  deleteWorkspace(name: string): Promise<boolean>;
}

export interface TokenStore {
  putToken(token: TokenRecord): Promise<void>;
  /** The token by id, whether or not it has expired. */
  getToken(id: string): Promise<TokenRecord | undefined>;
  deleteToken(id: string): Promise<void>;
  /** Every stored access token of a user (expired ones too), in no particular order. */
  listTokens(subject: string): Promise<TokenRecord[]>;
}

export interface UserStore {
  /** Stores a new user; rejects with already_exists when the name is taken. */
  createUser(user: UserRecord): Promise<void>;
  getUser(name: string): Promise<UserRecord | undefined>;
  /** Every user, sorted by name. */
  listUsers(): Promise<UserRecord[]>;
}

export interface LoginCodeStore {
  /** Stores a one-time login code until `expiresAt` (the Redis store sets a TTL). */
  putLoginCode(code: LoginCodeRecord): Promise<void>;
  /**
   * Removes and returns the code in one atomic step (Redis: GETDEL), so that a code is
   * redeemed at most once even when two servers race for it. Undefined when there is none;
   * an expired code may still be returned: the caller checks `expiresAt`.
   */
  takeLoginCode(id: string): Promise<LoginCodeRecord | undefined>;
}

/** Everything the control module stores. */
export type ControlStore = WorkspaceStore & TokenStore & UserStore & LoginCodeStore & SshKeyStore & WorkspaceSshStore;

/**
 * Public keys users registered for SSH logins. A registration is one user's: several users may
 * register the same key (registering proves nothing about holding it, so one registration must
 * never block or shadow another's).
 */
export interface SshKeyStore {
  /** Stores the user's registration; rejects with already_exists when this user already registered the fingerprint. */
  addSshKey(key: SshKeyRecord): Promise<void>;
  /** Every user's registration of the fingerprint, oldest first (empty when nobody registered it). */
  findSshKeys(fingerprint: string): Promise<SshKeyRecord[]>;
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

/** Reading one workspace by name, for the front doors; may serve from a short-lived cache. */
export interface WorkspaceLookup {
  /** The workspace record, or undefined; may serve from a short-lived cache. */
  getWorkspace(name: string): Promise<WorkspaceRecord | undefined>;
}
