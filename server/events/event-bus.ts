/**
 * Events every server of a cluster must see: in memory for one server, Redis pub/sub in
 * cluster mode.
 */
export type ClusterEvent =
  /**
   * The workspace was deleted or terminated, or its agent token revoked: drop its agents.
   * `workspaceId` (deleted, terminated) closes everything of that incarnation; `tokenId`
   * (rotated) only what the old token opened. Events without either (from servers older than
   * incarnations) drop every agent of the name.
   */
  | {
      readonly type: "workspace-revoked";
      readonly workspace: string;
      readonly reason: string;
      readonly workspaceId?: string;
      readonly tokenId?: string;
    }
  /** A workspace was created: agents of an earlier workspace of the same name must go. */
  | { readonly type: "workspace-created"; readonly workspace: string; readonly workspaceId: string }
  /**
   * The workspace record changed (ports, state): refresh caches. `allowedPorts` (with the
   * record's `revision`) is what its agents may dial now, so that the server holding an agent
   * tells it at once, without reading the store first.
   */
  | {
      readonly type: "workspace-changed";
      readonly workspace: string;
      /** The incarnation whose record changed (absent from servers older than incarnations). */
      readonly workspaceId?: string;
      readonly revision?: number;
      readonly allowedPorts?: readonly number[];
    }
  /** An access token was revoked: drop it from every server's token cache. */
  | { readonly type: "token-revoked"; readonly tokenId: string };

export interface EventBus {
  /** Delivers the event to every subscriber on every server, this one included. */
  publish(event: ClusterEvent): Promise<void>;
  /** Returns a function that unsubscribes. Handlers must not throw. */
  subscribe(handler: (event: ClusterEvent) => void): () => void;
}

export class LocalEventBus implements EventBus {
  readonly #handlers = new Set<(event: ClusterEvent) => void>();

  async publish(event: ClusterEvent): Promise<void> {
    for (const handler of [...this.#handlers]) handler(event);
  }

  subscribe(handler: (event: ClusterEvent) => void): () => void {
    this.#handlers.add(handler);
    return () => this.#handlers.delete(handler);
  }
}
