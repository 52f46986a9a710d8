import type { IncomingMessage } from "node:http";
import { existsSync } from "node:fs";
import { hostname, networkInterfaces } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { DisconnectReason } from "../shared/gen/warren/v1/agent_pb.js";
import { UserService } from "../shared/gen/warren/v1/user_pb.js";
import { CiService } from "../shared/gen/warren/v1/ci_pb.js";
import { ciApi } from "./api/ci-api.js";
import { CiEnrollment } from "./ci/ci-enrollment.js";
import { CiIdTokenVerifier } from "./ci/ci-id-token-verifier.js";
import { EnrollmentTokens } from "./control/enrollment-tokens.js";
import { WorkspaceService } from "../shared/gen/warren/v1/workspace_pb.js";
import type { Logger } from "../shared/logger.js";
import type { HostPort } from "../shared/settings.js";
import { TUNNEL_WINDOWS } from "../shared/tunnel-windows.js";
import { VERSION } from "../shared/version.js";
import { createApiHandler } from "./api/api-handler.js";
import { userApi } from "./api/user-api.js";
import { workspaceApi, workspaceProto } from "./api/workspace-api.js";
import { Authenticator } from "./auth/authenticator.js";
import { CredentialLeases } from "./auth/credential-leases.js";
import { SecretBox } from "./auth/secret-box.js";
import { generateSecretKey, KeyPurpose, SecretKeys } from "./auth/secret-keys.js";
import { SessionCookieSigner, withoutSessionCookies } from "./auth/session-cookie.js";
import { generateAdminToken } from "./domain/tokens.js";
import type { Presence } from "./cluster/presence.js";
import { defaultDataDir, type ServerConfig } from "./config.js";
import { AgentControl } from "./control/agent-control.js";
import { SshKeyManager } from "./control/ssh-key-manager.js";
import { UserManager } from "./control/user-manager.js";
import { WorkspaceManager } from "./control/workspace-manager.js";
import { mayReach } from "./domain/workspace-policy.js";
import type { EventBus } from "./events/event-bus.js";
import { AGENT_BINARY_NAME, AgentDownload } from "./http/agent-download.js";
import { BrowserLogin } from "./http/browser-login.js";
import { CliLogin } from "./http/cli-login.js";
import { FrontDoor } from "./http/front-door.js";
import { installAddresses } from "./http/install-script.js";
import { OidcLogin } from "./oidc/oidc-login.js";
import { oidcConfigOf } from "./oidc/oidc-settings.js";
import { TransactionSealer } from "./oidc/oidc-transaction.js";
import { apiSessionReader } from "./web/api-session.js";
import { Dashboard } from "./web/dashboard.js";
import { AccessTokenLogin } from "./http/login-provider.js";
import { WorkspaceProxy } from "./proxy/workspace-proxy.js";
import type { Http2Session } from "node:http2";
import { limitConnectionAge } from "./tunnel/max-connection-age.js";
import { WebSocketProxy } from "./http/websocket-proxy.js";
import { WorkspaceAccess } from "./http/workspace-access.js";
import { workspaceUrl } from "./http/workspace-host.js";
import { HealthServer } from "./observability/health-server.js";
import { ServerMetrics } from "./observability/metrics.js";
import { TunnelByteMeter } from "./observability/tunnel-byte-meter.js";
import { rootFallback, rootHandler } from "./http/root-handler.js";
import { PortForwardEndpoint } from "./http/port-forward.js";
import { SshOverWebSocket } from "./http/ssh-over-websocket.js";
import { TlsCredentials } from "./tls/tls-credentials.js";
import { workspaceIdOf, type WorkspaceRecord } from "./domain/records.js";
import type { ControlStore } from "./domain/store.js";
import type { LocalState } from "./local-state.js";
import { warnUnlessRedisPersists } from "./store/redis-persistence.js";
import { WorkspaceCache } from "./store/workspace-cache.js";
import { KnownHostKeys } from "./ssh/known-host-keys.js";
import { LoginRateLimiter } from "./ssh/login-rate-limiter.js";
import { loadServerHostKey } from "./ssh/server-host-key.js";
import { CredentialSshAccess, type SshAccess } from "./ssh/ssh-access.js";
import { provisionalPrincipalOfKeyOwner, sshKeyOfCredential } from "./domain/ssh-key-owner.js";
import { SshFrontDoor } from "./ssh/ssh-front-door.js";
import { sshPortOf, sshUserOf, WorkspaceSshConnector } from "./ssh/workspace-ssh-client.js";
import { WorkspaceSshIdentities } from "./ssh/workspace-ssh-identity.js";
import { AgentEndpoint, agentHttp2Settings, isAgentRequest } from "./tunnel/agent-endpoint.js";
import { TunnelDialer, type Dialer } from "./tunnel/tunnel-dialer.js";
import { TunnelRegistry } from "./tunnel/tunnel-registry.js";
import { runDrainSequence } from "./drain-sequence.js";
import { createClusterMode } from "./cluster-mode.js";
import { createEmbeddedMode } from "./embedded-mode.js";
import type { ClusterParts, ServerModeContext } from "./server-mode.js";

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

/** The parts that exist in cluster mode only. */
/**
 * How often every long-lived connection's credential is read again from the store: what a
 * missed revocation event or a store that lost its data leaves open closes within this time.
 */
const LEASE_REVALIDATE_INTERVAL_MS = 15_000;

/** Failed SSH logins allowed per source address, workspace name or user within a minute. */
const SSH_MAX_FAILURES_PER_MINUTE = 20;
/**
 * For an SSH session opened with a registered key: re-reads whether the registration is still
 * there (the lease's periodic check, for a removal whose announcement was missed).
 */
function keyRegistrationStillThere(store: { findSshKeys(fingerprint: string): Promise<readonly { user: string }[]> }, tokenId: string) {
  const key = sshKeyOfCredential(tokenId);
  if (!key) return undefined;
  return async () => (await store.findSshKeys(key.fingerprint)).some((r) => r.user === key.user);
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
  readonly store: ControlStore;
  readonly events: EventBus;
  readonly workspaces: WorkspaceManager;
  readonly presence: Presence;
  readonly #cluster: ClusterParts | undefined;
  #privateAdvertised = "";
  #waitingForRedis = false;
  #workspaceCache: WorkspaceCache | undefined;
  readonly #agentEndpoint: AgentEndpoint;
  readonly #frontDoor: FrontDoor;
  readonly #health: HealthServer;
  readonly #proxy: WorkspaceProxy;
  readonly #webSockets: WebSocketProxy;
  readonly #byteMeter = new TunnelByteMeter();
  readonly #tls: TlsCredentials | undefined;
  readonly #agentBinary: string;
  readonly #secretKeyGenerated: boolean;
  #sweepTimer: NodeJS.Timeout | undefined;
  #revalidateTimer: NodeJS.Timeout | undefined;
  /** Every long-lived connection, bound to the credential that opened it (server/auth/credential-leases.ts). */
  readonly leases = new CredentialLeases();
  readonly #sshAccess: SshAccess;
  readonly #sshConnector: WorkspaceSshConnector;
  readonly #dialer: Dialer;
  #authenticator: Authenticator | undefined;
  #sshFrontDoor: SshFrontDoor | undefined;
  #publicBase = "";
  #draining = false;
  #addresses: ServerAddresses | undefined;

  /** The public origin (WARREN_PUBLIC_URL, or the root domain on the HTTP port), once started. */
  get publicUrl(): string {
    return this.#publicBase;
  }

  /** `local`: what the data directory holds (see store/local-state.ts): the embedded store, generated secrets. */
  constructor(config: ServerConfig, log: Logger, local: Partial<Pick<LocalState, "embeddedStore" | "adminToken" | "secretKey">> = {}) {
    this.config = config;
    this.log = log;
    this.serverId = config.serverId ?? `${hostname()}-${randomBytes(3).toString("hex")}`;
    this.adminTokenGenerated = config.adminToken === undefined && local.adminToken === undefined;
    this.adminToken = config.adminToken ?? local.adminToken?.value ?? generateAdminToken();
    this.#tls =
      config.tlsCert && config.tlsKey
        ? new TlsCredentials({ certFile: config.tlsCert, keyFile: config.tlsKey, log: log.child({ component: "tls" }) })
        : undefined;
    this.#secretKeyGenerated = config.secretKey === undefined && local.secretKey === undefined;
    const keys = new SecretKeys(config.secretKey ?? local.secretKey?.value ?? generateSecretKey());
    const acceptedKeys = config.secretKeyAccepted.map((secret) => new SecretKeys(secret));
    // The registry tells presence about first and last connections; presence is built below.
    const registry = new TunnelRegistry({ onWorkspaceChange: (workspaceId, connected) => this.presence.workspaceChanged(workspaceId, connected) });
    this.registry = registry;
    this.metrics = new ServerMetrics({
      tunnelStats: () => this.#tunnelStats(),
      tunnelBytes: () => this.#byteMeter.totals(),
      sshConnections: () => this.#sshFrontDoor?.connectionCount ?? 0,
      sshSessions: () => this.#sshFrontDoor?.sessionCount ?? 0,
      httpInFlight: () => this.#frontDoor.inFlight,
      webSocketsOpen: () => this.#webSockets.openCount,
      draining: () => this.#draining,
      ...(config.redisUrl ? { redisAvailable: () => this.#cluster?.redis.available ?? false } : {}),
    });
    const localDialer = new TunnelDialer({
      finder: registry,
      streamWaitMs: config.streamWaitTimeout,
      dialTimeoutMs: config.dialTimeout,
      maxMessageBytes: TUNNEL_WINDOWS.maxMessageBytes,
      // One port may hold at most half of a connection's streams in dials: a flood to a port
      // that never answers leaves the other ports streams to work with.
      maxDialsPerPort: Math.max(1, Math.floor(config.agentMaxStreams / 2)),
      log,
      onOutcome: (outcome) => this.metrics.dialOutcome(outcome),
    });

    // Embedded (one server: the data directory's store, or memory for tests) or cluster (Redis): the only place that chooses.
    const modeContext: ServerModeContext = {
      config,
      log,
      serverId: this.serverId,
      registry,
      localDialer,
      metrics: this.metrics,
      tls: this.#tls,
      embeddedStore: local.embeddedStore,
      privateAddress: () => this.#privateAdvertised,
      onRedisBack: () => {
        // Redis may have come back empty (restarted without persistence): what was cached or
        // is held on tokens and workspaces read before is checked against it again.
        this.#authenticator?.forgetAllTokens();
        void this.leases.revalidate().then((closed) => {
          if (closed > 0) this.log.warn({ closed }, "closed connections whose credential or workspace is gone after Redis came back");
        });
      },
      // A peer shutting down: requests on its kept-alive sockets finish, new ones go elsewhere;
      // client connections kept alive here send their next request to the agent's new
      // connection, and WebSockets through it reconnect now rather than at its shutdown timeout.
      onPeerSessionClosing: (session) => {
        this.#proxy.moveOffSession(session);
        this.#webSockets.closeRidingOn(session);
      },
    };
    const mode = config.redisUrl && config.clusterSecret ? createClusterMode(modeContext) : createEmbeddedMode(modeContext);
    const store = mode.store;
    const workspaceLookup = mode.workspaceLookup;
    let dialer = mode.dialer;
    this.events = mode.events;
    this.presence = mode.presence;
    this.#workspaceCache = mode.workspaceCache;
    this.#cluster = mode.cluster;
    this.store = store;
    const authenticator = new Authenticator({ workspaces: store, tokens: store, adminToken: this.adminToken });
    this.#authenticator = authenticator;
    const leases = this.leases;
    const isConnected = (workspaceId: string) => this.presence.isConnected(workspaceId);
    const manager = new WorkspaceManager({
      workspaces: store,
      tokens: store,
      users: store,
      events: this.events,
      secretBox: new SecretBox(
        keys.derive(KeyPurpose.Variables),
        acceptedKeys.map((k) => k.derive(KeyPurpose.Variables)),
      ),
      agentTokenTtlMs: config.agentTokenTtl,
      isConnected,
      log: log.child({ component: "control" }),
    });
    this.workspaces = manager;
    const users = new UserManager({ users: store, tokens: store, events: this.events, log: log.child({ component: "control" }) });
    const sshKeys = new SshKeyManager({ keys: store, users: store, log: log.child({ component: "control" }), events: this.events });
    const agentControl = new AgentControl({
      manager,
      workspaces: store,
      connections: registry,
      events: this.events,
      log: log.child({ component: "control" }),
    });
    // Every front door (HTTP, WebSocket, SSH) dials through this one: its bytes are counted.
    dialer = this.#byteMeter.wrap(dialer);
    this.#dialer = dialer;
    const identities = new WorkspaceSshIdentities({ store });
    const knownHosts = new KnownHostKeys({ store });
    this.#sshConnector = new WorkspaceSshConnector({
      dialer,
      identities,
      knownHosts,
      readyTimeoutMs: config.dialTimeout + 10_000,
      keepaliveIntervalMs: 15_000,
      log: log.child({ component: "ssh" }),
    });
    this.#sshAccess = new CredentialSshAccess({
      authenticateCaller: (token) => authenticator.authenticateCaller(token),
      getWorkspace: (name) => store.getWorkspace(name),
      findSshKeys: (fingerprint) => store.findSshKeys(fingerprint),
      principalOfKeyOwner: provisionalPrincipalOfKeyOwner,
      mayReach,
    });
    this.events.subscribe((event) => {
      if (event.type === "workspace-revoked") {
        // By token (rotated) or by incarnation (deleted, terminated); only events of servers
        // older than incarnations name the workspace alone.
        if (event.tokenId) leases.revokeToken(event.tokenId, event.reason);
        else if (event.workspaceId) leases.revokeWorkspace(event.workspaceId, event.reason);
        else registry.disconnectWorkspace(event.workspace, DisconnectReason.REVOKED, event.reason);
      } else if (event.type === "workspace-created") {
        registry.closeOtherIncarnations(event.workspace, event.workspaceId);
      } else if (event.type === "token-revoked") {
        authenticator.forgetToken(event.tokenId);
        leases.revokeToken(event.tokenId, sshKeyOfCredential(event.tokenId) ? "the SSH key was removed" : "the access token was revoked");
      }
    });
    const urlsOf = (w: WorkspaceRecord) => w.ports.map((p) => workspaceUrl(this.#publicBase, config.rootDomain, w.name, p.port));

    this.#agentEndpoint = new AgentEndpoint({
      listen: config.agentAddr,
      tls: this.#tls?.options,
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
        this.metrics.agentConnects.inc();
        this.#workspaceCache?.prime(workspace);
        connection.onDraining(() => {
          this.#proxy.moveOffSession(connection.session);
        });
        agentControl.attach(connection);
        limitConnectionAge(connection, config.agentMaxConnectionAge);
      },
      onControlMessage: (connection, message) => {
        if (message.msg.case === "workload") agentControl.onReport(connection, message.msg.value);
        else if (message.msg.case === "listeningPorts") agentControl.onListeningPorts(connection, message.msg.value);
      },
    });

    // Forwarded sockets ride on pooled sessions to peer servers: those stay reusable too.
    const acceptsNewWork = (session: Http2Session) => registry.acceptsNewWork(session) || (this.#cluster?.peers.owns(session) ?? false);
    this.#proxy = new WorkspaceProxy({
      dial: (target, earlyData) => dialer.dial({ name: target.workspace, id: target.workspaceId }, target.port, { earlyData }),
      upstreamTimeoutMs: config.upstreamTimeout,
      acceptsNewWork,
      filterCookie: withoutSessionCookies,
      onResponse: (status, startedAt) => this.metrics.httpResponse("workspace", status, startedAt),
      log: log.child({ component: "proxy" }),
    });
    const sshOf = async (w: WorkspaceRecord) => ({ sshPort: sshPortOf(w), sshUser: sshUserOf(w), sshPublicKey: (await identities.get(w)).publicKey });
    const enrollmentTokens = new EnrollmentTokens({ tokens: store, users: store, log: log.child({ component: "control" }) });
    const ciEnrollment = new CiEnrollment({
      verifier: new CiIdTokenVerifier({ issuers: config.ciIssuers, defaultAudience: () => this.#publicBase, log: log.child({ component: "ci" }) }),
      enrollmentTokens,
      workspaces: manager,
      authenticator,
      provisionUser: (name) => users.provisionUser(name),
      userExists: async (name) => (await store.getUser(name)) !== undefined,
      log: log.child({ component: "ci" }),
    });
    const api = createApiHandler({
      routes: (router) => {
        router.service(
          WorkspaceService,
          workspaceApi({
            manager,
            authenticator,
            urlsOf,
            isConnected,
            sshOf,
            forgetHostKey: (workspace) => knownHosts.forget(workspace),
          }),
        );
        router.service(UserService, userApi({ manager: users, sshKeys, authenticator, enrollmentTokens }));
        router.service(
          CiService,
          ciApi({
            enrollment: ciEnrollment,
            toProto: workspaceProto({ urlsOf, isConnected, sshOf }),
            agentUrlFor: (req) => addressesFor(req as IncomingMessage).agentUrl,
            sshCommandFor: (req, workspace) => {
              const port = this.#addresses?.ssh?.port;
              if (!port) return "";
              const host = new URL(addressesFor(req as IncomingMessage).publicUrl).hostname;
              // ssh does not resolve *.localhost the way browsers and curl do.
              return `ssh -p ${port} ${workspace}@${host === "localhost" || host.endsWith(".localhost") ? "127.0.0.1" : host}`;
            },
          }),
        );
      },
      fallback: rootFallback,
      log: log.child({ component: "api" }),
    });
    this.#agentBinary = config.agentBinary ?? join(programDir(), AGENT_BINARY_NAME);
    // Where the install script and the dashboard send agents: the public URLs, else this server's own.
    const addressesFor = (req: IncomingMessage) =>
      installAddresses({
        req,
        publicUrl: config.publicUrl,
        publicAgentUrl: config.publicAgentUrl,
        defaultPublicUrl: this.#publicBase,
      });
    const agentDownload = new AgentDownload({
      binaryPath: this.#agentBinary,
      version: VERSION,
      addressesFor,
      log: log.child({ component: "agent-download" }),
    });
    const oidcConfig = oidcConfigOf(config);
    const oidc = oidcConfig
      ? new OidcLogin({
          oidc: oidcConfig,
          publicBase: () => this.#publicBase,
          sealer: new TransactionSealer({ key: keys.derive(KeyPurpose.OidcTransaction) }),
          users,
          sessionTtlMs: config.sessionTtl,
          complete: (res, principal, returnTo) => login.completeLogin(res, principal, returnTo),
          log: log.child({ component: "oidc" }),
        })
      : undefined;
    const login: BrowserLogin = new BrowserLogin({
      rootDomain: config.rootDomain,
      publicBase: () => this.#publicBase,
      providers: [...(oidc ? [oidc] : []), new AccessTokenLogin(authenticator)],
      authenticator,
      loginCodes: store,
      workspaces: workspaceLookup,
      signer: new SessionCookieSigner({
        key: keys.derive(KeyPurpose.SessionCookie),
        acceptedKeys: acceptedKeys.map((k) => k.derive(KeyPurpose.SessionCookie)),
      }),
      sessionTtlMs: config.sessionTtl,
      loginCodeTtlMs: config.loginCodeTtl,
      log: log.child({ component: "login" }),
      endSession: (tokenId) => users.endBrowserSession(tokenId),
    });
    const cliLogin = new CliLogin({
      publicBase: () => this.#publicBase,
      sessionOf: (req) => login.principalOf(req, config.rootDomain),
      principalOfCode: (code) => authenticator.principalOfSession(code),
      createAccessToken: (principal, name) => users.createAccessToken(principal, "", undefined, name),
      loginCodes: store,
      csrfKey: keys.derive(KeyPurpose.CliLoginCsrf),
      codeTtlMs: config.loginCodeTtl,
      log: log.child({ component: "cli-login" }),
    });
    authenticator.useBrowserSessions(apiSessionReader({ publicBase: () => this.#publicBase, sessionOf: (req) => login.principalOf(req as IncomingMessage, config.rootDomain) }));
    const dashboard = new Dashboard({
      publicBase: () => this.#publicBase,
      principalOf: (req) => login.principalOf(req, config.rootDomain),
      addressesFor,
      sshPort: () => this.#addresses?.ssh?.port,
    });
    this.#webSockets = new WebSocketProxy({
      dialer,
      upstreamTimeoutMs: config.upstreamTimeout,
      log,
      filterCookie: withoutSessionCookies,
      onOutcome: (outcome) => this.metrics.webSocketUpgrades.inc({ outcome }),
    });
    const portForward = new PortForwardEndpoint({
      workspaces: workspaceLookup,
      authenticateCaller: (token) => authenticator.authenticateCaller(token),
      dialer,
      log: log.child({ component: "port-forward" }),
      // Each forwarded connection closes when its access token is revoked or expires, or its workspace goes.
      bind: (principal, workspace, close) =>
        this.leases.register(
          { tokenId: principal.tokenId, workspaceId: workspaceIdOf(workspace), expiresAt: principal.kind === "user" ? principal.expiresAt : undefined },
          close,
        ),
    });
    const sshOverWebSocket = new SshOverWebSocket({
      access: this.#sshAccess,
      accept: (stream, remote, decision) => {
        if (!this.#sshFrontDoor) {
          stream.destroy();
          return;
        }
        this.#sshFrontDoor.acceptAuthenticated(stream, remote, decision);
      },
      log: log.child({ component: "ssh" }),
    });
    this.#frontDoor = new FrontDoor({
      listen: config.httpAddr,
      tls: this.#tls?.options,
      rootDomain: config.rootDomain,
      rootHandler: rootHandler({
        routes: [agentDownload.route, (req, res, path) => login.handleRoot(req, res, path), cliLogin.route.bind(cliLogin), ...(oidc ? [oidc.route.bind(oidc)] : []), dashboard.route.bind(dashboard)],
        api,
      }),
      access: new WorkspaceAccess({ workspaces: workspaceLookup, authenticator, rootDomain: config.rootDomain, sessions: login, leases }),
      proxy: this.#proxy,
      webSockets: this.#webSockets,
      login,
      fastPath: config.httpFastPath,
      log,
      onResponse: (target, status, startedAt) => this.metrics.httpResponse(target, status, startedAt),
      onUpgradeDenied: () => this.metrics.webSocketUpgrades.inc({ outcome: "denied" }),
      rootUpgrades: (req, socket, head, path) => portForward.handleUpgrade(req, socket, head, path) || sshOverWebSocket.handleUpgrade(req, socket, head, path),
      // Browsers over HTTP/2, and agents: one URL (and one port) is all an agent needs.
      http2: {
        ...agentHttp2Settings(config.agentMaxStreams),
        takeStream: (stream, headers) => {
          if (!isAgentRequest(headers)) return false;
          this.#agentEndpoint.acceptStream(stream, headers);
          return true;
        },
      },
    });
    if (this.#tls) {
      this.#tls.attach(this.#agentEndpoint);
      this.#tls.attach(this.#frontDoor);
      if (config.privateTls && this.#cluster) this.#tls.attach(this.#cluster.endpoint);
    }
    this.#health = new HealthServer({
      listen: config.observabilityAddr,
      ...(config.observabilityTls && this.#tls ? { tls: this.#tls.options } : {}),
      registry: this.metrics.registry,
      // A Redis outage after start does not make the server unready: a load balancer would
      // drain every server at once, and requests to agents held here work without Redis.
      notReadyReason: () =>
        this.#draining ? "shutting down" : this.#addresses ? undefined : this.#waitingForRedis ? "waiting for Redis" : "starting",
    });
    if (config.observabilityTls && this.#tls) this.#tls.attach(this.#health);
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
      await warnUnlessRedisPersists(cluster.redis, this.log.child({ component: "redis" }));
      await cluster.events.start();
      privateAddress = await cluster.endpoint.listen();
      this.#privateAdvertised = formatHostPort(this.config.privateAdvertiseAddr ?? advertisedAddress(this.config.privateAddr, privateAddress.port));
      await cluster.presence.start();
    }
    const httpAddress = await this.#frontDoor.listen();
    const port = httpAddress.port;
    const scheme = this.#tls ? "https" : "http";
    const defaultPort = this.#tls ? 443 : 80;
    this.#publicBase = this.config.publicUrl ?? `${scheme}://${this.config.rootDomain}${port === defaultPort ? "" : `:${port}`}`;
    this.#tls?.watch();
    const agent = await this.#agentEndpoint.listen();
    const ssh = await this.#startSsh();
    this.#addresses = {
      http: httpAddress,
      ...(agent ? { agent } : {}),
      observability,
      ...(ssh ? { ssh: ssh.address } : {}),
      ...(privateAddress ? { private: privateAddress } : {}),
    };
    if (this.#secretKeyGenerated) {
      this.log.warn("generated a secret key for this run; set WARREN_SECRET_KEY to keep browser sessions across restarts (cluster: the same on every server)");
    }
    this.leases.start();
    this.#revalidateTimer = setInterval(() => void this.leases.revalidate(), LEASE_REVALIDATE_INTERVAL_MS);
    this.#revalidateTimer.unref();
    // Time to live and stuck terminations are driven by this clock tick.
    this.#sweepTimer = setInterval(() => void this.workspaces.sweep(), 1000);
    this.#sweepTimer.unref();
    if (this.adminTokenGenerated) {
      this.log.warn({ adminToken: this.adminToken }, "generated an admin token for this run; set WARREN_ADMIN_TOKEN to choose one");
    }
    this.log.info(
      {
        version: VERSION,
        serverId: this.serverId,
        http: `${httpAddress.address}:${httpAddress.port}`,
        ...(agent ? { agent: `${agent.address}:${agent.port}` } : {}),
        observability: `${observability.address}:${observability.port}`,
        ...(ssh ? { ssh: `${ssh.address.address}:${ssh.address.port}`, sshHostKey: ssh.fingerprint } : {}),
        publicUrl: this.#publicBase,
        rootDomain: this.config.rootDomain,
        agentBinary: this.#agentBinary,
        ...(cluster && privateAddress
          ? { redis: cluster.redis.description, private: `${privateAddress.address}:${privateAddress.port}`, privateAdvertised: this.#privateAdvertised }
          : {}),
      },
      "warren server ready",
    );
    if (!existsSync(this.#agentBinary)) {
      this.log.warn({ agentBinary: this.#agentBinary }, "the agent binary is missing: /-/agent/linux-x64 and install.sh answer 404 (npm run build:agent, or set WARREN_AGENT_BINARY)");
    }
    return this.#addresses;
  }

  /** Loads (or generates) the host key and opens the SSH listener, unless it is off. */
  async #startSsh(): Promise<{ address: AddressInfo; fingerprint: string } | undefined> {
    const config = this.config;

    const hostKey = loadServerHostKey({ file: config.sshHostKey, dataDir: config.dataDir ?? defaultDataDir() });
    if (hostKey.generated) this.log.info({ path: hostKey.path, fingerprint: hostKey.fingerprint }, "generated the SSH host key");
    const store = this.store;
    this.#sshFrontDoor = new SshFrontDoor({
      listen: config.sshAddr,
      hostKey: hostKey.privateKey,
      access: this.#sshAccess,
      connectWorkspace: (workspace, connectionId) => this.#sshConnector.connect(workspace, connectionId),
      dialer: this.#dialer,
      getWorkspace: (name) => store.getWorkspace(name),
      watchWorkspaces: (onChange) => this.events.subscribe((event) => event.type !== "token-revoked" && onChange(event.workspace)),
      rateLimiter: new LoginRateLimiter({ maxFailures: SSH_MAX_FAILURES_PER_MINUTE, windowMs: 60_000 }),
      loginGraceMs: config.sshLoginGraceTime,
      log: this.log.child({ component: "ssh" }),
      onLogin: (outcome) => this.metrics.sshLogins.inc({ outcome }),
      bindSession: ({ principal, workspace }, close) =>
        this.leases.register(
          {
            // A key login is bound to its user's registration of the key (RemoveSshKey revokes it).
            tokenId: principal.tokenId,
            workspaceId: workspaceIdOf(workspace),
            expiresAt: principal.kind === "user" ? principal.expiresAt : undefined,
            stillValid: keyRegistrationStillThere(store, principal.tokenId),
          },
          close,
        ),
    });
    // WARREN_SSH_ADDR=off turns off only the TCP listener: `warren ssh --stdio` still gets in.
    if (!config.sshAddr) return undefined;
    return { address: await this.#sshFrontDoor.listen(), fingerprint: hostKey.fingerprint };
  }

  /** Graceful stop: the sequence is drain-sequence.ts; this wires it to the modules it acts on. */
  async shutdown(options: { drainDelayMs?: number } = {}): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    clearInterval(this.#sweepTimer);
    clearInterval(this.#revalidateTimer);
    const cluster = this.#cluster;
    await runDrainSequence(
      {
        stopAccepting: () => {
          this.#agentEndpoint.stopAccepting();
          return Promise.all([this.#frontDoor.stopAccepting(), this.#sshFrontDoor?.stopAccepting()]);
        },
        closeIdleConnections: () => this.#frontDoor.closeIdleConnections(),
        handOffAgents: (reason) => {
          const agents = [...this.registry.connections()];
          for (const connection of agents) connection.requestHandoff(reason);
          return agents.length;
        },
        usableAgents: () => this.#usableAgents(),
        ...(cluster
          ? { cluster: { hasLivePeers: () => cluster.presence.hasLivePeers(), stopAccepting: () => cluster.endpoint.stopAccepting(), whenIdle: () => cluster.endpoint.whenIdle() } }
          : {}),
        inFlightRequests: () => this.#frontDoor.inFlight,
        openWebSockets: () => this.#webSockets.openCount,
        openSshConnections: () => this.#sshFrontDoor?.connectionCount ?? 0,
        closeClientConnections: () => {
          this.#webSockets.closeAll();
          this.#frontDoor.closeAllConnections();
        },
        closeEverything: async () => {
          for (const connection of [...this.registry.connections()]) {
            connection.disconnect(DisconnectReason.SERVER_DRAINING, "server is shutting down; reconnect to another server", 0);
          }
          this.#frontDoor.closeAllConnections();
          this.#sshFrontDoor?.closeAll();
          this.#proxy.destroyAll();
          this.#agentEndpoint.destroyAll();
          if (cluster) {
            // Our records go at once, so other servers stop forwarding here before they expire.
            await this.presence.stop();
            cluster.endpoint.close();
            cluster.peers.close();
            await cluster.redis.close();
          }
          await this.#health.close();
          this.leases.stop();
          this.#tls?.stop();
        },
      },
      { drainDelayMs: options.drainDelayMs ?? this.config.drainDelay, timeoutMs: this.config.shutdownTimeout },
      this.log,
    );
  }

  #usableAgents(): number {
    let n = 0;
    for (const c of this.registry.connections()) if (c.usable) n++;
    return n;
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

/** Directory of the running server program: dist/ in a checkout, /app in the image. */
function programDir(): string {
  // The program is an esbuild CommonJS bundle, where __dirname is the bundle's directory.
  return typeof __dirname === "string" ? __dirname : process.cwd();
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

/** The one-server store: the embedded one opened from the data directory, memory only when asked for. */
