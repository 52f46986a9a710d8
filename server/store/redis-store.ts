import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { TokenKind } from "../domain/tokens.js";
import type { RedisConnection } from "../cluster/redis-connection.js";
import type { LoginCodeRecord, PinnedHostKey, SshKeyRecord, TokenRecord, UserRecord, WorkspaceRecord, WorkspaceSshIdentity } from "../domain/records.js";
import { SnapshotKind, type SnapshotEntry, type SnapshotSource } from "./snapshot.js";
import type { ControlStore } from "../domain/store.js";

/** Record key parts per kind a backup carries (login codes expire in seconds: left out). */
const SNAPSHOT_KEYS: ReadonlyArray<[SnapshotKind, string]> = [
  [SnapshotKind.User, "user"],
  [SnapshotKind.Token, "token"],
  [SnapshotKind.Workspace, "workspace"],
  [SnapshotKind.SshKey, "ssh-key"],
  [SnapshotKind.SshIdentity, "ssh-identity"],
  [SnapshotKind.HostKey, "ssh-host-key"],
];

/**
 * Every record under the given key prefixes, read by one script: Redis runs it alone, so the
 * result is one point in time. Returns [key, value, key, value, ...]. KEYS is O(keyspace),
 * fine for a backup; on Redis Cluster every key of ours is in one slot (the hash tag).
 */
const SNAPSHOT = `
local out = {}
for _, prefix in ipairs(ARGV) do
  for _, k in ipairs(redis.call('KEYS', prefix .. '*')) do
    out[#out + 1] = k
    out[#out + 1] = redis.call('GET', k)
  end
end
return out`;

/** Deletes every record and index under the given prefixes; returns how many keys. */
const CLEAR = `
local n = 0
for _, pattern in ipairs(ARGV) do
  for _, k in ipairs(redis.call('KEYS', pattern)) do
    redis.call('DEL', k)
    n = n + 1
  end
end
return n`;

/** Compare-and-set on the record's revision (absent counts as 0). */
const UPDATE_IF_REVISION = `
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local revision = cjson.decode(current)['revision']
if revision == nil or revision == cjson.null then revision = 0 end
if revision ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1`;

/** Stores ARGV[1] unless a record of the same workspace incarnation (ARGV[2]) is there; returns the stored one. */
const PUT_IF_SAME_INCARNATION_ABSENT = `
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current)['workspaceCreatedAt'] == tonumber(ARGV[2]) then return current end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]`;

/** A key claims its fingerprint for one user: SET NX, then the user's index. */
/**
 * Adds one user's registration of a key (KEYS: the registration, the user's set of
 * fingerprints, the single-owner record of earlier versions, the key's set of users; ARGV:
 * user, record, fingerprint). 0 when that user already registered it.
 */
const ADD_SSH_KEY = `
local legacy = redis.call('GET', KEYS[3])
if legacy and cjson.decode(legacy)['user'] == ARGV[1] then return 0 end
if not redis.call('SET', KEYS[1], ARGV[2], 'NX') then return 0 end
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[4], ARGV[1])
return 1`;

/** Removes one user's registration of a key (same KEYS; ARGV: user, fingerprint); 0 when there was none. */
const REMOVE_SSH_KEY = `
local removed = redis.call('DEL', KEYS[1])
local legacy = redis.call('GET', KEYS[3])
if legacy and cjson.decode(legacy)['user'] == ARGV[1] then
  redis.call('DEL', KEYS[3])
  removed = 1
end
if removed == 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('SREM', KEYS[4], ARGV[1])
return 1`;

/**
 * The cluster store: every server sees the same state. Keys (under the cluster prefix P,
 * which carries a hash tag on Redis Cluster so that scripts and transactions see one slot):
 *
 *   P:workspace:<name>    JSON WorkspaceRecord (variables sealed, never plaintext)
 *   P:workspaces          set of workspace names (for listing without SCAN)
 *   P:token:<id>          JSON TokenRecord (the secret's hash only, never the token)
 *   P:user:<name>         JSON UserRecord; P:users, the set of names
 *   P:login-code:<id>     JSON LoginCodeRecord (hash only), expiring with the code
 *   P:ssh-key:<sha256> <user> JSON SshKeyRecord: one user's registration (several users may
 *                         register one key); P:ssh-key-users:<sha256>, the set of its users;
 *                         P:ssh-keys:<user>, the user's fingerprints. P:ssh-key:<sha256>, one
 *                         JSON SshKeyRecord, is what earlier versions wrote: still read and removed
 *   P:ssh-identity:<name> JSON WorkspaceSshIdentity; P:ssh-host-key:<name>, JSON PinnedHostKey
 *
 * Every method rejects with unavailable, without waiting, while Redis is unreachable.
 */
export class RedisStore implements ControlStore, SnapshotSource {
  readonly #redis: RedisConnection;

  constructor(options: { redis: RedisConnection }) {
    this.#redis = options.redis;
  }

  #workspaceKey(name: string): string {
    return this.#redis.key("workspace", name);
  }

  #tokenKey(id: string): string {
    return this.#redis.key("token", id);
  }

  async createWorkspace(workspace: WorkspaceRecord): Promise<void> {
    const results = await this.#redis.run("createWorkspace", (c) =>
      c.multi().set(this.#workspaceKey(workspace.name), JSON.stringify(workspace), "NX").sadd(this.#redis.key("workspaces"), workspace.name).exec(),
    );
    const [set] = repliesOf(results);
    if (set === null) throw new WarrenError(ErrorCode.AlreadyExists, `workspace "${workspace.name}" already exists`);
  }

  async getWorkspace(name: string): Promise<WorkspaceRecord | undefined> {
    const json = await this.#redis.run("getWorkspace", (c) => c.get(this.#workspaceKey(name)));
    return json === null ? undefined : (JSON.parse(json) as WorkspaceRecord);
  }

  async listWorkspaces(): Promise<WorkspaceRecord[]> {
    const names = await this.#redis.run("listWorkspaces", (c) => c.smembers(this.#redis.key("workspaces")));
    if (names.length === 0) return [];
    const values = await this.#redis.run("listWorkspaces", (c) => c.mget(names.map((n) => this.#workspaceKey(n))), 5000);
    const records: WorkspaceRecord[] = [];
    for (const json of values) if (json !== null) records.push(JSON.parse(json) as WorkspaceRecord);
    return records.sort((a, b) => a.name.localeCompare(b.name));
  }

  async updateWorkspace(workspace: WorkspaceRecord): Promise<void> {
    const ok = await this.#redis.run("updateWorkspace", (c) => c.set(this.#workspaceKey(workspace.name), JSON.stringify(workspace), "XX"));
    if (ok === null) throw new WarrenError(ErrorCode.NotFound, `workspace "${workspace.name}" not found`);
  }

  async deleteWorkspace(name: string): Promise<boolean> {
    const results = await this.#redis.run("deleteWorkspace", (c) =>
      c.multi().del(this.#workspaceKey(name)).srem(this.#redis.key("workspaces"), name).exec(),
    );
    const [deleted] = repliesOf(results);
    return deleted === 1;
  }

  async updateWorkspaceIf(workspace: WorkspaceRecord, expectedRevision: number): Promise<boolean> {
    const stored = await this.#redis.run("updateWorkspaceIf", (c) =>
      c.eval(UPDATE_IF_REVISION, 1, this.#workspaceKey(workspace.name), String(expectedRevision), JSON.stringify(workspace)),
    );
    return stored === 1;
  }

  async putToken(token: TokenRecord): Promise<void> {
    if (!indexedByUser(token)) {
      await this.#redis.run("putToken", (c) => c.set(this.#tokenKey(token.id), JSON.stringify(token)));
      return;
    }
    // Access and enrollment tokens are indexed by user (P:tokens:<user>), for listing.
    const results = await this.#redis.run("putToken", (c) =>
      c.multi().set(this.#tokenKey(token.id), JSON.stringify(token)).sadd(this.#redis.key("tokens", token.subject), token.id).exec(),
    );
    repliesOf(results);
  }

  async listTokens(subject: string): Promise<TokenRecord[]> {
    const tokens = await this.#members<TokenRecord>("listTokens", this.#redis.key("tokens", subject), (id) => this.#tokenKey(id));
    return tokens.filter((t) => t.subject === subject);
  }

  async getToken(id: string): Promise<TokenRecord | undefined> {
    const json = await this.#redis.run("getToken", (c) => c.get(this.#tokenKey(id)));
    return json === null ? undefined : (JSON.parse(json) as TokenRecord);
  }

  async deleteToken(id: string): Promise<void> {
    const token = await this.getToken(id);
    if (!token || !indexedByUser(token)) {
      await this.#redis.run("deleteToken", (c) => c.del(this.#tokenKey(id)));
      return;
    }
    repliesOf(await this.#redis.run("deleteToken", (c) => c.multi().del(this.#tokenKey(id)).srem(this.#redis.key("tokens", token.subject), id).exec()));
  }

  async createUser(user: UserRecord): Promise<void> {
    const results = await this.#redis.run("createUser", (c) =>
      c.multi().set(this.#redis.key("user", user.name), JSON.stringify(user), "NX").sadd(this.#redis.key("users"), user.name).exec(),
    );
    const [set] = repliesOf(results);
    if (set === null) throw new WarrenError(ErrorCode.AlreadyExists, `user "${user.name}" already exists`);
  }

  async getUser(name: string): Promise<UserRecord | undefined> {
    return parsed(await this.#redis.run("getUser", (c) => c.get(this.#redis.key("user", name))));
  }

  async listUsers(): Promise<UserRecord[]> {
    const users = await this.#members<UserRecord>("listUsers", this.#redis.key("users"), (name) => this.#redis.key("user", name));
    return users.sort((a, b) => a.name.localeCompare(b.name));
  }

  async putLoginCode(code: LoginCodeRecord): Promise<void> {
    // Redis drops it when it expires: abandoned logins leave nothing behind.
    const ttlMs = Math.max(1, code.expiresAt - Date.now());
    await this.#redis.run("putLoginCode", (c) => c.set(this.#redis.key("login-code", code.id), JSON.stringify(code), "PX", ttlMs));
  }

  async takeLoginCode(id: string): Promise<LoginCodeRecord | undefined> {
    // GETDEL: of two servers racing for one code, one gets it.
    return parsed(await this.#redis.run("takeLoginCode", (c) => c.getdel(this.#redis.key("login-code", id))));
  }

  #sshKeyKeys(fingerprint: string, user: string): [string, string, string, string] {
    return [
      this.#redis.key("ssh-key", `${fingerprint} ${user}`),
      this.#redis.key("ssh-keys", user),
      this.#redis.key("ssh-key", fingerprint),
      this.#redis.key("ssh-key-users", fingerprint),
    ];
  }

  async addSshKey(key: SshKeyRecord): Promise<void> {
    const added = await this.#redis.run("addSshKey", (c) => c.eval(ADD_SSH_KEY, 4, ...this.#sshKeyKeys(key.fingerprint, key.user), key.user, JSON.stringify(key), key.fingerprint));
    if (added !== 1) throw new WarrenError(ErrorCode.AlreadyExists, `user "${key.user}" already registered SSH key ${key.fingerprint}`);
  }

  async findSshKeys(fingerprint: string): Promise<SshKeyRecord[]> {
    const [users, legacy] = await this.#redis.run("findSshKeys", (c) =>
      Promise.all([c.smembers(this.#redis.key("ssh-key-users", fingerprint)), c.get(this.#redis.key("ssh-key", fingerprint))]),
    );
    const values = users.length === 0 ? [] : await this.#redis.run("findSshKeys", (c) => c.mget(users.map((u) => this.#redis.key("ssh-key", `${fingerprint} ${u}`))));
    const records = values.filter((v): v is string => v !== null).map((v) => JSON.parse(v) as SshKeyRecord);
    if (legacy !== null) records.push(JSON.parse(legacy) as SshKeyRecord);
    return records.sort((a, b) => a.createdAt - b.createdAt);
  }

  async listSshKeys(user: string): Promise<SshKeyRecord[]> {
    const fingerprints = await this.#redis.run("listSshKeys", (c) => c.smembers(this.#redis.key("ssh-keys", user)));
    if (fingerprints.length === 0) return [];
    const keys = fingerprints.flatMap((fp) => [this.#redis.key("ssh-key", `${fp} ${user}`), this.#redis.key("ssh-key", fp)]);
    const values = await this.#redis.run("listSshKeys", (c) => c.mget(keys), 5000);
    const records: SshKeyRecord[] = [];
    for (let i = 0; i < values.length; i += 2) {
      const record = parsed<SshKeyRecord>(values[i] ?? null) ?? parsed<SshKeyRecord>(values[i + 1] ?? null);
      if (record?.user === user) records.push(record);
    }
    return records.sort((a, b) => a.createdAt - b.createdAt);
  }

  async removeSshKey(user: string, fingerprint: string): Promise<boolean> {
    const removed = await this.#redis.run("removeSshKey", (c) => c.eval(REMOVE_SSH_KEY, 4, ...this.#sshKeyKeys(fingerprint, user), user, fingerprint));
    return removed === 1;
  }

  async getSshIdentity(workspace: string): Promise<WorkspaceSshIdentity | undefined> {
    return parsed(await this.#redis.run("getSshIdentity", (c) => c.get(this.#redis.key("ssh-identity", workspace))));
  }

  async putSshIdentityIfAbsent(workspace: string, identity: WorkspaceSshIdentity): Promise<WorkspaceSshIdentity> {
    return this.#putIfSameIncarnationAbsent("putSshIdentityIfAbsent", this.#redis.key("ssh-identity", workspace), identity);
  }

  async getPinnedHostKey(workspace: string): Promise<PinnedHostKey | undefined> {
    return parsed(await this.#redis.run("getPinnedHostKey", (c) => c.get(this.#redis.key("ssh-host-key", workspace))));
  }

  async pinHostKeyIfAbsent(workspace: string, key: PinnedHostKey): Promise<PinnedHostKey> {
    return this.#putIfSameIncarnationAbsent("pinHostKeyIfAbsent", this.#redis.key("ssh-host-key", workspace), key);
  }

  async forgetHostKey(workspace: string): Promise<boolean> {
    return (await this.#redis.run("forgetHostKey", (c) => c.del(this.#redis.key("ssh-host-key", workspace)))) === 1;
  }

  async *snapshot(): AsyncIterable<SnapshotEntry> {
    const prefixes = SNAPSHOT_KEYS.map(([, part]) => this.#redis.key(part, ""));
    const flat = (await this.#redis.run("snapshot", (c) => c.eval(SNAPSHOT, 0, ...prefixes), 60_000)) as string[];
    for (let i = 0; i < flat.length; i += 2) {
      const key = flat[i]!;
      const [kind, part] = SNAPSHOT_KEYS.find(([, p]) => key.startsWith(this.#redis.key(p, "")))!;
      yield { kind, id: key.slice(this.#redis.key(part, "").length), record: JSON.parse(flat[i + 1]!) as unknown };
    }
  }

  async isEmpty(): Promise<boolean> {
    for await (const _ of this.snapshot()) return false;
    return true;
  }

  async clear(): Promise<void> {
    const patterns = [...SNAPSHOT_KEYS.map(([, part]) => `${this.#redis.key(part, "")}*`), this.#redis.key("workspaces"), this.#redis.key("users"), `${this.#redis.key("ssh-keys", "")}*`, `${this.#redis.key("ssh-key-users", "")}*`];
    await this.#redis.run("clear", (c) => c.eval(CLEAR, 0, ...patterns), 60_000);
  }

  async restore(entry: SnapshotEntry): Promise<void> {
    const json = JSON.stringify(entry.record);
    const part = SNAPSHOT_KEYS.find(([kind]) => kind === entry.kind)?.[1];
    if (!part) throw new WarrenError(ErrorCode.InvalidArgument, `unknown record kind "${entry.kind}"`);
    await this.#redis.run("restore", (c) => {
      const m = c.multi().set(this.#redis.key(part, entry.id), json);
      // The sets that list records without SCAN.
      if (entry.kind === SnapshotKind.Workspace) m.sadd(this.#redis.key("workspaces"), entry.id);
      if (entry.kind === SnapshotKind.User) m.sadd(this.#redis.key("users"), entry.id);
      if (entry.kind === SnapshotKind.SshKey) {
        const key = entry.record as SshKeyRecord;
        m.sadd(this.#redis.key("ssh-keys", key.user), key.fingerprint);
        // A registration (`<fingerprint> <user>`), not a single-owner record of earlier versions.
        if (entry.id.includes(" ")) m.sadd(this.#redis.key("ssh-key-users", key.fingerprint), key.user);
      }
      return m.exec().then(repliesOf);
    });
  }

  async #putIfSameIncarnationAbsent<T extends { workspaceCreatedAt: number }>(operation: string, key: string, value: T): Promise<T> {
    const stored = await this.#redis.run(operation, (c) => c.eval(PUT_IF_SAME_INCARNATION_ABSENT, 1, key, JSON.stringify(value), String(value.workspaceCreatedAt)));
    return JSON.parse(String(stored)) as T;
  }

  /** The records whose names a set holds (names without a record are skipped). */
  async #members<T>(operation: string, setKey: string, recordKey: (member: string) => string): Promise<T[]> {
    const names = await this.#redis.run(operation, (c) => c.smembers(setKey));
    if (names.length === 0) return [];
    const values = await this.#redis.run(operation, (c) => c.mget(names.map(recordKey)), 5000);
    return values.filter((v): v is string => v !== null).map((v) => JSON.parse(v) as T);
  }
}

function parsed<T>(json: string | null): T | undefined {
  return json === null ? undefined : (JSON.parse(json) as T);
}

/** The replies of a MULTI; its first failed command rejects (ioredis resolves with them). */
function repliesOf(results: Array<[Error | null, unknown]> | null): unknown[] {
  if (!results) throw new WarrenError(ErrorCode.Unavailable, "the cluster's Redis discarded a transaction");
  const failed = results.find(([err]) => err);
  if (failed) throw WarrenError.from(failed[0], ErrorCode.Unavailable);
  return results.map(([, value]) => value);
}

/** Tokens listed per user: access and enrollment tokens (agent tokens belong to a workspace). */
function indexedByUser(token: TokenRecord): boolean {
  return token.kind === TokenKind.Access || token.kind === TokenKind.Enrollment;
}
