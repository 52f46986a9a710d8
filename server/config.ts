import { DEFAULT_LIVENESS } from "../shared/liveness.js";
import { ErrorCode, WarrenError } from "../shared/errors.js";
import { formatDuration, parseDuration, parseHostPort, parseIntegerIn, parseNonEmpty, parseBoolean, parseOneOf, parseReadableFile, setting, type HostPort, type SettingsOf } from "../shared/settings.js";
import { homedir } from "node:os";
import { join } from "node:path";
import { LOG_FORMATS, type LogFormat } from "../shared/log-format.js";
import { LOG_LEVELS } from "../shared/logger.js";
import type { LevelWithSilent } from "pino";
import { parseRedisUrl, type RedisTarget } from "./cluster/redis-url.js";
import { OIDC_SETTINGS, oidcConfigOf } from "./oidc/oidc-settings.js";
import { CI_SETTINGS } from "./ci/ci-issuer-settings.js";

const DNS_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

function parseRootDomain(raw: string): string {
  const v = raw.trim().toLowerCase().replace(/\.$/, "");
  if (!DNS_NAME.test(v)) throw new Error(`"${raw}" is not a DNS name`);
  return v;
}

function parsePublicUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`"${raw}" is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error("must be an http or https URL");
  if (url.pathname !== "/" || url.search || url.hash) throw new Error("must have no path, query or fragment");
  return url.origin;
}

function duration(min: number, max: number) {
  return (raw: string): number => {
    const ms = parseDuration(raw);
    if (ms < min || ms > max) throw new Error(`${raw} is out of range ${formatDuration(min)}-${formatDuration(max)}`);
    return ms;
  };
}

const optional = (raw: string): string | undefined => parseNonEmpty(raw);

/** Comma-separated secrets, each at least `minChars` long (earlier secrets still accepted). */
function secretList(minChars: number) {
  return (raw: string): string[] => {
    const secrets = raw.split(",").map((s) => s.trim()).filter(Boolean);
    const short = secrets.findIndex((s) => s.length < minChars);
    if (short >= 0) throw new Error(`secret ${short + 1} must be at least ${minChars} characters`);
    return secrets;
  };
}

/** host:port, or "off" to run without that listener. */
function parseListenerOrOff(raw: string): HostPort | undefined {
  return raw.trim().toLowerCase() === "off" ? undefined : parseHostPort(raw);
}

/** The default data directory: $XDG_STATE_HOME/warren, else ~/.local/state/warren. */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  const state = env["XDG_STATE_HOME"] || join(homedir(), ".local", "state");
  return join(state, "warren");
}

export const STORE_KINDS = ["embedded", "redis", "memory"] as const;
export type StoreKind = (typeof STORE_KINDS)[number];

/** The store a config selects: WARREN_STORE, else redis with WARREN_REDIS_URL, else embedded. */
export function storeKindOf(config: { store?: StoreKind | undefined; redisUrl?: unknown }): StoreKind {
  return config.store ?? (config.redisUrl ? "redis" : "embedded");
}

/** The data directory a config selects. */
export function dataDirOf(config: { dataDir?: string | undefined }): string {
  return config.dataDir ?? defaultDataDir();
}

/** Settings of warren-server. Names and defaults are part of the public contract. */
export const SERVER_SETTINGS = {
  rootDomain: setting({
    key: "rootDomain",
    flag: "root-domain",
    env: "WARREN_ROOT_DOMAIN",
    description: "root domain; workspaces are {port}-{workspace}.{root}",
    default: "warren.localhost",
    parse: parseRootDomain,
  }),
  httpAddr: setting({
    key: "httpAddr",
    flag: "http-addr",
    env: "WARREN_HTTP_ADDR",
    description: "public HTTP listener (workspaces, control API, agent download)",
    default: parseHostPort("127.0.0.1:8080"),
    defaultText: "127.0.0.1:8080",
    parse: parseHostPort,
  }),
  agentAddr: setting<HostPort | undefined>({
    key: "agentAddr",
    flag: "agent-addr",
    env: "WARREN_AGENT_ADDR",
    description: "separate agent gRPC listener; agents also connect through the public listener (WARREN_HTTP_ADDR), so off is enough for most",
    default: parseHostPort("127.0.0.1:8150"),
    defaultText: "127.0.0.1:8150",
    parse: parseListenerOrOff,
  }),
  observabilityAddr: setting({
    key: "observabilityAddr",
    flag: "observability-addr",
    env: "WARREN_OBSERVABILITY_ADDR",
    description: "metrics and health listener (/metrics, /healthz, /readyz)",
    default: parseHostPort("127.0.0.1:8151"),
    defaultText: "127.0.0.1:8151",
    parse: parseHostPort,
  }),
  observabilityTls: setting({
    key: "observabilityTls",
    flag: "observability-tls",
    env: "WARREN_OBSERVABILITY_TLS",
    description:
      "serve /metrics, /healthz and /readyz over TLS with WARREN_TLS_CERT (off: Prometheus and kubelet probes usually scrape plain HTTP inside the pod network; with it on, probes need scheme HTTPS)",
    default: false,
    boolean: true,
    parse: parseBoolean,
  }),
  publicUrl: setting<string | undefined>({
    key: "publicUrl",
    flag: "public-url",
    env: "WARREN_PUBLIC_URL",
    description: "scheme and port people use to reach the HTTP listener, e.g. https://ws.example.com (workspace URLs are built from it)",
    defaultText: "http://{root}:{http port}",
    parse: parsePublicUrl,
  }),
  publicAgentUrl: setting<string | undefined>({
    key: "publicAgentUrl",
    flag: "public-agent-url",
    env: "WARREN_PUBLIC_AGENT_URL",
    description: "address agents use to reach the server, e.g. https://ws.example.com (the agent download's instructions show it)",
    defaultText: "the public URL",
    parse: parsePublicUrl,
  }),
  agentBinary: setting<string | undefined>({
    key: "agentBinary",
    flag: "agent-binary",
    env: "WARREN_AGENT_BINARY",
    description: "the single-file agent served at /-/agent/linux-x64 (built by npm run build:agent); the linux-arm64 one, served at /-/agent/linux-arm64, is read beside it (warren-agent-linux-arm64)",
    defaultText: "warren-agent-linux-x64 beside the server program",
    parse: parseNonEmpty,
  }),
  adminToken: setting<string | undefined>({
    key: "adminToken",
    flag: "admin-token",
    env: "WARREN_ADMIN_TOKEN",
    description: "admin token (at least 16 characters); generated and printed once at start when unset",
    defaultText: "generated at start",
    parse: (raw) => {
      if (raw.length < 16) throw new Error("must be at least 16 characters");
      return raw;
    },
  }),
  secretKey: setting<string | undefined>({
    key: "secretKey",
    flag: "secret-key",
    env: "WARREN_SECRET_KEY",
    description:
      "server secret (at least 32 characters) from which the keys for workspace variables (AES-256-GCM) and session cookies (HMAC) are derived; every server of a cluster needs the same; generated per run when unset",
    defaultText: "generated at start",
    parse: (raw) => {
      if (raw.length < 32) throw new Error("must be at least 32 characters");
      return raw;
    },
  }),
  secretKeyAccepted: setting<string[]>({
    key: "secretKeyAccepted",
    flag: "secret-key-accepted",
    env: "WARREN_SECRET_KEY_ACCEPTED",
    description:
      "earlier server secrets (comma-separated) still accepted for reading: variables sealed and session cookies signed with them stay valid, so WARREN_SECRET_KEY rotates without logging people out or losing variables (new ones use WARREN_SECRET_KEY)",
    default: [],
    defaultText: "none",
    parse: secretList(32),
  }),
  sessionTtl: setting({
    key: "sessionTtl",
    flag: "session-ttl",
    env: "WARREN_SESSION_TTL",
    description: "lifetime of a browser session cookie (never beyond the access token it was made with)",
    default: 12 * 3_600_000,
    defaultText: "12h",
    parse: duration(60_000, 30 * 86_400_000),
  }),
  loginCodeTtl: setting({
    key: "loginCodeTtl",
    flag: "login-code-ttl",
    env: "WARREN_LOGIN_CODE_TTL",
    description: "lifetime of the one-time code that carries a browser login to a workspace host",
    default: 30_000,
    defaultText: "30s",
    parse: duration(1000, 60_000),
  }),
  logLevel: setting<LevelWithSilent>({
    key: "logLevel",
    flag: "log-level",
    env: "WARREN_LOG_LEVEL",
    description: "log level",
    default: "info",
    parse: parseOneOf(LOG_LEVELS),
  }),
  logFormat: setting<LogFormat | undefined>({
    key: "logFormat",
    flag: "log-format",
    env: "WARREN_LOG_FORMAT",
    description: "log lines as JSON objects (json) or readable lines (pretty); a terminal also gets a start-up banner with pretty",
    defaultText: "pretty when stdout is a terminal, json otherwise",
    parse: parseOneOf(LOG_FORMATS),
  }),
  agentMaxConnectionAge: setting({
    key: "agentMaxConnectionAge",
    flag: "agent-max-connection-age",
    env: "WARREN_AGENT_MAX_CONNECTION_AGE",
    description:
      "ask each agent to reconnect (opening its new connection before closing this one) once its connection is this old, ±10 %, so that a load balancer spreads agents again over the servers after scaling or a rolling restart; 0: never",
    default: 0,
    defaultText: "0 (never)",
    parse: (raw) => {
      const ms = parseDuration(raw);
      if (ms !== 0 && (ms < 1000 || ms > 7 * 86_400_000)) throw new Error(`${raw} is out of range: 0, or 1s-7d`);
      return ms;
    },
  }),
  streamWaitTimeout: setting({
    key: "streamWaitTimeout",
    flag: "stream-wait-timeout",
    env: "WARREN_STREAM_WAIT_TIMEOUT",
    description: "how long a new connection waits for an idle tunnel stream before 503",
    default: 3000,
    defaultText: "3s",
    parse: duration(0, 60_000),
  }),
  dialTimeout: setting({
    key: "dialTimeout",
    flag: "dial-timeout",
    env: "WARREN_DIAL_TIMEOUT",
    description: "how long the agent may take to connect to the workspace port before 504",
    default: 10_000,
    defaultText: "10s",
    parse: duration(100, 300_000),
  }),
  upstreamTimeout: setting({
    key: "upstreamTimeout",
    flag: "upstream-timeout",
    env: "WARREN_UPSTREAM_TIMEOUT",
    description: "how long the app may take to start its HTTP response before 504",
    default: 60_000,
    defaultText: "60s",
    parse: duration(100, 3_600_000),
  }),
  httpFastPath: setting({
    key: "httpFastPath",
    flag: "http-fast-path",
    env: "WARREN_HTTP_FAST_PATH",
    description: "splice workspace connections onto tunnel streams (parsing requests, passing responses through); off: every request goes through node's HTTP client",
    default: true,
    parse: parseBoolean,
  }),
  agentMaxStreams: setting({
    key: "agentMaxStreams",
    flag: "agent-max-streams",
    env: "WARREN_AGENT_MAX_STREAMS",
    description: "most tunnel streams one agent connection may hold",
    default: 500,
    parse: parseIntegerIn(1, 100_000),
  }),
  agentPingInterval: setting({
    key: "agentPingInterval",
    flag: "agent-ping-interval",
    env: "WARREN_AGENT_PING_INTERVAL",
    description: "an agent connection silent this long is pinged (agents ping the server this often themselves)",
    default: DEFAULT_LIVENESS.intervalMs,
    defaultText: "2s",
    parse: duration(100, 600_000),
  }),
  agentPingTimeout: setting({
    key: "agentPingTimeout",
    flag: "agent-ping-timeout",
    env: "WARREN_AGENT_PING_TIMEOUT",
    description: "an agent connection silent for the ping interval plus this long is dropped: its requests get 503 at once",
    default: DEFAULT_LIVENESS.timeoutMs,
    defaultText: "2s",
    parse: duration(100, 600_000),
  }),
  agentTokenTtl: setting({
    key: "agentTokenTtl",
    flag: "agent-token-ttl",
    env: "WARREN_AGENT_TOKEN_TTL",
    description: "lifetime of agent tokens issued with a workspace",
    default: 7 * 86_400_000,
    defaultText: "7d",
    parse: duration(60_000, 366 * 86_400_000),
  }),
  drainDelay: setting({
    key: "drainDelay",
    flag: "drain-delay",
    env: "WARREN_DRAIN_DELAY",
    description:
      "on SIGTERM, how long /readyz answers 503 while the server still serves everything, so that load balancers stop sending before it stops accepting (SIGINT skips it)",
    default: 5000,
    defaultText: "5s",
    parse: duration(0, 300_000),
  }),
  shutdownTimeout: setting({
    key: "shutdownTimeout",
    flag: "shutdown-timeout",
    env: "WARREN_SHUTDOWN_TIMEOUT",
    description: "after the drain delay, how long requests, WebSockets and SSH sessions in flight may run before they are closed",
    default: 25_000,
    defaultText: "25s",
    parse: duration(0, 600_000),
  }),
  tlsCert: setting<string | undefined>({
    key: "tlsCert",
    flag: "tls-cert",
    env: "WARREN_TLS_CERT",
    description: "PEM certificate (chain) for the HTTP and agent listeners (and the private one with WARREN_PRIVATE_TLS), e.g. a wildcard for *.{root} plus {root}; reloaded when the file changes",
    defaultText: "none: plain HTTP and h2c",
    parse: parseReadableFile,
  }),
  tlsKey: setting<string | undefined>({
    key: "tlsKey",
    flag: "tls-key",
    env: "WARREN_TLS_KEY",
    description: "PEM private key of the certificate",
    defaultText: "none",
    parse: parseReadableFile,
  }),
  sshAddr: setting<HostPort | undefined>({
    key: "sshAddr",
    flag: "ssh-addr",
    env: "WARREN_SSH_ADDR",
    description: "SSH listener (ssh <workspace>@<server>); off to disable",
    default: parseHostPort("127.0.0.1:2222"),
    defaultText: "127.0.0.1:2222",
    parse: parseListenerOrOff,
  }),
  sshHostKey: setting<string | undefined>({
    key: "sshHostKey",
    flag: "ssh-host-key",
    env: "WARREN_SSH_HOST_KEY",
    description: "private host key file of the SSH listener (OpenSSH or PEM format)",
    defaultText: "generated once into {data dir}/ssh_host_ed25519_key",
    parse: parseReadableFile,
  }),
  sshLoginGraceTime: setting({
    key: "sshLoginGraceTime",
    flag: "ssh-login-grace-time",
    env: "WARREN_SSH_LOGIN_GRACE_TIME",
    description: "how long an SSH client may take to authenticate before it is disconnected",
    default: 30_000,
    defaultText: "30s",
    parse: duration(1000, 600_000),
  }),
  dataDir: setting<string | undefined>({
    key: "dataDir",
    flag: "data-dir",
    env: "WARREN_DATA_DIR",
    description:
      "directory for state kept across restarts: the embedded store (every user, token, SSH key and workspace of a server without Redis), the generated admin token, server secret and SSH host key",
    defaultText: "$XDG_STATE_HOME/warren or ~/.local/state/warren",
    parse: parseNonEmpty,
  }),
  store: setting<StoreKind | undefined>({
    key: "store",
    flag: "store",
    env: "WARREN_STORE",
    description:
      "where the control state lives: embedded (a database in WARREN_DATA_DIR, kept across restarts), redis (WARREN_REDIS_URL, cluster mode) or memory (gone when the server stops: for tests only)",
    defaultText: "redis when WARREN_REDIS_URL is set, else embedded",
    parse: parseOneOf(STORE_KINDS),
  }),
  serverId: setting<string | undefined>({
    key: "serverId",
    flag: "server-id",
    env: "WARREN_SERVER_ID",
    description: "id of this server in logs and in the cluster",
    defaultText: "hostname and a random suffix",
    parse: optional,
  }),
  redisUrl: setting<RedisTarget | undefined>({
    key: "redisUrl",
    flag: "redis-url",
    env: "WARREN_REDIS_URL",
    description:
      "Redis of the cluster; setting it turns cluster mode on. redis://[user:pass@]host:port[/db], rediss:// (TLS), redis+sentinel://host:26379,host2:26379/<master>[/db], redis+cluster://host:6379,host2:6379 (rediss+... for TLS)",
    defaultText: "none: one server, state in the embedded store (WARREN_DATA_DIR)",
    parse: parseRedisUrl,
  }),
  redisPrefix: setting({
    key: "redisPrefix",
    flag: "redis-prefix",
    env: "WARREN_REDIS_PREFIX",
    description: "prefix of every Redis key Warren writes (several clusters can share one Redis)",
    default: "warren",
    parse: (raw) => {
      if (!/^[A-Za-z0-9_.-]{1,64}$/.test(raw)) throw new Error("use 1-64 letters, digits, '_', '.' or '-'");
      return raw;
    },
  }),
  clusterSecret: setting<string | undefined>({
    key: "clusterSecret",
    flag: "cluster-secret",
    env: "WARREN_CLUSTER_SECRET",
    description: "shared secret of the servers of a cluster (at least 16 characters); required in cluster mode",
    defaultText: "none",
    parse: (raw) => {
      if (raw.length < 16) throw new Error("must be at least 16 characters");
      return raw;
    },
  }),
  clusterSecretAccepted: setting<string[]>({
    key: "clusterSecretAccepted",
    flag: "cluster-secret-accepted",
    env: "WARREN_CLUSTER_SECRET_ACCEPTED",
    description:
      "more cluster secrets accepted from other servers (comma-separated), for rotating WARREN_CLUSTER_SECRET without a window: roll out the new one here, then as WARREN_CLUSTER_SECRET with the old one here, then drop it",
    default: [],
    defaultText: "none",
    parse: secretList(16),
  }),
  privateAddr: setting({
    key: "privateAddr",
    flag: "private-addr",
    env: "WARREN_PRIVATE_ADDR",
    description: "private listener for server-to-server forwarding (cluster mode only)",
    default: parseHostPort("127.0.0.1:8155"),
    defaultText: "127.0.0.1:8155",
    parse: parseHostPort,
  }),
  privateTls: setting({
    key: "privateTls",
    flag: "private-tls",
    env: "WARREN_PRIVATE_TLS",
    description:
      "serve the private listener over TLS with WARREN_TLS_CERT, and dial the other servers over TLS, verifying their certificate for WARREN_ROOT_DOMAIN (system CAs, or WARREN_PRIVATE_CA_FILE); the same on every server",
    default: false,
    boolean: true,
    parse: parseBoolean,
  }),
  privateCaFile: setting<string | undefined>({
    key: "privateCaFile",
    flag: "private-ca-file",
    env: "WARREN_PRIVATE_CA_FILE",
    description: "with WARREN_PRIVATE_TLS: PEM file of the CA certificates that verify the other servers",
    defaultText: "system CAs",
    parse: parseReadableFile,
  }),
  privateAdvertiseAddr: setting<HostPort | undefined>({
    key: "privateAdvertiseAddr",
    flag: "private-advertise-addr",
    env: "WARREN_PRIVATE_ADVERTISE_ADDR",
    description: "host:port other servers dial to reach this one's private listener",
    defaultText: "WARREN_PRIVATE_ADDR with its bound port; its host, or this machine's first non-loopback IPv4 when it listens on all interfaces",
    parse: (raw) => {
      const hp = parseHostPort(raw);
      if (hp.port === 0) throw new Error("needs a port other than 0");
      if (hp.host === "0.0.0.0" || hp.host === "::") throw new Error("must be an address other servers can dial, not a wildcard");
      return hp;
    },
  }),
  ...OIDC_SETTINGS,
  ...CI_SETTINGS,
};

export type ServerConfig = SettingsOf<typeof SERVER_SETTINGS>;

/**
 * Checks that span several settings; throws invalid_argument with a message naming them.
 * Runs after resolveSettings.
 */
export function validateServerConfig(config: ServerConfig): void {
  oidcConfigOf(config);
  if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
    throw new WarrenError(ErrorCode.InvalidArgument, "WARREN_TLS_CERT and WARREN_TLS_KEY must be set together");
  }
  if (config.privateTls && config.tlsCert === undefined) {
    throw new WarrenError(ErrorCode.InvalidArgument, "WARREN_PRIVATE_TLS needs WARREN_TLS_CERT and WARREN_TLS_KEY: the private listener serves that certificate");
  }
  if (config.observabilityTls && config.tlsCert === undefined) {
    throw new WarrenError(ErrorCode.InvalidArgument, "WARREN_OBSERVABILITY_TLS needs WARREN_TLS_CERT and WARREN_TLS_KEY: the observability listener serves that certificate");
  }
  if (config.store === "redis" && !config.redisUrl) {
    throw new WarrenError(ErrorCode.InvalidArgument, "WARREN_STORE=redis needs WARREN_REDIS_URL: the Redis of the cluster");
  }
  if (config.store !== undefined && config.store !== "redis" && config.redisUrl) {
    throw new WarrenError(
      ErrorCode.InvalidArgument,
      `WARREN_STORE=${config.store} cannot be used with WARREN_REDIS_URL: cluster mode keeps its state in Redis (unset one of them)`,
    );
  }
  if (config.redisUrl && !config.clusterSecret) {
    throw new WarrenError(
      ErrorCode.InvalidArgument,
      "cluster mode (WARREN_REDIS_URL is set) needs WARREN_CLUSTER_SECRET: the same secret of at least 16 characters on every server",
    );
  }
}
