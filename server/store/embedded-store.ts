import type { RootDatabase } from "lmdb";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { LoginCodeRecord, PinnedHostKey, SshKeyRecord, TokenRecord, UserRecord, WorkspaceRecord, WorkspaceSshIdentity } from "../domain/records.js";
import { SnapshotKind, type SnapshotEntry, type SnapshotSource } from "./snapshot.js";
import type { ControlStore } from "../domain/store.js";

/** Key prefixes, one per entity; a record is stored as opaque JSON under `<prefix>:<id>`. */
const Prefix = {
  Workspace: "workspace",
  Token: "token",
  User: "user",
  LoginCode: "login-code",
  SshKey: "ssh-key",
  SshIdentity: "ssh-identity",
  HostKey: "ssh-host-key",
} as const;
type Prefix = (typeof Prefix)[keyof typeof Prefix];

/** Entities a backup carries, by prefix (login codes live 30 s: a backup skips them). */
const SNAPSHOT_KINDS: ReadonlyArray<[Prefix, SnapshotKind]> = [
  [Prefix.User, SnapshotKind.User],
  [Prefix.Token, SnapshotKind.Token],
  [Prefix.Workspace, SnapshotKind.Workspace],
  [Prefix.SshKey, SnapshotKind.SshKey],
  [Prefix.SshIdentity, SnapshotKind.SshIdentity],
  [Prefix.HostKey, SnapshotKind.HostKey],
];

/** Meta keys sort before every entity key (they start with '#'). */
export const SCHEMA_KEY = "#schema";

export interface EmbeddedStoreOptions {
  /** The LMDB environment directory (`{data dir}/store`). */
  readonly path: string;
  /** Where the data directory is, for the messages of failed writes. */
  readonly dataDir: string;
  readonly readOnly?: boolean;
  readonly now?: () => number;
}

/**
 * The one-server store: LMDB (memory-mapped B-tree, copy-on-write, crash-safe) in the data
 * directory. Reads are synchronous lookups in the map; writes are batched into transactions
 * that a native thread commits and fsyncs, so a write resolves only once it is on disk and the
 * event loop never waits for the disk. Conditional writes run their check inside the write
 * transaction (`transaction()`), which makes them atomic. Records are stored as JSON text,
 * one key per entity, so fields added to a record later need no migration.
 */
export class EmbeddedStore implements ControlStore, SnapshotSource {
  readonly #db: RootDatabase<string, string>;
  readonly #dataDir: string;
  readonly #path: string;
  readonly #now: () => number;
  #loginCodesPrunedAt = Number.NEGATIVE_INFINITY;

  private constructor(db: RootDatabase<string, string>, options: EmbeddedStoreOptions) {
    this.#db = db;
    this.#dataDir = options.dataDir;
    this.#path = options.path;
    this.#now = options.now ?? Date.now;
  }

  /** Opens (creating it when absent) the store; the caller has checked the file (see data-dir.ts). */
  static async open(options: EmbeddedStoreOptions): Promise<EmbeddedStore> {
    ignoreReportedCommitFailures();
    // Loaded on first use: a server with Redis or started for --help never loads the addon.
    const { open } = await import("lmdb");
    const db = open<string, string>({
      path: options.path,
      encoding: "string",
      readOnly: options.readOnly ?? false,
      // Never a writable memory map: a full disk must fail the write, not crash the process (SIGBUS).
      useWritemap: false,
      noSync: false,
    });
    return new EmbeddedStore(db, options);
  }

  get path(): string {
    return this.#path;
  }

  async close(): Promise<void> {
    await this.#db.close();
  }

  /** The schema version recorded in the store; undefined for a new, empty one. */
  schemaVersion(): number | undefined {
    const v = this.#db.get(SCHEMA_KEY);
    return v === undefined ? undefined : Number(v);
  }

  async setSchemaVersion(version: number): Promise<void> {
    await this.#write(() => this.#db.put(SCHEMA_KEY, String(version)));
  }

  /** Reads every record once; throws on one that is not JSON (a damaged file). */
  verify(): void {
    for (const { key: k, value } of this.#db.getRange({})) {
      if (k === SCHEMA_KEY) continue;
      try {
        JSON.parse(value);
      } catch {
        throw new Error(`record ${String(k)} is not JSON`);
      }
    }
  }

  // --- workspaces

  async createWorkspace(workspace: WorkspaceRecord): Promise<void> {
    const created = await this.#transaction(() => this.#putIfAbsent(Prefix.Workspace, workspace.name, workspace));
    if (!created) throw new WarrenError(ErrorCode.AlreadyExists, `workspace "${workspace.name}" already exists`);
  }

  async getWorkspace(name: string): Promise<WorkspaceRecord | undefined> {
    return this.#get(Prefix.Workspace, name);
  }

  async listWorkspaces(): Promise<WorkspaceRecord[]> {
    return this.#list<WorkspaceRecord>(Prefix.Workspace).sort((a, b) => a.name.localeCompare(b.name));
  }

  async updateWorkspace(workspace: WorkspaceRecord): Promise<void> {
    const updated = await this.#transaction(() => {
      if (this.#db.get(key(Prefix.Workspace, workspace.name)) === undefined) return false;
      this.#db.put(key(Prefix.Workspace, workspace.name), JSON.stringify(workspace));
      return true;
    });
    if (!updated) throw new WarrenError(ErrorCode.NotFound, `workspace "${workspace.name}" not found`);
  }

  async updateWorkspaceIf(workspace: WorkspaceRecord, expectedRevision: number): Promise<boolean> {
    return this.#transaction(() => {
      const current = this.#getNow<WorkspaceRecord>(Prefix.Workspace, workspace.name);
      if (!current || (current.revision ?? 0) !== expectedRevision) return false;
      this.#db.put(key(Prefix.Workspace, workspace.name), JSON.stringify(workspace));
      return true;
    });
  }

  async deleteWorkspace(name: string): Promise<boolean> {
    return this.#transaction(() => this.#removeNow(Prefix.Workspace, name));
  }

  // --- tokens

  async putToken(token: TokenRecord): Promise<void> {
    await this.#write(() => this.#db.put(key(Prefix.Token, token.id), JSON.stringify(token)));
  }

  async getToken(id: string): Promise<TokenRecord | undefined> {
    return this.#get(Prefix.Token, id);
  }

  async listTokens(subject: string): Promise<TokenRecord[]> {
    // A scan, like listSshKeys: the dashboard's token list, on the API path only.
    return this.#list<TokenRecord>(Prefix.Token).filter((t) => t.subject === subject);
  }

  async deleteToken(id: string): Promise<void> {
    await this.#write(() => this.#db.remove(key(Prefix.Token, id)));
  }

  // --- users

  async createUser(user: UserRecord): Promise<void> {
    const created = await this.#transaction(() => this.#putIfAbsent(Prefix.User, user.name, user));
    if (!created) throw new WarrenError(ErrorCode.AlreadyExists, `user "${user.name}" already exists`);
  }

  async getUser(name: string): Promise<UserRecord | undefined> {
    return this.#get(Prefix.User, name);
  }

  async listUsers(): Promise<UserRecord[]> {
    return this.#list<UserRecord>(Prefix.User).sort((a, b) => a.name.localeCompare(b.name));
  }

  // --- login codes

  async putLoginCode(code: LoginCodeRecord): Promise<void> {
    // Expired codes are dropped as new ones arrive, so abandoned logins do not pile up; at
    // most once a second, so that a flood of logins costs one scan a second rather than one
    // per insert (quadratic). Expired codes are refused when taken in any case.
    const now = this.#now();
    const prune = now - this.#loginCodesPrunedAt >= 1000;
    if (prune) this.#loginCodesPrunedAt = now;
    await this.#transaction(() => {
      if (prune) {
        for (const { key: k, value } of this.#db.getRange(range(Prefix.LoginCode))) {
          if ((JSON.parse(value) as LoginCodeRecord).expiresAt <= now) this.#db.remove(k);
        }
      }
      this.#db.put(key(Prefix.LoginCode, code.id), JSON.stringify(code));
    });
  }

  async takeLoginCode(id: string): Promise<LoginCodeRecord | undefined> {
    return this.#transaction(() => {
      const code = this.#getNow<LoginCodeRecord>(Prefix.LoginCode, id);
      if (code) this.#db.remove(key(Prefix.LoginCode, id));
      return code;
    });
  }

  // --- SSH keys

  async addSshKey(sshKey: SshKeyRecord): Promise<void> {
    const added = await this.#transaction(() => {
      // A record of the single-owner layout (one registration per key) counts as this user's.
      if (this.#getNow<SshKeyRecord>(Prefix.SshKey, sshKey.fingerprint)?.user === sshKey.user) return false;
      return this.#putIfAbsent(Prefix.SshKey, registrationId(sshKey.fingerprint, sshKey.user), sshKey);
    });
    if (!added) throw new WarrenError(ErrorCode.AlreadyExists, `user "${sshKey.user}" already registered SSH key ${sshKey.fingerprint}`);
  }

  async findSshKeys(fingerprint: string): Promise<SshKeyRecord[]> {
    const out: SshKeyRecord[] = [];
    const first = key(Prefix.SshKey, registrationId(fingerprint, ""));
    // Every registration of the key sorts together: `ssh-key:<fingerprint> <user>`.
    for (const { value } of this.#db.getRange({ start: first, end: `${first.slice(0, -1)}!` })) out.push(JSON.parse(value) as SshKeyRecord);
    const single = this.#get<SshKeyRecord>(Prefix.SshKey, fingerprint);
    if (single) out.push(single);
    return out.sort((a, b) => a.createdAt - b.createdAt);
  }

  async listSshKeys(user: string): Promise<SshKeyRecord[]> {
    // A scan: a team registers tens to hundreds of keys, and this runs on the API path only.
    return this.#list<SshKeyRecord>(Prefix.SshKey)
      .filter((k) => k.user === user)
      .sort((a, b) => a.createdAt - b.createdAt);
  }

  async removeSshKey(user: string, fingerprint: string): Promise<boolean> {
    return this.#transaction(() => {
      if (this.#removeNow(Prefix.SshKey, registrationId(fingerprint, user))) return true;
      const single = this.#getNow<SshKeyRecord>(Prefix.SshKey, fingerprint);
      if (!single || single.user !== user) return false;
      return this.#removeNow(Prefix.SshKey, fingerprint);
    });
  }

  // --- per-workspace SSH state

  async getSshIdentity(workspace: string): Promise<WorkspaceSshIdentity | undefined> {
    return this.#get(Prefix.SshIdentity, workspace);
  }

  async putSshIdentityIfAbsent(workspace: string, identity: WorkspaceSshIdentity): Promise<WorkspaceSshIdentity> {
    return this.#transaction(() => this.#putIfSameIncarnationAbsent(Prefix.SshIdentity, workspace, identity));
  }

  async getPinnedHostKey(workspace: string): Promise<PinnedHostKey | undefined> {
    return this.#get(Prefix.HostKey, workspace);
  }

  async pinHostKeyIfAbsent(workspace: string, hostKey: PinnedHostKey): Promise<PinnedHostKey> {
    return this.#transaction(() => this.#putIfSameIncarnationAbsent(Prefix.HostKey, workspace, hostKey));
  }

  async forgetHostKey(workspace: string): Promise<boolean> {
    return this.#transaction(() => this.#removeNow(Prefix.HostKey, workspace));
  }

  // --- backup and restore

  /** Every record, read in one read transaction: a consistent snapshot even while the server writes. */
  async *snapshot(): AsyncIterable<SnapshotEntry> {
    const entries: SnapshotEntry[] = [];
    const transaction = this.#db.useReadTransaction();
    try {
      for (const [prefix, kind] of SNAPSHOT_KINDS) {
        for (const { key: k, value } of this.#db.getRange({ ...range(prefix), transaction })) {
          entries.push({ kind, id: k.slice(prefix.length + 1), record: JSON.parse(value) as unknown });
        }
      }
    } finally {
      transaction.done();
    }
    yield* entries;
  }

  /** True when the store holds no record (the schema version aside). */
  async isEmpty(): Promise<boolean> {
    for (const { key: k } of this.#db.getRange({ start: "", limit: 2 })) if (k !== SCHEMA_KEY) return false;
    return true;
  }

  /** Removes every record, keeping the schema version. */
  async clear(): Promise<void> {
    await this.#transaction(() => {
      for (const { key: k } of this.#db.getRange({})) if (k !== SCHEMA_KEY) this.#db.remove(k);
    });
  }

  /** Stores one record of a backup as it is (restore runs before any server uses the store). */
  async restore(entry: SnapshotEntry): Promise<void> {
    const prefix = SNAPSHOT_KINDS.find(([, kind]) => kind === entry.kind)?.[0];
    if (!prefix) throw new WarrenError(ErrorCode.InvalidArgument, `unknown record kind "${entry.kind}"`);
    await this.#write(() => this.#db.put(key(prefix, entry.id), JSON.stringify(entry.record)));
  }

  // --- helpers

  #get<T>(prefix: Prefix, id: string): T | undefined {
    const json = this.#db.get(key(prefix, id));
    return json === undefined ? undefined : (JSON.parse(json) as T);
  }

  /** The same, inside a write transaction (reads see its own writes). */
  #getNow<T>(prefix: Prefix, id: string): T | undefined {
    return this.#get<T>(prefix, id);
  }

  #list<T>(prefix: Prefix): T[] {
    const out: T[] = [];
    for (const { value } of this.#db.getRange(range(prefix))) out.push(JSON.parse(value) as T);
    return out;
  }

  #putIfAbsent(prefix: Prefix, id: string, record: object): boolean {
    if (this.#db.get(key(prefix, id)) !== undefined) return false;
    this.#db.put(key(prefix, id), JSON.stringify(record));
    return true;
  }

  #removeNow(prefix: Prefix, id: string): boolean {
    if (this.#db.get(key(prefix, id)) === undefined) return false;
    this.#db.remove(key(prefix, id));
    return true;
  }

  #putIfSameIncarnationAbsent<T extends { workspaceCreatedAt: number }>(prefix: Prefix, workspace: string, value: T): T {
    const existing = this.#getNow<T>(prefix, workspace);
    if (existing && existing.workspaceCreatedAt === value.workspaceCreatedAt) return existing;
    this.#db.put(key(prefix, workspace), JSON.stringify(value));
    return value;
  }

  /** A read-check-write step, atomic: it runs inside the write transaction, committed (fsynced) before it resolves. */
  async #transaction<T>(action: () => T): Promise<T> {
    return this.#write(() => this.#db.transaction(action));
  }

  /** Any write: a failed commit (disk full, I/O error) becomes unavailable, naming the data directory. */
  async #write<T>(write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (err) {
      if (err instanceof WarrenError) throw err;
      throw new WarrenError(ErrorCode.Unavailable, `cannot write to the data directory ${this.#dataDir}: ${await commitErrorOf(err)}`, { cause: err });
    }
  }
}

let guarded = false;
/**
 * lmdb-js rejects internal promises of a failed commit (disk full) that nobody can handle,
 * after it rejected the writes concerned, which #write() turns into unavailable for their
 * callers. Those are not crashes to die of; every other unhandled rejection still is.
 */
function ignoreReportedCommitFailures(): void {
  if (guarded) return;
  guarded = true;
  process.on("unhandledRejection", (reason) => {
    if (reason instanceof Error && "commitError" in reason) return;
    throw reason;
  });
}

/**
 * One user's registration of an SSH key: several users may register the same key. A space
 * sorts before every character of a user name, and appears in no fingerprint.
 */
function registrationId(fingerprint: string, user: string): string {
  return `${fingerprint} ${user}`;
}

function key(prefix: Prefix, id: string): string {
  return `${prefix}:${id}`;
}

/** Keys `<prefix>:*` (';' sorts right after ':'). */
function range(prefix: Prefix): { start: string; end: string } {
  return { start: `${prefix}:`, end: `${prefix};` };
}

/**
 * lmdb-js rejects a failed commit with a generic error whose `commitError` promise holds the
 * cause (e.g. "No space left on device"); that promise must be handled, or the process dies
 * of an unhandled rejection.
 */
async function commitErrorOf(err: unknown): Promise<string> {
  const commitError = (err as { commitError?: Promise<unknown> }).commitError;
  if (commitError && typeof commitError.then === "function") {
    try {
      await commitError;
    } catch (cause) {
      // "No space left on device: Attempting to write page at position ...": the first part is for people.
      return String((cause as Error).message ?? cause).split(": Attempting")[0]!;
    }
  }
  return (err as Error).message ?? String(err);
}
