import { existsSync } from "node:fs";
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { DisconnectReason } from "../shared/gen/warren/v1/agent_pb.js";
import type { Logger } from "../shared/logger.js";
import { TUNNEL_WINDOWS } from "../shared/tunnel-windows.js";
import { VERSION } from "../shared/version.js";
import { CredentialLeases } from "./auth/credential-leases.js";
import { generateSecretKey, SecretKeys } from "./auth/secret-keys.js";
import type { Presence } from "./cluster/presence.js";
import type { ServerConfig } from "./config.js";
import { WorkspaceManager } from "./control/workspace-manager.js";
import type { WorkspaceRecord } from "./domain/records.js";
import type { ControlStore } from "./domain/store.js";
import { generateAdminToken } from "./domain/tokens.js";
import type { EventBus } from "./events/event-bus.js";
import { workspaceUrl } from "./http/workspace-host.js";
import { HealthServer } from "./observability/health-server.js";
import { ServerMetrics } from "./observability/metrics.js";
import { TunnelByteMeter } from "./observability/tunnel-byte-meter.js";
import { TlsCredentials } from "./tls/tls-credentials.js";
import { AgentEndpoint } from "./tunnel/agent-endpoint.js";
import { limitConnectionAge } from "./tunnel/max-connection-age.js";
import { TunnelDialer } from "./tunnel/tunnel-dialer.js";
import { TunnelRegistry } from "./tunnel/tunnel-registry.js";
import { buildControlLayer } from "./control-layer.js";
import { runDrainSequence } from "./drain-sequence.js";
import { buildFrontDoors, type FrontDoors } from "./front-doors.js";
import { createClusterMode } from "./cluster-mode.js";
import { createEmbeddedMode } from "./embedded-mode.js";
import { LateBinding } from "./late-binding.js";
import type { LocalState } from "./local-state.js";
import { PublicOrigin } from "./public-origin.js";
import { ServerLifecycle, ServerPhase } from "./server-phase.js";
import type { ServerMode } from "./server-mode.js";

/** The workspace sweep's pace (time to live, CI jobs gone, stuck terminations): see #sweep. */
const SWEEP_INTERVAL_MS = 1000;
const SWEEP_MAX_INTERVAL_MS = 10_000;
const SWEEP_MAX_SHARE = 200;

export interface ServerAddresses {
  readonly http: AddressInfo;
  /** Absent when the separate agent listener is off (agents come through the public listener). */
  readonly agent?: AddressInfo;
  readonly observability: AddressInfo;
  /** Absent when the SSH listener is off. */
  readonly ssh?: AddressInfo;
  /** Cluster mode: the private listener. */
  readonly private?: AddressInfo;
}

/**
 * How often every long-lived connection's credential is read again from the store: what a
 * missed revocation event or a store that lost its data leaves open closes within this time.
 */
const LEASE_REVALIDATE_INTERVAL_MS = 15_000;

/**
 * The composition root of warren-server: builds the parts in dependency order (the mode, the
 * control layer, the agent endpoint, the front doors), wires them, and owns start and shutdown.
 * The two real cycles (the registry tells presence, which reads the registry; the agent endpoint
 * moves the front doors' connections off a draining agent, the front doors hand it agents'
 * streams) are explicit bindings, attached as soon as the other side exists.
 */
export class WarrenServer {
  readonly config: ServerConfig;
  readonly log: Logger;
  readonly serverId: string;
  readonly adminToken: string;
  readonly adminTokenGenerated: boolean;
  readonly registry: TunnelRegistry;
  readonly metrics: ServerMetrics;
  readonly store: ControlStore;
  readonly events: EventBus;
  readonly workspaces: WorkspaceManager;
  readonly presence: Presence;
  /** Every long-lived connection, bound to the credential that opened it (server/auth/credential-leases.ts). */
  readonly leases = new CredentialLeases();
  readonly #mode: ServerMode;
  readonly #lifecycle: ServerLifecycle;
  readonly #origin: PublicOrigin;
  readonly #agentEndpoint: AgentEndpoint;
  readonly #frontDoors: FrontDoors;
  readonly #health: HealthServer;
  readonly #tls: TlsCredentials | undefined;
  readonly #secretKeyGenerated: boolean;
  #sweepTimer: NodeJS.Timeout | undefined;
  #revalidateTimer: NodeJS.Timeout | undefined;
  #addresses: ServerAddresses | undefined;

  /** The public origin (WARREN_PUBLIC_URL, or the root domain on the HTTP port), once started. */
  get publicUrl(): string {
    return this.#origin.known ? this.#origin.base : "";
  }

  /** `local`: what the data directory holds (see store/local-state.ts): the embedded store, generated secrets. */
  constructor(config: ServerConfig, log: Logger, local: Partial<Pick<LocalState, "embeddedStore" | "adminToken" | "secretKey">> = {}) {
    this.config = config;
    this.log = log;
    this.serverId = config.serverId ?? `${hostname()}-${randomBytes(3).toString("hex")}`;
    this.adminTokenGenerated = config.adminToken === undefined && local.adminToken === undefined;
    this.adminToken = config.adminToken ?? local.adminToken?.value ?? generateAdminToken();
    const tls =
      config.tlsCert && config.tlsKey
        ? new TlsCredentials({ certFile: config.tlsCert, keyFile: config.tlsKey, log: log.child({ component: "tls" }) })
        : undefined;
    this.#tls = tls;
    this.#secretKeyGenerated = config.secretKey === undefined && local.secretKey === undefined;
    const keys = new SecretKeys(config.secretKey ?? local.secretKey?.value ?? generateSecretKey());
    const acceptedKeys = config.secretKeyAccepted.map((secret) => new SecretKeys(secret));
    const lifecycle = new ServerLifecycle(log);
    this.#lifecycle = lifecycle;
    const origin = new PublicOrigin({ publicUrl: config.publicUrl, rootDomain: config.rootDomain });
    this.#origin = origin;
    const leases = this.leases;
    const metrics = new ServerMetrics();
    this.metrics = metrics;

    // The registry tells presence about first and last connections; presence (the mode's) reads the registry.
    const presenceBinding = new LateBinding<Presence>("presence", "WarrenServer's constructor once the mode is built");
    const registry = new TunnelRegistry({ onWorkspaceChange: (workspaceId, connected) => presenceBinding.get().workspaceChanged(workspaceId, connected) });
    this.registry = registry;
    const localDialer = new TunnelDialer({
      finder: registry,
      streamWaitMs: config.streamWaitTimeout,
      dialTimeoutMs: config.dialTimeout,
      maxMessageBytes: TUNNEL_WINDOWS.maxMessageBytes,
      // One port may hold at most half of a connection's streams in dials: a flood to a port
      // that never answers leaves the other ports streams to work with.
      maxDialsPerPort: Math.max(1, Math.floor(config.agentMaxStreams / 2)),
      log,
      onOutcome: (outcome) => metrics.dialOutcome(outcome),
    });

    // Embedded (one server: the data directory's store, or memory for tests) or cluster (Redis): the only place that chooses.
    const modeContext = { config, log, serverId: this.serverId, registry, localDialer, metrics, tls, embeddedStore: local.embeddedStore };
    const mode = config.redisUrl && config.clusterSecret ? createClusterMode(modeContext) : createEmbeddedMode(modeContext);
    this.#mode = mode;
    const { store, events, presence } = mode;
    presenceBinding.attach(presence);
    this.store = store;
    this.events = events;
    this.presence = presence;

    // The control layer: the rules that change state, and revocations closing what they opened.
    const isConnected = (workspaceId: string) => presence.isConnected(workspaceId);
    const control = buildControlLayer({ config, log, store, events, adminToken: this.adminToken, keys, acceptedKeys, registry, leases, isConnected });
    const { authenticator, manager, users, sshKeys, enrollmentTokens, agentControl } = control;
    this.workspaces = manager;
    const urlsOf = (w: WorkspaceRecord) => w.ports.map((p) => workspaceUrl(origin.base, config.rootDomain, w.name, p.port));

    // A draining agent connection moves the front doors' connections off it; the front doors hand agents' streams to the endpoint.
    const frontDoorsBinding = new LateBinding<FrontDoors>("the front doors", "WarrenServer's constructor after buildFrontDoors");
    const workspaceCache = mode.workspaceCache;
    this.#agentEndpoint = new AgentEndpoint({
      listen: config.agentAddr,
      tls: tls?.options,
      authenticator,
      registry,
      leases,
      serverId: this.serverId,
      maxStreams: config.agentMaxStreams,
      maxMessageBytes: TUNNEL_WINDOWS.maxMessageBytes,
      liveness: { intervalMs: config.agentPingInterval, timeoutMs: config.agentPingTimeout },
      urlsOf,
      variablesOf: (w) => manager.variablesOf(w),
      log: log.child({ component: "agent-endpoint" }),
      onConnection: (connection, _hello, workspace) => {
        metrics.agentConnects.inc();
        workspaceCache?.prime(workspace);
        connection.onDraining(() => frontDoorsBinding.get().moveOffAgentSession(connection.session));
        agentControl.attach(connection);
        limitConnectionAge(connection, config.agentMaxConnectionAge);
      },
      onControlMessage: (connection, message) => {
        if (message.msg.case === "workload") agentControl.onReport(connection, message.msg.value);
        else if (message.msg.case === "listeningPorts") agentControl.onListeningPorts(connection, message.msg.value);
      },
    });

    // Every front door (HTTP, WebSocket, SSH) dials through this one: its bytes are counted.
    const byteMeter = new TunnelByteMeter();
    const frontDoors = buildFrontDoors({
      config,
      log,
      metrics,
      tls,
      keys,
      acceptedKeys,
      origin,
      store,
      workspaceLookup: mode.workspaceLookup,
      events,
      authenticator,
      leases,
      dialer: byteMeter.wrap(mode.dialer),
      registry,
      peers: mode.cluster?.peers,
      manager,
      users,
      sshKeys,
      enrollmentTokens,
      isConnected,
      urlsOf,
      agentStreams: this.#agentEndpoint,
    });
    frontDoorsBinding.attach(frontDoors);
    this.#frontDoors = frontDoors;

    mode.attach({
      onRedisBack: () => {
        // Redis may have come back empty (restarted without persistence): what was cached or
        // is held on tokens and workspaces read before is checked against it again.
        authenticator.forgetAllTokens();
        void leases.revalidate().then((closed) => {
          if (closed > 0) log.warn({ closed }, "closed connections whose credential or workspace is gone after Redis came back");
        });
      },
      // A peer shutting down: requests on its kept-alive sockets finish, new ones go elsewhere;
      // client connections kept alive here send their next request to the agent's new
      // connection, and WebSockets through it reconnect now rather than at its shutdown timeout.
      onPeerSessionClosing: (session) => frontDoors.moveOffPeerSession(session),
    });
    if (tls) {
      tls.attach(this.#agentEndpoint);
      if (config.privateTls && mode.cluster) tls.attach(mode.cluster.endpoint);
    }

    const redis = mode.cluster?.redis;
    metrics.observe({
      tunnelStats: () => tunnelStats(registry),
      tunnelBytes: () => byteMeter.totals(),
      sshConnections: () => frontDoors.openSshConnections,
      sshSessions: () => frontDoors.sshSessions,
      httpInFlight: () => frontDoors.inFlightRequests,
      webSocketsOpen: () => frontDoors.openWebSockets,
      draining: () => lifecycle.draining,
      ...(config.redisUrl ? { redisAvailable: () => redis?.available ?? false } : {}),
    });
    this.#health = new HealthServer({
      listen: config.observabilityAddr,
      ...(config.observabilityTls && tls ? { tls: tls.options } : {}),
      registry: metrics.registry,
      // A Redis outage after start does not make the server unready: a load balancer would
      // drain every server at once, and requests to agents held here work without Redis.
      notReadyReason: () => lifecycle.notReadyReason(),
    });
    if (config.observabilityTls && tls) tls.attach(this.#health);
  }

  get addresses(): ServerAddresses {
    if (!this.#addresses) throw new Error("server not started");
    return this.#addresses;
  }

  /** Base URL of the public HTTP listener (workspace URLs are built from it). */
  get publicBase(): string {
    return this.publicUrl;
  }

  async start(): Promise<ServerAddresses> {
    const lifecycle = this.#lifecycle;
    const observability = await this.#health.listen();
    const privateListener = await this.#mode.start((waiting) => lifecycle.transition(waiting ? ServerPhase.WaitingForRedis : ServerPhase.Starting));
    const httpAddress = await this.#frontDoors.listenHttp();
    const publicUrl = this.#origin.listening(httpAddress.port, this.#tls !== undefined);
    this.#tls?.watch();
    const agent = await this.#agentEndpoint.listen();
    const ssh = await this.#frontDoors.listenSsh();
    this.#addresses = {
      http: httpAddress,
      ...(agent ? { agent } : {}),
      observability,
      ...(ssh ? { ssh: ssh.address } : {}),
      ...(privateListener ? { private: privateListener.address } : {}),
    };
    lifecycle.transition(ServerPhase.Ready);
    if (this.#secretKeyGenerated) {
      this.log.warn("generated a secret key for this run; set WARREN_SECRET_KEY to keep browser sessions across restarts (cluster: the same on every server)");
    }
    this.leases.start();
    this.#revalidateTimer = setInterval(() => void this.leases.revalidate(), LEASE_REVALIDATE_INTERVAL_MS);
    this.#revalidateTimer.unref();
    // Time to live, CI jobs gone and stuck terminations are driven by this clock tick.
    this.#sweepTimer = setTimeout(() => void this.#sweep(), SWEEP_INTERVAL_MS);
    this.#sweepTimer.unref();
    if (this.adminTokenGenerated) {
      this.log.warn({ adminToken: this.adminToken }, "generated an admin token for this run; set WARREN_ADMIN_TOKEN to choose one");
    }
    const agentBinary = this.#frontDoors.agentBinary;
    this.log.info(
      {
        version: VERSION,
        serverId: this.serverId,
        http: `${httpAddress.address}:${httpAddress.port}`,
        ...(agent ? { agent: `${agent.address}:${agent.port}` } : {}),
        observability: `${observability.address}:${observability.port}`,
        ...(ssh ? { ssh: `${ssh.address.address}:${ssh.address.port}`, sshHostKey: ssh.fingerprint } : {}),
        publicUrl,
        rootDomain: this.config.rootDomain,
        agentBinary,
        ...(privateListener
          ? { redis: privateListener.redis, private: `${privateListener.address.address}:${privateListener.address.port}`, privateAdvertised: privateListener.advertised }
          : {}),
      },
      "warren server ready",
    );
    if (!existsSync(agentBinary)) {
      this.log.warn({ agentBinary }, "the agent binary is missing: /-/agent/linux-x64 and install.sh answer 404 (npm run build:agent, or set WARREN_AGENT_BINARY)");
    }
    return this.#addresses;
  }

  /**
   * One pass of the workspace rules, then the next: a second later, or later still when the pass
   * was long (each pass reads every workspace; with thousands, once a second would cost a steady
   * share of a core for nothing): at most about 1/SWEEP_MAX_SHARE of the time, never more than
   * SWEEP_MAX_INTERVAL_MS apart.
   */
  async #sweep(): Promise<void> {
    const started = performance.now();
    await this.workspaces.sweep();
    if (this.#sweepTimer === undefined) return;
    const took = performance.now() - started;
    this.#sweepTimer = setTimeout(() => void this.#sweep(), Math.min(SWEEP_MAX_INTERVAL_MS, Math.max(SWEEP_INTERVAL_MS, took * SWEEP_MAX_SHARE)));
    this.#sweepTimer.unref();
  }

  /** Graceful stop: the sequence is drain-sequence.ts; this wires it to the modules it acts on. */
  async shutdown(options: { drainDelayMs?: number } = {}): Promise<void> {
    if (!this.#lifecycle.transition(ServerPhase.Draining)) return;
    clearTimeout(this.#sweepTimer);
    this.#sweepTimer = undefined;
    clearInterval(this.#revalidateTimer);
    const cluster = this.#mode.cluster;
    const frontDoors = this.#frontDoors;
    await runDrainSequence(
      {
        stopAccepting: () => {
          this.#agentEndpoint.stopAccepting();
          return frontDoors.stopAccepting();
        },
        closeIdleConnections: () => frontDoors.closeIdleConnections(),
        handOffAgents: (reason) => {
          const agents = [...this.registry.connections()];
          for (const connection of agents) connection.requestHandoff(reason);
          return agents.length;
        },
        usableAgents: () => usableAgents(this.registry),
        ...(cluster
          ? { cluster: { hasLivePeers: () => cluster.presence.hasLivePeers(), stopAccepting: () => cluster.endpoint.stopAccepting(), whenIdle: () => cluster.endpoint.whenIdle() } }
          : {}),
        inFlightRequests: () => frontDoors.inFlightRequests,
        openWebSockets: () => frontDoors.openWebSockets,
        openSshConnections: () => frontDoors.openSshConnections,
        closeClientConnections: () => frontDoors.closeClientConnections(),
        closeEverything: async () => {
          for (const connection of [...this.registry.connections()]) {
            connection.disconnect(DisconnectReason.SERVER_DRAINING, "server is shutting down; reconnect to another server", 0);
          }
          frontDoors.destroy();
          this.#agentEndpoint.destroyAll();
          await this.#mode.stop();
          await this.#health.close();
          this.leases.stop();
          this.#tls?.stop();
        },
      },
      { drainDelayMs: options.drainDelayMs ?? this.config.drainDelay, timeoutMs: this.config.shutdownTimeout },
      this.log,
    );
  }
}

function usableAgents(registry: TunnelRegistry): number {
  let n = 0;
  for (const c of registry.connections()) if (c.usable) n++;
  return n;
}

function tunnelStats(registry: TunnelRegistry): { agents: number; idleStreams: number; streams: number } {
  let agents = 0;
  let idleStreams = 0;
  let streams = 0;
  for (const c of registry.connections()) {
    agents++;
    idleStreams += c.idleCount;
    streams += c.streamCount;
  }
  return { agents, idleStreams, streams };
}
