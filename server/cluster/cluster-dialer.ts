import { randomBytes } from "node:crypto";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { TunnelSocket } from "../../shared/tunnel-socket.js";
import { dialOutcomeOf, type DialOptions, type Dialer } from "../tunnel/tunnel-dialer.js";
import type { WorkspaceRef } from "../domain/workspace-ref.js";
import type { PresenceHolder, PresenceLookup } from "./presence.js";
import type { PeerDialer } from "./private-client.js";
import { HolderNotConnected, HolderUnreachable } from "./private-protocol.js";

/** Before reading presence again after a holder said "not here": time for a moving agent's new record. */
const MOVE_GRACE_MS = 100;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export type ForwardOutcome =
  | "ok"
  | "not_connected"
  | "peer_unreachable"
  | "refused"
  | "not_allowed"
  | "timeout"
  | "unavailable"
  | "error"
  | "canceled"
  | "lookup_failed";

export interface ClusterDialerOptions {
  /** Dials this server's own agents. */
  readonly local: Dialer;
  /** This server's agents, by workspace id. */
  readonly localAgents: { isConnected(workspaceId: string): boolean };
  readonly presence: PresenceLookup;
  readonly peers: PeerDialer;
  readonly log: Logger;
  /** Observes each attempt to reach another server (metrics). */
  readonly onForward?: (outcome: ForwardOutcome) => void;
}

/**
 * The Dialer of cluster mode: the agent's own server first, then the servers that presence
 * says hold it, over the private API. The front door, the WebSocket proxy and the SSH front
 * door use it unchanged. A holder that turns out not to have the agent (stale record) or not
 * to answer costs one failed try, then the next holder is tried, and the answer is a fast
 * 503 when none serves.
 */
export class ClusterDialer implements Dialer {
  readonly #options: ClusterDialerOptions;

  constructor(options: ClusterDialerOptions) {
    this.#options = options;
  }

  async dial(workspace: WorkspaceRef, port: number, options: DialOptions = {}): Promise<TunnelSocket> {
    const { local, localAgents } = this.#options;
    const connectionId = options.connectionId ?? randomBytes(6).toString("hex");
    if (localAgents.isConnected(workspace.id)) {
      try {
        return await local.dial(workspace, port, { ...options, connectionId });
      } catch (err) {
        // The agent left while we dialed: it may have reconnected elsewhere already.
        if (!(err instanceof WarrenError && err.code === ErrorCode.Unavailable && !localAgents.isConnected(workspace.id))) throw err;
      }
    }
    try {
      return await this.#forward(workspace, port, { ...options, connectionId });
    } catch (err) {
      // The agent moved here while we forwarded (its old server is draining): dial it here.
      if (err instanceof WarrenError && err.code === ErrorCode.Unavailable && localAgents.isConnected(workspace.id)) {
        return local.dial(workspace, port, { ...options, connectionId });
      }
      throw err;
    }
  }

  async #forward(workspace: WorkspaceRef, port: number, options: DialOptions & { connectionId: string }): Promise<TunnelSocket> {
    const tried = new Set<string>();
    const missed: string[] = [];
    let sawNotConnected = false;
    // The second round reads presence again: the first answer may have come from the cache.
    for (let round = 0; round < 2; round++) {
      let holders: readonly PresenceHolder[];
      try {
        holders = await this.#options.presence.holders(workspace.id);
      } catch (err) {
        this.#options.onForward?.("lookup_failed");
        throw new WarrenError(
          ErrorCode.Unavailable,
          `workspace "${workspace.name}" is not connected to this server, and the cluster state that says where it is cannot be read now (${WarrenError.from(err).message}); try again`,
        );
      }
      const fresh = holders.filter((h) => !tried.has(h.serverId));
      if (fresh.length === 0) break;
      for (const holder of fresh) {
        tried.add(holder.serverId);
        try {
          const socket = await this.#options.peers.dial(holder, workspace, port, options);
          // The private API has no early data: the bytes follow the dial.
          for (const data of options.earlyData ?? []) socket.write(data);
          this.#options.onForward?.("ok");
          return socket;
        } catch (err) {
          if (err instanceof HolderNotConnected || err instanceof HolderUnreachable) {
            const why = err instanceof HolderNotConnected ? "not-connected" : "unreachable";
            if (why === "not-connected") sawNotConnected = true;
            this.#options.onForward?.(why === "not-connected" ? "not_connected" : "peer_unreachable");
            this.#options.presence.forget(workspace.id, holder, why);
            this.#options.log.debug({ workspace: workspace.name, server: holder.serverId, err: err.message }, "forward missed; trying the next holder");
            missed.push(`server ${holder.serverId} ${why === "not-connected" ? "no longer holds it" : "does not answer"}`);
            continue;
          }
          const e = WarrenError.from(err);
          this.#options.onForward?.(dialOutcomeOf(e));
          throw e;
        }
      }
      if (missed.length === 0) break;
      // A holder that no longer has the agent: it is likely moving (its server is draining),
      // and its new server records it within a few milliseconds of the agent's welcome.
      if (round === 0 && sawNotConnected) await sleep(MOVE_GRACE_MS);
    }
    const detail = missed.length > 0 ? ` (${missed.join(", ")})` : "";
    throw new WarrenError(ErrorCode.Unavailable, `workspace "${workspace.name}" is not connected${detail}`);
  }
}
