import type { Http2Session } from "node:http2";
import type { AddressInfo } from "node:net";
import type { Logger } from "../shared/logger.js";
import type { Presence } from "./cluster/presence.js";
import type { PrivateClient } from "./cluster/private-client.js";
import type { PrivateEndpoint } from "./cluster/private-endpoint.js";
import type { RedisConnection } from "./cluster/redis-connection.js";
import type { RedisPresence } from "./cluster/redis-presence.js";
import type { ServerConfig } from "./config.js";
import type { ControlStore, WorkspaceLookup } from "./domain/store.js";
import type { EventBus } from "./events/event-bus.js";
import type { RedisEventBus } from "./events/redis-event-bus.js";
import type { ServerMetrics } from "./observability/metrics.js";
import type { EmbeddedStore } from "./store/embedded-store.js";
import type { WorkspaceCache } from "./store/workspace-cache.js";
import type { TlsCredentials } from "./tls/tls-credentials.js";
import type { Dialer } from "./tunnel/tunnel-dialer.js";
import type { TunnelRegistry } from "./tunnel/tunnel-registry.js";

/** What only cluster mode has: Redis, the private API and presence through Redis. */
export interface ClusterParts {
  readonly redis: RedisConnection;
  readonly events: RedisEventBus;
  readonly presence: RedisPresence;
  readonly endpoint: PrivateEndpoint;
  readonly peers: PrivateClient;
}

/**
 * Where state lives and how a workspace is reached: the one thing that differs between running
 * alone (embedded: the data directory's store, or memory for tests) and in a cluster (Redis).
 * Everything else is built the same way on top of it.
 */
export interface ServerMode {
  readonly kind: "embedded" | "cluster";
  readonly store: ControlStore;
  /** Workspace reads of the front doors (cluster: through a cache kept fresh by events). */
  readonly workspaceLookup: WorkspaceLookup;
  readonly workspaceCache: WorkspaceCache | undefined;
  readonly events: EventBus;
  readonly presence: Presence;
  /** Dials this server's agents, and in a cluster the other servers' through the private API. */
  readonly dialer: Dialer;
  readonly cluster: ClusterParts | undefined;
  /**
   * Wires in what is built after the mode and hears from it (a real cycle: those parts read the
   * mode's store). Called once by the composition root before start; an event before it is a
   * wiring mistake and throws.
   */
  attach(hooks: ServerModeHooks): void;
  /**
   * Cluster: waits for Redis (bracketed by `waitingForRedis`), starts the events, opens the
   * private listener and announces presence at the address other servers dial. Embedded:
   * nothing to start.
   */
  start(waitingForRedis: (waiting: boolean) => void): Promise<PrivateListener | undefined>;
  /** Releases what the mode holds; cluster: presence records go at once, then the private API and Redis. */
  stop(): Promise<void>;
}

/** Cluster mode's private listener, once it listens. */
export interface PrivateListener {
  readonly address: AddressInfo;
  /** host:port other servers dial (WARREN_PRIVATE_ADVERTISE_ADDR, else derived from the bound address). */
  readonly advertised: string;
  /** The Redis target, for the start log (no password). */
  readonly redis: string;
}

/** What the mode tells the parts built after it. */
export interface ServerModeHooks {
  /** Redis is reachable (first, and again after an outage: it may have come back empty). */
  readonly onRedisBack: () => void;
  /** A peer server is closing its private connection (it drains): move what rides on it. */
  readonly onPeerSessionClosing: (session: Http2Session) => void;
}

/** What a mode is built from: the parts made before it (what is made after comes through attach()). */
export interface ServerModeContext {
  readonly config: ServerConfig;
  readonly log: Logger;
  readonly serverId: string;
  readonly registry: TunnelRegistry;
  /** Dials this server's own agents. */
  readonly localDialer: Dialer;
  readonly metrics: ServerMetrics;
  readonly tls: TlsCredentials | undefined;
  /** The embedded store opened from the data directory (embedded mode). */
  readonly embeddedStore: EmbeddedStore | undefined;
}
