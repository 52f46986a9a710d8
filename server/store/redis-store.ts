import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { RedisConnection } from "../cluster/redis-connection.js";
import type { TokenRecord, WorkspaceRecord } from "./records.js";
import type { TokenStore, WorkspaceStore } from "./store.js";

/**
 * The cluster store: every server sees the same workspaces and tokens. Keys (under the
 * cluster prefix P):
 *
 *   P:workspace:<name>   JSON WorkspaceRecord
 *   P:workspaces         set of workspace names (for listing without SCAN)
 *   P:token:<id>         JSON TokenRecord (the secret's hash only, never the token)
 *
 * Every method rejects with unavailable, without waiting, while Redis is unreachable.
 */
export class RedisStore implements WorkspaceStore, TokenStore {
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

  async putToken(token: TokenRecord): Promise<void> {
    await this.#redis.run("putToken", (c) => c.set(this.#tokenKey(token.id), JSON.stringify(token)));
  }

  async getToken(id: string): Promise<TokenRecord | undefined> {
    const json = await this.#redis.run("getToken", (c) => c.get(this.#tokenKey(id)));
    return json === null ? undefined : (JSON.parse(json) as TokenRecord);
  }

  async deleteToken(id: string): Promise<void> {
    await this.#redis.run("deleteToken", (c) => c.del(this.#tokenKey(id)));
  }
}

/** The replies of a MULTI; its first failed command rejects (ioredis resolves with them). */
function repliesOf(results: Array<[Error | null, unknown]> | null): unknown[] {
  if (!results) throw new WarrenError(ErrorCode.Unavailable, "the cluster's Redis discarded a transaction");
  const failed = results.find(([err]) => err);
  if (failed) throw WarrenError.from(failed[0], ErrorCode.Unavailable);
  return results.map(([, value]) => value);
}
