import type { WorkspaceRecord } from "../domain/records.js";
import type { WorkspaceStore } from "../domain/store.js";

export interface WorkspaceCacheOptions {
  readonly store: Pick<WorkspaceStore, "getWorkspace">;
  /** A record is served without asking the store for this long. */
  readonly freshMs?: number;
  /** When the store fails (Redis down), a record this old is still served. */
  readonly staleMs?: number;
  readonly maxEntries?: number;
  readonly now?: () => number;
}

interface Entry {
  readonly record: WorkspaceRecord;
  readonly at: number;
  /** Changed elsewhere: read the store again, but serve this one if the store fails. */
  readonly outdated?: boolean;
}

/**
 * Workspace records for the request path in cluster mode: one Redis read per workspace every
 * couple of seconds instead of one per request, concurrent misses merged, and the last known
 * record served while Redis is unreachable, so that requests to agents on this server keep
 * working through a Redis outage. Changes reach it through invalidate(), called on every
 * cluster event about the workspace: a changed record is read again (the old one still serves
 * while Redis is down), a deleted or revoked one is forgotten within the event's delivery time.
 */
export class WorkspaceCache {
  readonly #store: Pick<WorkspaceStore, "getWorkspace">;
  readonly #freshMs: number;
  readonly #staleMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();
  readonly #inflight = new Map<string, Promise<WorkspaceRecord | undefined>>();
  /** Bumped by invalidate(): a read that started before it stores what it read as outdated. */
  #generation = 0;
  /** Generation at which a workspace was last forgotten (deleted, revoked). */
  readonly #forgotten = new Map<string, number>();

  constructor(options: WorkspaceCacheOptions) {
    this.#store = options.store;
    this.#freshMs = options.freshMs ?? 2000;
    this.#staleMs = options.staleMs ?? 60 * 60_000;
    this.#maxEntries = options.maxEntries ?? 20_000;
    this.#now = options.now ?? Date.now;
  }

  /**
   * The workspace, or undefined when it does not exist. Rejects only when the store fails and
   * no record of it younger than the stale limit is known (unavailable).
   */
  getWorkspace(name: string): Promise<WorkspaceRecord | undefined> {
    const entry = this.#entries.get(name);
    const now = this.#now();
    if (entry && !entry.outdated && now - entry.at < this.#freshMs) return Promise.resolve(entry.record);
    const inflight = this.#inflight.get(name);
    if (inflight) return inflight;
    const generation = this.#generation;
    const read = this.#store.getWorkspace(name).then(
      (record) => {
        if (this.#generation === generation) this.#put(name, record);
        // Changed meanwhile: keep it only as a fallback for a store outage, never after a
        // deletion (that record must not come back).
        else if ((this.#forgotten.get(name) ?? -1) < generation) this.#put(name, record, true);
        return record;
      },
      (err: unknown) => {
        const stale = this.#entries.get(name);
        if (stale && this.#now() - stale.at < this.#staleMs) return stale.record;
        throw err;
      },
    );
    const shared = read.finally(() => this.#inflight.delete(name));
    this.#inflight.set(name, shared);
    return shared;
  }

  /**
   * Remembers a record just read elsewhere (an agent authenticated with it), so that requests
   * to that agent work even if Redis goes away before anyone asked for the workspace.
   */
  prime(record: WorkspaceRecord): void {
    this.#put(record.name, record);
  }

  /**
   * The workspace changed elsewhere: the next request reads the store. With `forget` (deleted,
   * revoked) the old record is dropped at once; otherwise it still serves while the store is
   * unreachable. Never blocks.
   */
  invalidate(name: string, forget = true): void {
    const entry = this.#entries.get(name);
    this.#generation++;
    if (forget) this.#forgotten.set(name, this.#generation);
    if (forget || !entry) this.#entries.delete(name);
    else this.#entries.set(name, { ...entry, outdated: true });
    this.#inflight.delete(name);
  }

  #put(name: string, record: WorkspaceRecord | undefined, outdated = false): void {
    this.#entries.delete(name);
    if (!outdated) this.#forgotten.delete(name);
    // Absent workspaces are not cached: one created on another server is seen at once.
    if (!record) return;
    this.#entries.set(name, outdated ? { record, at: this.#now(), outdated } : { record, at: this.#now() });
    if (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
  }
}
