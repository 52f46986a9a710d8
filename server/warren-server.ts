import { hostname, networkInterfaces } from "node:os";
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { DisconnectReason } from "../shared/gen/warren/v1/agent_pb.js";
import { WorkspaceService } from "../shared/gen/warren/v1/workspace_pb.js";
import type { Logger } from "../shared/logger.js";
import type { HostPort } from "../shared/settings.js";
import { TUNNEL_WINDOWS } from "../shared/tunnel-windows.js";
import { VERSION } from "../shared/version.js";
import { createApiHandler } from "./api/api-handler.js";
import { workspaceApi } from "./api/workspace-api.js";
import { Authenticator } from "./auth/authenticator.js";
import { generateAdminToken } from "./auth/tokens.js";
import { ClusterDialer } from "./cluster/cluster-dialer.js";
import { LocalPresence, type Presence } from "./cluster/presence.js";
import { PrivateClient } from "./cluster/private-client.js";
import { PrivateEndpoint } from "./cluster/private-endpoint.js";
import { RedisConnection } from "./cluster/redis-connection.js";
import { RedisPresence } from "./cluster/redis-presence.js";
import type { ServerConfig } from "./config.js";
import { WorkspaceManager } from "./control/workspace-manager.js";
import { LocalEventBus, type EventBus } from "./events/event-bus.js";
import { RedisEventBus } from "./events/redis-event-bus.js";
import { FrontDoor } from "./http/front-door.js";
import { ReverseProxy } from "./http/reverse-proxy.js";
import { TunnelHttpAgent } from "./http/tunnel-http-agent.js";
import { WebSocketProxy } from "./http/websocket-proxy.js";
import { WorkspaceAccess } from "./http/workspace-access.js";
import { workspaceUrl } from "./http/workspace-host.js";
import { HealthServer } from "./observability/health-server.js";
import { ServerMetrics } from "./observability/metrics.js";
import { rootFallback, rootHandler } from "./root-handler.js";
import { MemoryStore } from "./store/memory-store.js";
import type { WorkspaceRecord } from "./store/records.js";
import { RedisStore } from "./store/redis-store.js";
import type { TokenStore, WorkspaceStore } from "./store/store.js";
import { WorkspaceCache } from "./store/workspace-cache.js";
import { AgentEndpoint } from "./tunnel/agent-endpoint.js";
import { TunnelDialer, type Dialer } from "./tunnel/tunnel-dialer.js";
import { TunnelRegistry } from "./tunnel/tunnel-registry.js";

export interface ServerAddresses {
  readonly http: AddressInfo;
  readonly agent: AddressInfo;
  readonly observability: AddressInfo;
  /** Cluster mode: the private listener. */
  readonly private?: AddressInfo;
}

/** The parts that exist in cluster mode only. */
interface ClusterParts {
  readonly redis: RedisConnection;
  readonly events: RedisEventBus;
  readonly presence: RedisPresence;
  readonly endpoint: PrivateEndpoint;
  readonly peers: PrivateClient;
}

/**
 * The composition root of warren-server: builds every module from the config, wires them
 * and owns start and shutdown.
 */
export class WarrenServer {
  readonly config: ServerConfig;
  readonly log: Logger;
  readonly serverId: string;
  readonly adminToken: string;
  readonly adminTokenGenerated: boolean;
  readonly registry: TunnelRegistry;
  readonly metrics: ServerMetrics;
  readonly store: WorkspaceStore & TokenStore;
  readonly events: EventBus;
  readonly presence: Presence;
  readonly #cluster: ClusterParts | undefined;
  #privateAdvertised = "";
  #waitingForRedis = false;
  #workspaceCache: WorkspaceCache | undefined;
  readonly #agentEndpoint: AgentEndpoint;
  readonly #frontDoor: FrontDoor;
  readonly #health: HealthServer;
  readonly #httpAgent: TunnelHttpAgent;
  #publicBase = "";
  #draining = false;
  #addresses: ServerAddresses | undefined;

  constructor(config: ServerConfig, log: Logger) {
    this.config = config;
    this.log = log;
    this.serverId = config.serverId ?? `${hostname()}-${randomBytes(3).toString("hex")}`;
    this.adminTokenGenerated = config.adminToken === undefined;
    this.adminToken = config.adminToken ?? generateAdminToken();
    // The registry tells presence about first and last connections; presence is built below.
    const registry = new TunnelRegistry({ onWorkspaceChange: (workspace, connected) => this.presence.workspaceChanged(workspace, connected) });
    this.registry = registry;
    this.metrics = new ServerMetrics({
      tunnelStats: () => this.#tunnelStats(),
      ...(config.redisUrl ? { redisAvailable: () => this.#cluster?.redis.available ?? false } : {}),
    });
    const localDialer = new TunnelDialer({
      finder: registry,
      streamWaitMs: config.streamWaitTimeout,
      dialTimeoutMs: config.dialTimeout,
      maxMessageBytes: TUNNEL_WINDOWS.maxMessageBytes,
      log,
      onOutcome: (outcome) => this.metrics.dialOutcome(outcome),
    });

    // Embedded (one server, memory) or cluster (Redis): the only place that chooses.
    let store: WorkspaceStore & TokenStore;
    let workspaceLookup: { getWorkspace(name: string): Promise<WorkspaceRecord | undefined> };
    let dialer: Dialer;
    if (config.redisUrl && config.clusterSecret) {
      const redis = new RedisConnection({
        target: config.redisUrl,
        prefix: config.redisPrefix,
        log: log.child({ component: "redis" }),
        onError: (operation) => this.metrics.redisErrors.inc({ operation }),
        onAvailability: (available) => {
          if (available) this.#cluster?.presence.refreshNow();
        },
      });
      store = new RedisStore({ redis });
      const events = new RedisEventBus({ redis, serverId: this.serverId, log: log.child({ component: "events" }) });
      this.events = events;
      const presence = new RedisPresence({
        redis,
        serverId: this.serverId,
        address: () => this.#privateAdvertised,
        held: registry,
        log: log.child({ component: "presence" }),
      });
      this.presence = presence;
      const peers = new PrivateClient({
        clusterSecret: config.clusterSecret,
        serverId: this.serverId,
        log: log.child({ component: "private-client" }),
        // The holder waits for a stream and for the agent's dial; then it answers.
        answerTimeoutMs: config.streamWaitTimeout + config.dialTimeout + 2000,
      });
      dialer = new ClusterDialer({
        local: localDialer,
        localAgents: registry,
        presence,
        peers,
        log: log.child({ component: "cluster-dialer" }),
        onForward: (outcome) => this.metrics.forwards.inc({ outcome }),
      });
      const endpoint = new PrivateEndpoint({
        listen: config.privateAddr,
        clusterSecret: config.clusterSecret,
        serverId: this.serverId,
        local: localDialer,
        agents: registry,
        log: log.child({ component: "private-endpoint" }),
        onOutcome: (outcome) => this.metrics.forwardedDials.inc({ outcome }),
      });
      const cache = new WorkspaceCache({ store });
      events.subscribe((event) => cache.invalidate(event.workspace));
      workspaceLookup = cache;
      this.#workspaceCache = cache;
      this.#cluster = { redis, events, presence, endpoint, peers };
    } else {
      const memory = new MemoryStore();
      store = memory;
      workspaceLookup = memory;
      this.events = new LocalEventBus();
      this.presence = new LocalPresence({ local: registry });
      dialer = localDialer;
    }
    this.store = store;
    const authenticator = new Authenticator({ workspaces: store, tokens: store, adminToken: this.adminToken });
    const manager = new WorkspaceManager({ workspaces: store, tokens: store, events: this.events, agentTokenTtlMs: config.agentTokenTtl });
    this.events.subscribe((event) => {
      if (event.type === "workspace-revoked") registry.disconnectWorkspace(event.workspace, DisconnectReason.REVOKED, event.reason);
    });
    const urlsOf = (w: WorkspaceRecord) => w.ports.map((p) => workspaceUrl(this.#publicBase, config.rootDomain, w.name, p.port));

    this.#agentEndpoint = new AgentEndpoint({
      listen: config.agentAddr,
      authenticator,
      registry,
      serverId: this.serverId,
      maxStreams: config.agentMaxStreams,
      maxMessageBytes: TUNNEL_WINDOWS.maxMessageBytes,
      urlsOf,
      log: log.child({ component: "agent-endpoint" }),
      onConnection: (connection, _hello, workspace) => {
        this.metrics.agentConnects.inc();
        this.#workspaceCache?.prime(workspace);
        connection.onDraining(() => this.#httpAgent.closeIdleSocketsOf(connection.session));
      },
    });

    this.#httpAgent = new TunnelHttpAgent(dialer, {
      freeSocketTimeoutMs: 4000,
      maxFreeSockets: 256,
      // Forwarded sockets ride on pooled sessions to peer servers: those stay reusable too.
      acceptsNewWork: (session) => registry.acceptsNewWork(session) || (this.#cluster?.peers.owns(session) ?? false),
    });
    const api = createApiHandler({
      routes: (router) => {
        router.service(
          WorkspaceService,
          workspaceApi({ manager, authenticator, urlsOf, isConnected: (name) => this.presence.isConnected(name) }),
        );
      },
      fallback: rootFallback,
    });
    this.#frontDoor = new FrontDoor({
      listen: config.httpAddr,
      rootDomain: config.rootDomain,
      rootHandler: rootHandler({ routes: [], api }),
      access: new WorkspaceAccess({ workspaces: workspaceLookup, authenticator }),
      proxy: new ReverseProxy({
        agent: this.#httpAgent,
        upstreamTimeoutMs: config.upstreamTimeout,
        log,
        onResponse: (status, startedAt) => this.metrics.httpResponse(status, startedAt),
      }),
      webSockets: new WebSocketProxy({ dialer, upstreamTimeoutMs: config.upstreamTimeout, log }),
      log,
    });
    this.#health = new HealthServer({
      listen: config.observabilityAddr,
      registry: this.metrics.registry,
      // A Redis outage after start does not make the server unready: a load balancer would
      // drain every server at once, and requests to agents held here work without Redis.
      notReadyReason: () =>
        this.#draining ? "shutting down" : this.#addresses ? undefined : this.#waitingForRedis ? "waiting for Redis" : "starting",
    });
  }

  get addresses(): ServerAddresses {
    if (!this.#addresses) throw new Error("server not started");
    return this.#addresses;
  }

  /** Base URL of the public HTTP listener (workspace URLs are built from it). */
  get publicBase(): string {
    return this.#publicBase;
  }

  async start(): Promise<ServerAddresses> {
    const observability = await this.#health.listen();
    let privateAddress: AddressInfo | undefined;
    const cluster = this.#cluster;
    if (cluster) {
      // A server that never saw the cluster state cannot authenticate anyone: wait for Redis.
      this.#waitingForRedis = true;
      await cluster.redis.waitUntilReady();
      this.#waitingForRedis = false;
      await cluster.events.start();
      privateAddress = await cluster.endpoint.listen();
      this.#privateAdvertised = formatHostPort(this.config.privateAdvertiseAddr ?? advertisedAddress(this.config.privateAddr, privateAddress.port));
      await cluster.presence.start();
    }
    const httpAddress = await this.#frontDoor.listen();
    const port = httpAddress.port;
    this.#publicBase = this.config.publicUrl ?? `http://${this.config.rootDomain}${port === 80 ? "" : `:${port}`}`;
    const agent = await this.#agentEndpoint.listen();
    this.#addresses = { http: httpAddress, agent, observability, ...(privateAddress ? { private: privateAddress } : {}) };
    if (this.adminTokenGenerated) {
      this.log.warn({ adminToken: this.adminToken }, "generated an admin token for this run; set WARREN_ADMIN_TOKEN to choose one");
    }
    this.log.info(
      {
        version: VERSION,
        serverId: this.serverId,
        http: `${httpAddress.address}:${httpAddress.port}`,
        agent: `${agent.address}:${agent.port}`,
        observability: `${observability.address}:${observability.port}`,
        publicUrl: this.#publicBase,
        rootDomain: this.config.rootDomain,
        ...(cluster && privateAddress
          ? { redis: cluster.redis.description, private: `${privateAddress.address}:${privateAddress.port}`, privateAdvertised: this.#privateAdvertised }
          : {}),
      },
      "warren server ready",
    );
    return this.#addresses;
  }

  /**
   * Graceful stop: unready, stop accepting, tell agents to go elsewhere, let requests in
   * flight finish within the shutdown timeout, then close everything.
   */
  async shutdown(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    this.log.info({ timeoutMs: this.config.shutdownTimeout }, "shutting down");
    this.#agentEndpoint.stopAccepting();
    const closed = this.#frontDoor.stopAccepting();
    // Keep-alive connections become idle as their last request ends: close them as they do.
    const sweeper = setInterval(() => this.#frontDoor.server.closeIdleConnections(), 200);
    const deadline = new Promise<void>((resolve) => setTimeout(resolve, this.config.shutdownTimeout).unref());
    await Promise.race([closed, deadline]);
    clearInterval(sweeper);
    for (const connection of [...this.registry.connections()]) {
      connection.disconnect(DisconnectReason.SERVER_DRAINING, "server is shutting down; reconnect to another server", 0);
    }
    this.#frontDoor.closeAllConnections();
    this.#httpAgent.destroy();
    this.#agentEndpoint.destroyAll();
    const cluster = this.#cluster;
    if (cluster) {
      // Our records go at once, so other servers stop forwarding here before they expire.
      await this.presence.stop();
      cluster.endpoint.close();
      cluster.peers.close();
      await cluster.redis.close();
    }
    await this.#health.close();
    this.log.info("stopped");
  }

  #tunnelStats(): { agents: number; idleStreams: number; streams: number } {
    let agents = 0;
    let idleStreams = 0;
    let streams = 0;
    for (const c of this.registry.connections()) {
      agents++;
      idleStreams += c.idleCount;
      streams += c.streamCount;
    }
    return { agents, idleStreams, streams };
  }
}

function formatHostPort(hp: HostPort): string {
  return hp.host.includes(":") ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** What other servers dial by default: the listen host, or this machine's first non-loopback IPv4 when it listens on all interfaces. */
function advertisedAddress(listen: HostPort, boundPort: number): HostPort {
  if (listen.host !== "0.0.0.0" && listen.host !== "::") return { host: listen.host, port: boundPort };
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? []) {
      if (a.family === "IPv4" && !a.internal) return { host: a.address, port: boundPort };
    }
  }
  return { host: "127.0.0.1", port: boundPort };
}
