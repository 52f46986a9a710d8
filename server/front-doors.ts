import type { IncomingMessage } from "node:http";
import type { Http2Session, IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { CiService } from "../shared/gen/warren/v1/ci_pb.js";
import { UserService } from "../shared/gen/warren/v1/user_pb.js";
import { WorkspaceService } from "../shared/gen/warren/v1/workspace_pb.js";
import type { Logger } from "../shared/logger.js";
import { VERSION } from "../shared/version.js";
import { ciApi } from "./api/ci-api.js";
import { createApiHandler } from "./api/api-handler.js";
import { userApi } from "./api/user-api.js";
import { workspaceApi, workspaceProto } from "./api/workspace-api.js";
import type { Authenticator } from "./auth/authenticator.js";
import type { CredentialLeases } from "./auth/credential-leases.js";
import { KeyPurpose, type SecretKeys } from "./auth/secret-keys.js";
import { SessionCookieSigner, withoutSessionCookies } from "./auth/session-cookie.js";
import { CiEnrollment } from "./ci/ci-enrollment.js";
import { CiIdTokenVerifier } from "./ci/ci-id-token-verifier.js";
import type { PrivateClient } from "./cluster/private-client.js";
import { defaultDataDir, type ServerConfig } from "./config.js";
import type { EnrollmentTokens } from "./control/enrollment-tokens.js";
import type { SshKeyManager } from "./control/ssh-key-manager.js";
import type { UserManager } from "./control/user-manager.js";
import type { WorkspaceManager } from "./control/workspace-manager.js";
import { workspaceIdOf, type WorkspaceRecord } from "./domain/records.js";
import { provisionalPrincipalOfKeyOwner, sshKeyOfCredential } from "./domain/ssh-key-owner.js";
import type { ControlStore, WorkspaceLookup } from "./domain/store.js";
import { mayReach } from "./domain/workspace-policy.js";
import type { EventBus } from "./events/event-bus.js";
import { AGENT_BINARY_NAME, AgentDownload } from "./http/agent-download.js";
import { BrowserLogin } from "./http/browser-login.js";
import { CliLogin } from "./http/cli-login.js";
import { FrontDoor } from "./http/front-door.js";
import { installAddresses } from "./http/install-script.js";
import { AccessTokenLogin } from "./http/login-provider.js";
import { PortForwardEndpoint } from "./http/port-forward.js";
import { ReverseProxy } from "./http/reverse-proxy.js";
import { rootFallback, rootHandler } from "./http/root-handler.js";
import { SshOverWebSocket } from "./http/ssh-over-websocket.js";
import { TunnelHttpAgent } from "./http/tunnel-http-agent.js";
import { UpstreamPool } from "./http/upstream-pool.js";
import { WebSocketProxy } from "./http/websocket-proxy.js";
import { WorkspaceAccess } from "./http/workspace-access.js";
import { LateBinding } from "./late-binding.js";
import type { ServerMetrics } from "./observability/metrics.js";
import { OidcLogin } from "./oidc/oidc-login.js";
import { oidcConfigOf } from "./oidc/oidc-settings.js";
import { TransactionSealer } from "./oidc/oidc-transaction.js";
import type { PublicOrigin } from "./public-origin.js";
import { KnownHostKeys } from "./ssh/known-host-keys.js";
import { LoginRateLimiter } from "./ssh/login-rate-limiter.js";
import { loadServerHostKey } from "./ssh/server-host-key.js";
import { CredentialSshAccess } from "./ssh/ssh-access.js";
import { SshFrontDoor } from "./ssh/ssh-front-door.js";
import { sshPortOf, sshUserOf, WorkspaceSshConnector } from "./ssh/workspace-ssh-client.js";
import { WorkspaceSshIdentities } from "./ssh/workspace-ssh-identity.js";
import type { TlsCredentials } from "./tls/tls-credentials.js";
import { agentHttp2Settings, isAgentRequest } from "./tunnel/agent-endpoint.js";
import type { Dialer } from "./tunnel/tunnel-dialer.js";
import type { TunnelRegistry } from "./tunnel/tunnel-registry.js";
import { apiSessionReader } from "./web/api-session.js";
import { Dashboard } from "./web/dashboard.js";

/** Failed SSH logins allowed per source address, workspace name or user within a minute. */
const SSH_MAX_FAILURES_PER_MINUTE = 20;

/** What the front doors are built from: every part below them exists already. */
export interface FrontDoorDeps {
  readonly config: ServerConfig;
  readonly log: Logger;
  readonly metrics: ServerMetrics;
  readonly tls: TlsCredentials | undefined;
  readonly keys: SecretKeys;
  /** Older secret keys still accepted (WARREN_SECRET_KEY_ACCEPTED). */
  readonly acceptedKeys: readonly SecretKeys[];
  readonly origin: PublicOrigin;
  readonly store: ControlStore;
  /** Workspace reads of the front doors (cluster: through a cache kept fresh by events). */
  readonly workspaceLookup: WorkspaceLookup;
  readonly events: EventBus;
  readonly authenticator: Authenticator;
  readonly leases: CredentialLeases;
  /** Every front door (HTTP, WebSocket, SSH) dials through this one. */
  readonly dialer: Dialer;
  readonly registry: TunnelRegistry;
  /** Cluster mode: pooled sessions to peer servers (forwarded sockets ride on them). */
  readonly peers: PrivateClient | undefined;
  readonly manager: WorkspaceManager;
  readonly users: UserManager;
  readonly sshKeys: SshKeyManager;
  readonly enrollmentTokens: EnrollmentTokens;
  readonly isConnected: (workspaceId: string) => Promise<boolean>;
  readonly urlsOf: (w: WorkspaceRecord) => string[];
  /** Agents' HTTP/2 streams that arrive on the public listener go here (the agent endpoint). */
  readonly agentStreams: { acceptStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void };
}

/** The ways in for people, browsers, CLIs and CI jobs: what the server starts, drains and counts. */
export interface FrontDoors {
  /** The agent binary the download routes serve (it may be missing: they answer 404). */
  readonly agentBinary: string;
  /** Opens the public HTTP(S) listener. */
  listenHttp(): Promise<AddressInfo>;
  /** Opens the SSH listener, unless it is off; the host key's fingerprint for the start log. */
  listenSsh(): Promise<{ address: AddressInfo; fingerprint: string } | undefined>;
  /** Closes the public and SSH listeners; resolves when they are closed. */
  stopAccepting(): Promise<unknown>;
  /** Closes kept-alive client connections that have no request in flight. */
  closeIdleConnections(): void;
  /** An agent connection drains: kept connections and pooled sockets on its session move to its next one. */
  moveOffAgentSession(session: Http2Session): void;
  /** A peer server drains: as for an agent, and WebSockets through it reconnect now. */
  moveOffPeerSession(session: Http2Session): void;
  readonly inFlightRequests: number;
  readonly openWebSockets: number;
  readonly openSshConnections: number;
  readonly sshSessions: number;
  /** Closes open WebSockets and every client connection (their clients reconnect elsewhere). */
  closeClientConnections(): void;
  /** The last step of the drain: every connection and pooled socket goes. */
  destroy(): void;
}

/**
 * Builds the public HTTP listener and everything behind it (workspace proxying, WebSockets,
 * port-forward, login, the API, the dashboard, agent downloads) and the SSH front door, in
 * dependency order; the one cycle (OIDC completes through the browser login, which lists OIDC
 * as a provider) is an explicit binding.
 */
export function buildFrontDoors(deps: FrontDoorDeps): FrontDoors {
  const { config, log, metrics, keys, acceptedKeys, origin, store, workspaceLookup, authenticator, leases, dialer, registry, users, manager } = deps;
  const publicBase = () => origin.base;

  // SSH: the TCP listener, `warren ssh --stdio` over a WebSocket, and the relay to the workspace's sshd.
  const identities = new WorkspaceSshIdentities({ store });
  const knownHosts = new KnownHostKeys({ store });
  const sshConnector = new WorkspaceSshConnector({
    dialer,
    identities,
    knownHosts,
    readyTimeoutMs: config.dialTimeout + 10_000,
    keepaliveIntervalMs: 15_000,
    log: log.child({ component: "ssh" }),
  });
  const sshAccess = new CredentialSshAccess({
    authenticateCaller: (token) => authenticator.authenticateCaller(token),
    getWorkspace: (name) => store.getWorkspace(name),
    findSshKeys: (fingerprint) => store.findSshKeys(fingerprint),
    principalOfKeyOwner: provisionalPrincipalOfKeyOwner,
    mayReach,
  });
  const hostKey = loadServerHostKey({ file: config.sshHostKey, dataDir: config.dataDir ?? defaultDataDir() });
  if (hostKey.generated) log.info({ path: hostKey.path, fingerprint: hostKey.fingerprint }, "generated the SSH host key");
  const sshFrontDoor = new SshFrontDoor({
    listen: config.sshAddr,
    hostKey: hostKey.privateKey,
    access: sshAccess,
    connectWorkspace: (workspace, connectionId) => sshConnector.connect(workspace, connectionId),
    dialer,
    getWorkspace: (name) => store.getWorkspace(name),
    watchWorkspaces: (onChange) => deps.events.subscribe((event) => event.type !== "token-revoked" && onChange(event.workspace)),
    rateLimiter: new LoginRateLimiter({ maxFailures: SSH_MAX_FAILURES_PER_MINUTE, windowMs: 60_000 }),
    loginGraceMs: config.sshLoginGraceTime,
    log: log.child({ component: "ssh" }),
    onLogin: (outcome) => metrics.sshLogins.inc({ outcome }),
    bindSession: ({ principal, workspace }, close) =>
      leases.register(
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
  const sshOverWebSocket = new SshOverWebSocket({
    access: sshAccess,
    accept: (stream, remote, decision) => sshFrontDoor.acceptAuthenticated(stream, remote, decision),
    log: log.child({ component: "ssh" }),
  });

  // Forwarded sockets ride on pooled sessions to peer servers: those stay reusable too.
  const acceptsNewWork = (session: Http2Session) => registry.acceptsNewWork(session) || (deps.peers?.owns(session) ?? false);
  const httpAgent = new TunnelHttpAgent(dialer, { freeSocketTimeoutMs: 4000, maxFreeSockets: 256, acceptsNewWork });
  // Each kept app connection holds one of the agent's streams (at most 500 per connection):
  // a few dozen per port serve a burst of one-request clients without crowding out the rest.
  const upstreams = new UpstreamPool({ maxIdlePerTarget: 32, idleTimeoutMs: 4000, acceptsNewWork });
  // Where the install script and the dashboard send agents: the public URLs, else this server's own.
  const addressesFor = (req: IncomingMessage) =>
    installAddresses({
      req,
      publicUrl: config.publicUrl,
      publicAgentUrl: config.publicAgentUrl,
      defaultPublicUrl: origin.base,
    });
  const sshPort = () => sshFrontDoor.address?.port;

  const sshOf = async (w: WorkspaceRecord) => ({ sshPort: sshPortOf(w), sshUser: sshUserOf(w), sshPublicKey: (await identities.get(w)).publicKey });
  const { isConnected, urlsOf } = deps;
  const ciEnrollment = new CiEnrollment({
    verifier: new CiIdTokenVerifier({ issuers: config.ciIssuers, defaultAudience: publicBase, log: log.child({ component: "ci" }) }),
    enrollmentTokens: deps.enrollmentTokens,
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
      router.service(UserService, userApi({ manager: users, sshKeys: deps.sshKeys, authenticator, enrollmentTokens: deps.enrollmentTokens }));
      router.service(
        CiService,
        ciApi({
          enrollment: ciEnrollment,
          toProto: workspaceProto({ urlsOf, isConnected, sshOf }),
          agentUrlFor: (req) => addressesFor(req as IncomingMessage).agentUrl,
          sshCommandFor: (req, workspace) => {
            const port = sshPort();
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

  const agentBinary = config.agentBinary ?? join(programDir(), AGENT_BINARY_NAME);
  const agentDownload = new AgentDownload({
    binaryPath: agentBinary,
    version: VERSION,
    addressesFor,
    log: log.child({ component: "agent-download" }),
  });

  // OIDC ends its login through the browser login, which offers OIDC as a provider: a real cycle.
  const loginBinding = new LateBinding<BrowserLogin>("the browser login", "buildFrontDoors");
  const oidcConfig = oidcConfigOf(config);
  const oidc = oidcConfig
    ? new OidcLogin({
        oidc: oidcConfig,
        publicBase,
        sealer: new TransactionSealer({ key: keys.derive(KeyPurpose.OidcTransaction) }),
        users,
        sessionTtlMs: config.sessionTtl,
        complete: (res, principal, returnTo) => loginBinding.get().completeLogin(res, principal, returnTo),
        log: log.child({ component: "oidc" }),
      })
    : undefined;
  const login = new BrowserLogin({
    rootDomain: config.rootDomain,
    publicBase,
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
  loginBinding.attach(login);
  const cliLogin = new CliLogin({
    publicBase,
    sessionOf: (req) => login.principalOf(req, config.rootDomain),
    principalOfCode: (code) => authenticator.principalOfSession(code),
    createAccessToken: (principal, name) => users.createAccessToken(principal, "", undefined, name),
    loginCodes: store,
    csrfKey: keys.derive(KeyPurpose.CliLoginCsrf),
    codeTtlMs: config.loginCodeTtl,
    log: log.child({ component: "cli-login" }),
  });
  authenticator.useBrowserSessions(apiSessionReader({ publicBase, sessionOf: (req) => login.principalOf(req as IncomingMessage, config.rootDomain) }));
  const dashboard = new Dashboard({
    publicBase,
    principalOf: (req) => login.principalOf(req, config.rootDomain),
    addressesFor,
    sshPort,
  });

  const webSockets = new WebSocketProxy({
    dialer,
    upstreamTimeoutMs: config.upstreamTimeout,
    log,
    filterCookie: withoutSessionCookies,
    onOutcome: (outcome) => metrics.webSocketUpgrades.inc({ outcome }),
  });
  const portForward = new PortForwardEndpoint({
    workspaces: workspaceLookup,
    authenticateCaller: (token) => authenticator.authenticateCaller(token),
    dialer,
    log: log.child({ component: "port-forward" }),
    // Each forwarded connection closes when its access token is revoked or expires, or its workspace goes.
    bind: (principal, workspace, close) =>
      leases.register(
        { tokenId: principal.tokenId, workspaceId: workspaceIdOf(workspace), expiresAt: principal.kind === "user" ? principal.expiresAt : undefined },
        close,
      ),
  });
  const frontDoor = new FrontDoor({
    listen: config.httpAddr,
    tls: deps.tls?.options,
    rootDomain: config.rootDomain,
    rootHandler: rootHandler({
      routes: [agentDownload.route, (req, res, path) => login.handleRoot(req, res, path), cliLogin.route.bind(cliLogin), ...(oidc ? [oidc.route.bind(oidc)] : []), dashboard.route.bind(dashboard)],
      api,
    }),
    access: new WorkspaceAccess({ workspaces: workspaceLookup, authenticator, rootDomain: config.rootDomain, sessions: login, leases }),
    proxy: new ReverseProxy({
      agent: httpAgent,
      upstreamTimeoutMs: config.upstreamTimeout,
      log,
      filterCookie: withoutSessionCookies,
    }),
    webSockets,
    login,
    ...(config.httpFastPath
      ? {
          fastPath: {
            dial: (target, earlyData) => dialer.dial({ name: target.workspace, id: target.workspaceId }, target.port, { earlyData }),
            upstreams,
            upstreamTimeoutMs: config.upstreamTimeout,
            filterCookie: withoutSessionCookies,
            onResponse: (status, startedAt) => metrics.httpResponse("workspace", status, startedAt),
          },
        }
      : {}),
    log,
    onResponse: (target, status, startedAt) => metrics.httpResponse(target, status, startedAt),
    onUpgradeDenied: () => metrics.webSocketUpgrades.inc({ outcome: "denied" }),
    rootUpgrades: (req, socket, head, path) => portForward.handleUpgrade(req, socket, head, path) || sshOverWebSocket.handleUpgrade(req, socket, head, path),
    // Browsers over HTTP/2, and agents: one URL (and one port) is all an agent needs.
    http2: {
      ...agentHttp2Settings(config.agentMaxStreams),
      takeStream: (stream, headers) => {
        if (!isAgentRequest(headers)) return false;
        deps.agentStreams.acceptStream(stream, headers);
        return true;
      },
    },
  });
  deps.tls?.attach(frontDoor);

  const moveOffAgentSession = (session: Http2Session) => {
    httpAgent.closeIdleSocketsOf(session);
    upstreams.closeIdleOf(session);
    frontDoor.moveOffSession(session);
  };
  return {
    agentBinary,
    listenHttp: () => frontDoor.listen(),
    async listenSsh() {
      // WARREN_SSH_ADDR=off turns off only the TCP listener: `warren ssh --stdio` still gets in.
      if (!config.sshAddr) return undefined;
      return { address: await sshFrontDoor.listen(), fingerprint: hostKey.fingerprint };
    },
    stopAccepting: () => Promise.all([frontDoor.stopAccepting(), sshFrontDoor.stopAccepting()]),
    closeIdleConnections: () => frontDoor.closeIdleConnections(),
    moveOffAgentSession,
    moveOffPeerSession(session) {
      moveOffAgentSession(session);
      webSockets.closeRidingOn(session);
    },
    get inFlightRequests() {
      return frontDoor.inFlight;
    },
    get openWebSockets() {
      return webSockets.openCount;
    },
    get openSshConnections() {
      return sshFrontDoor.connectionCount;
    },
    get sshSessions() {
      return sshFrontDoor.sessionCount;
    },
    closeClientConnections() {
      webSockets.closeAll();
      frontDoor.closeAllConnections();
    },
    destroy() {
      frontDoor.closeAllConnections();
      sshFrontDoor.closeAll();
      httpAgent.destroy();
      upstreams.close();
    },
  };
}

/**
 * For an SSH session opened with a registered key: re-reads whether the registration is still
 * there (the lease's periodic check, for a removal whose announcement was missed).
 */
function keyRegistrationStillThere(store: { findSshKeys(fingerprint: string): Promise<readonly { user: string }[]> }, tokenId: string) {
  const key = sshKeyOfCredential(tokenId);
  if (!key) return undefined;
  return async () => (await store.findSshKeys(key.fingerprint)).some((r) => r.user === key.user);
}

/** Directory of the running server program: dist/ in a checkout, /app in the image. */
function programDir(): string {
  // The program is an esbuild CommonJS bundle, where __dirname is the bundle's directory.
  return typeof __dirname === "string" ? __dirname : process.cwd();
}
