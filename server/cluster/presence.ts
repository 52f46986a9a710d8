/**
 * Presence: which server holds which workspace's agent. Keyed by workspace id (the
 * incarnation, tunnel/workspace-ref.ts), never by name: a record of an agent of an earlier
 * workspace of the same name never sends a dial its way. Split by role, like the tunnel
 * registry: the dialer sees only PresenceLookup, the registry only PresenceRecorder.
 * Two implementations chosen at the composition root: LocalPresence (one server: only its own
 * registry) and RedisPresence (cluster mode).
 */

/** Another server that holds an agent of a workspace. */
export interface PresenceHolder {
  readonly serverId: string;
  /** host:port of its private listener. */
  readonly address: string;
  /** When its presence record expires unless refreshed (ms since the epoch); freshest first. */
  readonly expiresAt: number;
  /** When its server record expires unless refreshed: changes with every heartbeat. */
  readonly heartbeatExpiresAt: number;
}

/** Why a holder from a lookup did not serve a dial. */
export type HolderMiss = "not-connected" | "unreachable";

/** What the cluster dialer needs: where else an agent is. */
export interface PresenceLookup {
  /**
   * Servers other than this one that hold an agent of the workspace, freshest record first;
   * empty when none. May answer from a short-lived cache; concurrent lookups of one workspace
   * share one Redis round trip. Never waits longer than its lookup timeout: rejects with
   * unavailable when the cluster state cannot be read in time. Not cancellable; bounded.
   */
  holders(workspaceId: string): Promise<readonly PresenceHolder[]>;
  /**
   * A holder did not serve a dial: drop the cached answer for the workspace, and leave out
   * that holder (for the workspace, or the whole server when it was unreachable) until its
   * record changes. Never blocks.
   */
  forget(workspaceId: string, holder: PresenceHolder, why: HolderMiss): void;
}

/** What the tunnel registry tells presence. */
export interface PresenceRecorder {
  /**
   * This server got its first agent connection of the workspace (connected) or lost its last
   * one. Never blocks and never fails: writes are batched, and a record is removed only a
   * few seconds after the last connection went, so that a flapping agent does not churn Redis.
   */
  workspaceChanged(workspaceId: string, connected: boolean): void;
}

export interface Presence extends PresenceLookup, PresenceRecorder {
  /** Whether an agent of the workspace is connected here or anywhere in the cluster; false when unknown. Bounded like holders(). */
  isConnected(workspaceId: string): Promise<boolean>;
  /**
   * Starts recording; `address`: host:port other servers dial to reach this one (cluster: written
   * in this server's record). Resolves once done or failed once; never rejects.
   */
  start(address: string): Promise<void>;
  /** Removes this server's records (bounded, best effort) and stops its timers. Never rejects. */
  stop(): Promise<void>;
}

/** One server, no Redis: nothing is anywhere else. */
export class LocalPresence implements Presence {
  readonly #local: { isConnected(workspaceId: string): boolean };

  constructor(options: { local: { isConnected(workspaceId: string): boolean } }) {
    this.#local = options.local;
  }

  async holders(): Promise<readonly PresenceHolder[]> {
    return [];
  }

  forget(): void {}

  workspaceChanged(): void {}

  async isConnected(workspaceId: string): Promise<boolean> {
    return this.#local.isConnected(workspaceId);
  }

  async start(): Promise<void> {}

  async stop(): Promise<void> {}
}
