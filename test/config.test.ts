import { execFile, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AGENT_SETTINGS } from "../agent/config.js";
import { SERVER_SETTINGS } from "../server/config.js";
import { defaultTextOf, type SettingSpec } from "../shared/settings.js";
import { listen } from "./harness/apps.js";
import { CLUSTER_SECRET } from "./harness/cluster.js";
import { AGENT_BUNDLE, REPO_ROOT, requireBuilt, SERVER_BUNDLE } from "./harness/processes.js";
import { cleanEnv, startServer } from "./harness/warren.js";
import { tempDir } from "./harness/temp-dirs.js";

function run(bundle: string, args: string[], env: Record<string, string> = {}) {
  requireBuilt();
  const r = spawnSync(process.execPath, [bundle, ...args], { env: cleanEnv(env), encoding: "utf8", timeout: 15_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs the server bundle to its end, without blocking the test process (several run at once). */
function runAsync(args: string[], env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [SERVER_BUNDLE, ...args], { env: cleanEnv(env), encoding: "utf8", timeout: 15_000 }, (err, _stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number | null }).code ?? null) : 0, stderr });
    });
  });
}

/** Runs `fn` over `items`, `limit` at a time (a 2-core machine). */
async function inBatches<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += limit) out.push(...(await Promise.all(items.slice(i, i + limit).map(fn))));
  return out;
}

interface BadCase {
  readonly env?: Record<string, string>;
  readonly args?: string[];
  /** What the one line says about the value. */
  readonly reason: RegExp;
}

/** Listeners on free ports, so that a server whose settings are fine would start. */
const FREE_PORTS = {
  WARREN_HTTP_ADDR: "127.0.0.1:0",
  WARREN_AGENT_ADDR: "127.0.0.1:0",
  WARREN_OBSERVABILITY_ADDR: "127.0.0.1:0",
  WARREN_SSH_ADDR: "127.0.0.1:0",
  WARREN_PRIVATE_ADDR: "127.0.0.1:0",
};

/**
 * One bad value for every setting of warren-server. Typed by SERVER_SETTINGS: a new setting
 * without a case here does not compile.
 */
const BAD: Record<keyof typeof SERVER_SETTINGS, BadCase> = {
  rootDomain: { env: { WARREN_ROOT_DOMAIN: "not a domain" }, reason: /is not a DNS name/ },
  httpAddr: { env: { WARREN_HTTP_ADDR: "nonsense" }, reason: /"nonsense" is not host:port/ },
  agentAddr: { args: ["--agent-addr", "127.0.0.1:99999"], reason: /port 99999 is out of range/ },
  observabilityAddr: { env: { WARREN_OBSERVABILITY_ADDR: "localhost" }, reason: /is not host:port/ },
  publicUrl: { env: { WARREN_PUBLIC_URL: "ftp://ws.example.com" }, reason: /must be an http or https URL/ },
  publicAgentUrl: { env: { WARREN_PUBLIC_AGENT_URL: "https://ws.example.com:8150/agents" }, reason: /must have no path/ },
  agentBinary: { args: ["--agent-binary", " "], reason: /must not be empty/ },
  adminToken: { env: { WARREN_ADMIN_TOKEN: "short" }, reason: /at least 16 characters/ },
  secretKey: { env: { WARREN_SECRET_KEY: "only-twenty-chars-xx" }, reason: /at least 32 characters/ },
  secretKeyAccepted: { env: { WARREN_SECRET_KEY_ACCEPTED: "only-twenty-chars-xx" }, reason: /secret 1 must be at least 32 characters/ },
  sessionTtl: { env: { WARREN_SESSION_TTL: "12 hours" }, reason: /is not a duration/ },
  loginCodeTtl: { env: { WARREN_LOGIN_CODE_TTL: "5m" }, reason: /5m is out of range 1s-1m/ },
  logLevel: { env: { WARREN_LOG_LEVEL: "loud" }, reason: /is not one of fatal, error/ },
  logFormat: { env: { WARREN_LOG_FORMAT: "xml" }, reason: /is not one of json, pretty/ },
  streamWaitTimeout: { env: { WARREN_STREAM_WAIT_TIMEOUT: "forever" }, reason: /is not a duration/ },
  dialTimeout: { env: { WARREN_DIAL_TIMEOUT: "10ms" }, reason: /out of range/ },
  upstreamTimeout: { env: { WARREN_UPSTREAM_TIMEOUT: "-1s" }, reason: /is not a duration/ },
  httpFastPath: { env: { WARREN_HTTP_FAST_PATH: "sometimes" }, reason: /is not a boolean/ },
  agentMaxStreams: { env: { WARREN_AGENT_MAX_STREAMS: "0" }, reason: /0 is out of range 1-100000/ },
  agentPingInterval: { env: { WARREN_AGENT_PING_INTERVAL: "10ms" }, reason: /out of range/ },
  agentPingTimeout: { args: ["--agent-ping-timeout", "soon"], reason: /soon/ },
  agentTokenTtl: { env: { WARREN_AGENT_TOKEN_TTL: "1s" }, reason: /out of range 1m-/ },
  drainDelay: { env: { WARREN_DRAIN_DELAY: "1h" }, reason: /1h is out of range 0ms-5m/ },
  shutdownTimeout: { env: { WARREN_SHUTDOWN_TIMEOUT: "soon" }, reason: /is not a duration/ },
  tlsCert: { env: { WARREN_TLS_CERT: "/nonexistent/cert.pem", WARREN_TLS_KEY: "package.json" }, reason: /cannot read \/nonexistent\/cert.pem: ENOENT/ },
  tlsKey: { env: { WARREN_TLS_CERT: "package.json", WARREN_TLS_KEY: "/nonexistent/key.pem" }, reason: /cannot read \/nonexistent\/key.pem: ENOENT/ },
  sshAddr: { env: { WARREN_SSH_ADDR: "nowhere" }, reason: /is not host:port/ },
  sshHostKey: { env: { WARREN_SSH_HOST_KEY: "/nonexistent/ssh_host_key" }, reason: /cannot read/ },
  sshLoginGraceTime: { env: { WARREN_SSH_LOGIN_GRACE_TIME: "0s" }, reason: /out of range 1s-10m/ },
  dataDir: { args: ["--data-dir", " "], reason: /must not be empty/ },
  store: { env: { WARREN_STORE: "disk" }, reason: /"disk" is not one of embedded, redis, memory/ },
  serverId: { args: ["--server-id", " "], reason: /must not be empty/ },
  redisUrl: { env: { WARREN_REDIS_URL: "http://127.0.0.1:6379", WARREN_CLUSTER_SECRET: CLUSTER_SECRET }, reason: /unknown scheme/ },
  redisPrefix: { env: { WARREN_REDIS_PREFIX: "a b" }, reason: /use 1-64 letters/ },
  clusterSecret: { env: { WARREN_REDIS_URL: "redis://127.0.0.1:6379", WARREN_CLUSTER_SECRET: "short" }, reason: /at least 16 characters/ },
  privateAddr: { env: { WARREN_PRIVATE_ADDR: "nowhere" }, reason: /is not host:port/ },
  clusterSecretAccepted: { env: { WARREN_CLUSTER_SECRET_ACCEPTED: "a-long-enough-secret-1,short" }, reason: /secret 2 must be at least 16 characters/ },
  privateTls: { env: { WARREN_PRIVATE_TLS: "maybe" }, reason: /is not a boolean/ },
  agentMaxConnectionAge: { env: { WARREN_AGENT_MAX_CONNECTION_AGE: "500ms" }, reason: /out of range: 0, or 1s-7d/ },
  observabilityTls: { env: { WARREN_OBSERVABILITY_TLS: "sometimes" }, reason: /is not a boolean/ },
  privateCaFile: { env: { WARREN_PRIVATE_CA_FILE: "/nonexistent/ca.pem" }, reason: /cannot read/ },
  privateAdvertiseAddr: { env: { WARREN_PRIVATE_ADVERTISE_ADDR: "0.0.0.0:8155" }, reason: /not a wildcard/ },
  oidcIssuer: { env: { WARREN_OIDC_ISSUER: "http://sso.example.com" }, reason: /must be an https URL/ },
  oidcClientId: { env: { WARREN_OIDC_CLIENT_ID: " " }, reason: /must not be empty/ },
  oidcClientSecret: { env: { WARREN_OIDC_CLIENT_SECRET: " " }, reason: /must not be empty/ },
  oidcClientSecretFile: { env: { WARREN_OIDC_CLIENT_SECRET_FILE: "/nonexistent/secret" }, reason: /cannot read \/nonexistent\/secret/ },
  oidcScopes: { env: { WARREN_OIDC_SCOPES: "profile email" }, reason: /must include openid/ },
  oidcUsernameClaim: { args: ["--oidc-username-claim", "user name"], reason: /is not a claim name/ },
  oidcGroupsClaim: { env: { WARREN_OIDC_GROUPS_CLAIM: "groups?" }, reason: /is not a claim name/ },
  oidcAllowedGroups: { env: { WARREN_OIDC_ALLOWED_GROUPS: "dev,,ops" }, reason: /has an empty item/ },
  oidcAdminGroups: { env: { WARREN_OIDC_ADMIN_GROUPS: "," }, reason: /has an empty item/ },
  ciIssuers: { env: { WARREN_CI_ISSUERS: '[{"issuer": "https://gitlab.example.com"}]' }, reason: /issuer 1: owner is required/ },
};

describe("every setting of warren-server", () => {
  it("a bad value of any setting stops it with exit code 2 and one line naming the setting", async () => {
    const specs = SERVER_SETTINGS as Record<string, SettingSpec<unknown>>;
    expect(Object.keys(BAD).sort()).toEqual(Object.keys(specs).sort());
    const results = await inBatches(Object.entries(BAD), 4, async ([name, bad]) => ({
      name,
      bad,
      ...(await runAsync(bad.args ?? [], { ...FREE_PORTS, ...bad.env })),
    }));
    for (const { name, bad, code, stderr } of results) {
      const spec = specs[name]!;
      const what = `${spec.env}: ${stderr}`;
      expect(code, what).toBe(2);
      expect(stderr.endsWith("\n") && stderr.trim().split("\n").length === 1, what).toBe(true);
      expect(stderr, what).toMatch(new RegExp(`^warren-server: invalid (${spec.env}|--${spec.flag}) \\(${spec.env}\\): `));
      expect(stderr, what).toMatch(bad.reason);
    }
    // One server process per setting, four at a time: minutes on a loaded 2-core machine.
  }, 180_000);

  it("values that only start-up can check stop it the same way, naming the setting", async () => {
    requireBuilt();
    const busy = net.createServer();
    const busyPort = await listen(busy);
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ WARREN_TLS_CERT: "package.json", WARREN_TLS_KEY: "package.json" }, /^warren-server: WARREN_TLS_CERT, WARREN_TLS_KEY: the certificate and key do not form a usable pair/],
      [{ WARREN_TLS_CERT: "package.json" }, /^warren-server: WARREN_TLS_CERT and WARREN_TLS_KEY must be set together/],
      [{ WARREN_PRIVATE_TLS: "true" }, /^warren-server: WARREN_PRIVATE_TLS needs WARREN_TLS_CERT and WARREN_TLS_KEY/],
      [{ WARREN_OBSERVABILITY_TLS: "true" }, /^warren-server: WARREN_OBSERVABILITY_TLS needs WARREN_TLS_CERT and WARREN_TLS_KEY/],
      [{ WARREN_OIDC_ISSUER: "https://sso.example.com" }, /^warren-server: WARREN_OIDC_ISSUER needs WARREN_OIDC_CLIENT_ID/],
      [{ WARREN_SSH_HOST_KEY: "package.json" }, /^warren-server: WARREN_SSH_HOST_KEY: .*package.json is not a usable SSH host key/],
      [{ WARREN_DATA_DIR: join(REPO_ROOT, "package.json", "state") }, /^warren-server: WARREN_DATA_DIR: cannot create the data directory .*package.json\/state: ENOTDIR/],
      [{ WARREN_DATA_DIR: join(REPO_ROOT, "package.json", "state"), WARREN_STORE: "memory" }, /^warren-server: WARREN_DATA_DIR: cannot write .*package.json\/state\/admin-token/],
      [{ WARREN_HTTP_ADDR: `127.0.0.1:${busyPort}` }, new RegExp(`^warren-server: WARREN_HTTP_ADDR: cannot listen on 127.0.0.1:${busyPort}: EADDRINUSE`)],
    ];
    try {
      const results = await inBatches(cases, 3, async ([env, message]) => ({ message, ...(await runAsync([], { ...FREE_PORTS, ...env })) }));
      for (const { message, code, stderr } of results) {
        expect(code, stderr).toBe(2);
        expect(stderr).toMatch(message);
        expect(stderr.trim().split("\n"), stderr).toHaveLength(1);
      }
    } finally {
      busy.close();
    }
  });

  it("--help lists every setting of both programs with its flag, variable and default", () => {
    for (const [bundle, specs] of [
      [SERVER_BUNDLE, SERVER_SETTINGS],
      [AGENT_BUNDLE, AGENT_SETTINGS],
    ] as const) {
      const help = run(bundle, ["--help"]);
      expect(help.code).toBe(0);
      const lines = help.stdout.split("\n");
      for (const spec of Object.values(specs as Record<string, SettingSpec<unknown>>)) {
        const line = lines.find((l) => l.trimStart().startsWith(`--${spec.flag} `) || l.trim() === `--${spec.flag}`);
        expect(line, `--${spec.flag} in ${bundle} --help`).toBeDefined();
        expect(line).toContain(` ${spec.env} `);
        expect(line).toContain(`(default: ${defaultTextOf(spec)})`);
      }
    }
  });
});

describe("configuration", () => {
  it("stops at start with one line for a bad setting, an unknown flag or a missing config file, exit code 2", () => {
    // Each setting's own bad values: see "every setting of warren-server" above.
    const cases: Array<[string[], Record<string, string>, RegExp]> = [
      [[], { WARREN_HTTP_ADDR: "nonsense" }, /^warren-server: invalid WARREN_HTTP_ADDR \(WARREN_HTTP_ADDR\): "nonsense" is not host:port\n$/],
      [["--no-such-flag"], {}, /^warren-server: unknown flag --no-such-flag/],
      [["--config", "/nonexistent/warren.yaml"], {}, /^warren-server: config file \/nonexistent\/warren.yaml: not found/],
      [[], { WARREN_STORE: "redis" }, /^warren-server: WARREN_STORE=redis needs WARREN_REDIS_URL/],
      [[], { WARREN_STORE: "memory", WARREN_REDIS_URL: "redis://127.0.0.1:1", WARREN_CLUSTER_SECRET: CLUSTER_SECRET }, /^warren-server: WARREN_STORE=memory cannot be used with WARREN_REDIS_URL/],
    ];
    for (const [args, env, message] of cases) {
      const r = run(SERVER_BUNDLE, args, env);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
  });

  it("reads a config file, refuses unknown keys, and lets env and flags win over it", async () => {
    const dir = tempDir("warren-config-");
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, "rootDomain: ws.example.com\ncolour: red\n");
    const r = run(SERVER_BUNDLE, ["--config", bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown setting "colour"/);

    const good = join(dir, "good.yaml");
    writeFileSync(good, "rootDomain: file.example.com\nlogLevel: warn\n");
    const server = await startServer({ WARREN_LOG_LEVEL: undefined, WARREN_ROOT_DOMAIN: "env.example.com" }, ["--config", good, "--log-level", "info"]);
    const ready = await server.proc.waitFor((l) => l.msg === "warren server ready");
    expect(ready["rootDomain"]).toBe("env.example.com");
    await server.stop();
  });

  it("--help lists every setting with its variable and default; --version prints the version", () => {
    const help = run(SERVER_BUNDLE, ["--help"]);
    expect(help.code).toBe(0);
    for (const name of ["WARREN_ROOT_DOMAIN", "WARREN_HTTP_ADDR", "WARREN_AGENT_ADDR", "WARREN_OBSERVABILITY_ADDR", "WARREN_ADMIN_TOKEN"]) {
      expect(help.stdout).toContain(name);
    }
    expect(help.stdout).toMatch(/--http-addr <value>\s+WARREN_HTTP_ADDR\s+.*\(default: 127\.0\.0\.1:8080\)/);
    expect(help.stdout).toMatch(/\(default: warren\.localhost\)/);
    expect(run(SERVER_BUNDLE, ["--version"]).stdout).toMatch(/^warren-server \d+\.\d+\.\d+/);
    const agentHelp = run(AGENT_BUNDLE, ["--help"]);
    expect(agentHelp.code).toBe(0);
    for (const name of ["WARREN_SERVER", "WARREN_TOKEN", "WARREN_TOKEN_FILE", "WARREN_POOL_MIN_IDLE", "WARREN_POOL_MAX_STREAMS"]) {
      expect(agentHelp.stdout).toContain(name);
    }
  });

  it("the agent refuses bad settings with exit code 2", () => {
    const r = run(AGENT_BUNDLE, [], { WARREN_SERVER: "ftp://x", WARREN_TOKEN: "t" });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^warren-agent: invalid WARREN_SERVER \(WARREN_SERVER\): "ftp:\/\/x": use http:\/\/ \(h2c\) or https:\/\//);
    const pool = run(AGENT_BUNDLE, ["--pool-min-idle", "0"], { WARREN_SERVER: "http://127.0.0.1:1", WARREN_TOKEN: "t" });
    expect(pool.code).toBe(2);
    expect(pool.stderr).toMatch(/--pool-min-idle.*0 is out of range 1-1000/);
  });

  it("generates and prints an admin token when none is set", async () => {
    const server = await startServer({ WARREN_ADMIN_TOKEN: undefined });
    const line = await server.proc.waitFor((l) => typeof l["adminToken"] === "string");
    expect(String(line["adminToken"])).toMatch(/^wadm_[A-Za-z0-9_-]{43}$/);
    await server.stop();
  });
});
