import type { Http2Session, ServerHttp2Stream } from "node:http2";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { DisconnectReason } from "../../shared/gen/warren/v1/agent_pb.js";
import type { AgentConnection } from "./agent-connection.js";
import type { WorkspaceRef } from "../domain/workspace-ref.js";

/** A claimed idle stream and the connection it belongs to. */
export interface AcquiredStream {
  readonly stream: ServerHttp2Stream;
  readonly connection: AgentConnection;
}

interface Waiter {
  readonly resolve: (acquired: AcquiredStream) => void;
  readonly reject: (err: WarrenError) => void;
}

interface WorkspaceTunnels {
  readonly name: string;
  readonly connections: AgentConnection[];
  readonly waiters: Waiter[];
  /** Round-robin position among connections. */
  next: number;
  /** Streams asked of the agents and not parked yet: a burst is asked for once, not per waiter. */
  requested: number;
  /** While connections wait, asks again now and then (an ask may be lost or fall short). */
  reaskTimer: NodeJS.Timeout | undefined;
}

/**
 * While connections wait for a stream, the agents are asked again this often for as many as
 * wait: an agent may have opened fewer than asked (its limit, a refusal cooldown), and the
 * parked streams that counted against the ask may have gone to other waiters.
 */
const REASK_INTERVAL_MS = 250;

/** What the agent endpoint needs: registering connections. */
export interface AgentRegistrar {
  /** Adds a connection; it stays until it closes. Never blocks. */
  register(connection: AgentConnection): void;
}

/** What dialing needs: finding idle streams of a workspace. */
export interface StreamFinder {
  /**
   * Resolves with an idle stream of the workspace incarnation, waiting up to `waitMs` for one
   * to be parked (asking the agent for more meanwhile). Rejects with unavailable when no agent
   * of that incarnation is connected here (an agent of an earlier workspace of the same name
   * never counts) or none frees a stream in time; with canceled when `signal` aborts. The
   * caller owns the stream from then on.
   */
  acquire(workspace: WorkspaceRef, waitMs: number, signal?: AbortSignal): Promise<AcquiredStream>;
  /** Whether a usable agent connection of the incarnation (by workspace id) is here. */
  isConnected(workspaceId: string): boolean;
}

export interface TunnelRegistryOptions {
  /**
   * Told when a workspace incarnation (by id) gets its first connection here (true) and loses
   * its last (false): presence records it. Called synchronously; must not throw.
   */
  readonly onWorkspaceChange?: (workspaceId: string, connected: boolean) => void;
}

/**
 * Every connected agent of this server, by workspace incarnation (id). A name maps to at most
 * one incarnation here: the newest one registered.
 */
export class TunnelRegistry implements AgentRegistrar, StreamFinder {
  /** By workspace id. */
  readonly #workspaces = new Map<string, WorkspaceTunnels>();
  /**
   * Every incarnation held here, by name, the most recently registered last: a registration
   * checks its own name only, not every workspace (5,000 agents reconnecting at once).
   */
  readonly #idsByName = new Map<string, Set<string>>();
  readonly #bySession = new WeakMap<Http2Session, AgentConnection>();
  readonly #onWorkspaceChange: ((workspaceId: string, connected: boolean) => void) | undefined;

  constructor(options: TunnelRegistryOptions = {}) {
    this.#onWorkspaceChange = options.onWorkspaceChange;
  }

  /** Whether the agent connection on this HTTP/2 session still takes new dials. */
  acceptsNewWork(session: Http2Session): boolean {
    return this.#bySession.get(session)?.usable ?? false;
  }

  register(connection: AgentConnection): void {
    // One incarnation per name: the one registering passed its check just now, so the others
    // belong to a workspace that is gone (their revocation was missed, or the store lost it).
    this.closeOtherIncarnations(connection.workspace, connection.workspaceId);
    let tunnels = this.#workspaces.get(connection.workspaceId);
    const first = !tunnels;
    if (!tunnels) {
      tunnels = { name: connection.workspace, connections: [], waiters: [], next: 0, requested: 0, reaskTimer: undefined };
      this.#workspaces.set(connection.workspaceId, tunnels);
    }
    let ids = this.#idsByName.get(connection.workspace);
    if (!ids) this.#idsByName.set(connection.workspace, (ids = new Set()));
    ids.delete(connection.workspaceId);
    ids.add(connection.workspaceId);
    // The agent process connected again: its older connections may be dead without a FIN
    // having reached us (a network cut), and their streams would swallow dials until a
    // timeout. New dials go to the new connection; requests in flight on the old one go on
    // (keepalive pings close it if it is really dead).
    for (const old of tunnels.connections) {
      if (old.instanceId !== "" && old.instanceId === connection.instanceId) old.markDraining();
    }
    tunnels.connections.push(connection);
    this.#bySession.set(connection.session, connection);
    const t = tunnels;
    connection.setIdleListener(() => {
      // A stream was parked: one fewer on its way.
      if (t.requested > 0) t.requested--;
      this.#serveWaiters(t);
    });
    connection.onClose(() => this.#remove(connection));
    if (first) this.#onWorkspaceChange?.(connection.workspaceId, true);
    this.#serveWaiters(tunnels);
  }

  /** Whether any connection of the incarnation (by id) is here, usable or draining. */
  holds(workspaceId: string): boolean {
    return this.#workspaces.has(workspaceId);
  }

  /** Ids of the incarnations with at least one connection here. */
  heldWorkspaces(): Iterable<string> {
    return this.#workspaces.keys();
  }

  isConnected(workspaceId: string): boolean {
    return this.#workspaces.get(workspaceId)?.connections.some((c) => c.usable) ?? false;
  }

  /** Connections of the workspace of that name held here (its newest incarnation), for status and tests. */
  connectionsOf(workspace: string): readonly AgentConnection[] {
    const id = [...(this.#idsByName.get(workspace) ?? [])].pop();
    return (id !== undefined && this.#workspaces.get(id)?.connections) || [];
  }

  /** Every connection (for metrics and shutdown). */
  *connections(): Iterable<AgentConnection> {
    for (const tunnels of this.#workspaces.values()) yield* tunnels.connections;
  }

  get workspaceCount(): number {
    return this.#workspaces.size;
  }

  acquire(ref: WorkspaceRef, waitMs: number, signal?: AbortSignal): Promise<AcquiredStream> {
    const workspace = ref.name;
    const tunnels = this.#workspaces.get(ref.id);
    if (!tunnels || !tunnels.connections.some((c) => c.usable)) {
      return Promise.reject(notConnected(workspace));
    }
    const found = this.#takeIdle(tunnels);
    if (found) return Promise.resolve(found);
    if (waitMs <= 0) return Promise.reject(noIdleStream(workspace, tunnels, waitMs));
    if (signal?.aborted) return Promise.reject(new WarrenError(ErrorCode.Canceled, "request canceled"));
    return new Promise<AcquiredStream>((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        const i = tunnels.waiters.indexOf(waiter);
        if (i >= 0) tunnels.waiters.splice(i, 1);
        // Nobody waits any more: the next burst asks afresh (an agent at its limit may never send what was asked).
        if (tunnels.waiters.length === 0) {
          tunnels.requested = 0;
          clearInterval(tunnels.reaskTimer);
          tunnels.reaskTimer = undefined;
        }
      };
      const waiter: Waiter = {
        resolve: (acquired) => {
          cleanup();
          resolve(acquired);
        },
        reject: (err) => {
          cleanup();
          reject(err);
        },
      };
      const onAbort = () => waiter.reject(new WarrenError(ErrorCode.Canceled, "request canceled"));
      const timer = setTimeout(() => waiter.reject(noIdleStream(workspace, tunnels, waitMs)), waitMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      tunnels.waiters.push(waiter);
      this.#askForStreams(tunnels);
      tunnels.reaskTimer ??= setInterval(() => {
        tunnels.requested = 0;
        this.#askForStreams(tunnels);
      }, REASK_INTERVAL_MS);
    });
  }

  /**
   * Drops the agents of the name that belong to another incarnation than `workspaceId` (a new
   * workspace of that name exists now). Returns how many. Never blocks.
   */
  closeOtherIncarnations(workspace: string, workspaceId: string): number {
    const stale: AgentConnection[] = [];
    for (const id of this.#idsByName.get(workspace) ?? []) {
      if (id !== workspaceId) stale.push(...(this.#workspaces.get(id)?.connections ?? []));
    }
    for (const connection of stale) {
      connection.disconnect(DisconnectReason.REVOKED, `workspace "${workspace}" was replaced by a new workspace of the same name`, 0);
    }
    return stale.length;
  }

  /** Drops every agent of the workspace on this server (revoked, deleted). */
  disconnectWorkspace(workspace: string, reason: DisconnectReason, message: string): number {
    const connections: AgentConnection[] = [];
    for (const id of this.#idsByName.get(workspace) ?? []) connections.push(...(this.#workspaces.get(id)?.connections ?? []));
    for (const connection of connections) connection.disconnect(reason, message);
    return connections.length;
  }

  #takeIdle(tunnels: WorkspaceTunnels): AcquiredStream | undefined {
    const n = tunnels.connections.length;
    for (let i = 0; i < n; i++) {
      const connection = tunnels.connections[(tunnels.next + i) % n]!;
      const stream = connection.takeIdle();
      if (stream) {
        tunnels.next = (tunnels.next + i + 1) % n;
        return { stream, connection };
      }
    }
    return undefined;
  }

  /** Under a burst, ask the connection with the most headroom for as many streams as are waited for. */
  #askForStreams(tunnels: WorkspaceTunnels): void {
    let best: AgentConnection | undefined;
    for (const c of tunnels.connections) {
      if (c.usable && (!best || c.maxStreams - c.streamCount > best.maxStreams - best.streamCount)) best = c;
    }
    const want = Math.min(tunnels.waiters.length - tunnels.requested, best ? best.maxStreams - best.streamCount : 0);
    if (best && want > 0) {
      best.requestStreams(want);
      tunnels.requested += want;
    }
  }

  #serveWaiters(tunnels: WorkspaceTunnels): void {
    while (tunnels.waiters.length > 0) {
      const found = this.#takeIdle(tunnels);
      if (!found) return;
      tunnels.waiters[0]!.resolve(found);
    }
  }

  #remove(connection: AgentConnection): void {
    const tunnels = this.#workspaces.get(connection.workspaceId);
    if (!tunnels) return;
    const i = tunnels.connections.indexOf(connection);
    if (i >= 0) tunnels.connections.splice(i, 1);
    if (tunnels.connections.length === 0) {
      this.#workspaces.delete(connection.workspaceId);
      const ids = this.#idsByName.get(connection.workspace);
      ids?.delete(connection.workspaceId);
      if (ids?.size === 0) this.#idsByName.delete(connection.workspace);
      clearInterval(tunnels.reaskTimer);
      for (const waiter of [...tunnels.waiters]) waiter.reject(notConnected(connection.workspace));
      this.#onWorkspaceChange?.(connection.workspaceId, false);
    }
  }
}

function notConnected(workspace: string): WarrenError {
  return new WarrenError(ErrorCode.Unavailable, `workspace "${workspace}" is not connected`);
}

function noIdleStream(workspace: string, tunnels: WorkspaceTunnels, waitMs: number): WarrenError {
  const busy = tunnels.connections.reduce((n, c) => n + c.streamCount, 0);
  return new WarrenError(
    ErrorCode.Unavailable,
    `workspace "${workspace}" has no free tunnel stream (waited ${waitMs} ms, ${busy} streams in use); try again`,
  );
}
