import { WarrenError } from "../shared/errors.js";
import { createLogger } from "../shared/logger.js";
import { defaultLogFormat } from "../shared/log-format.js";
import { readyBanner, type BannerInfo } from "./console-banner.js";
import { parseCommandLine, readConfigFile, resolveSettings, settingsHelp } from "../shared/settings.js";
import { VERSION } from "../shared/version.js";
import { SERVER_SETTINGS, validateServerConfig, type ServerConfig } from "./config.js";
import { openLocalState, type LocalState } from "./local-state.js";
import { backupCommand, restoreCommand } from "./store-commands.js";
import { WarrenServer } from "./warren-server.js";
import { agentUrlFor } from "./http/install-script.js";

const STORE_COMMANDS = ["backup", "restore"] as const;
type StoreCommand = (typeof STORE_COMMANDS)[number];

const USAGE = `Usage: warren-server [--config warren.yaml] [flags]
       warren-server backup [flags] > FILE        consistent snapshot of the store (embedded or Redis), while the server runs
       warren-server restore [--force] [flags] < FILE
                                                  loads a backup into the store; refuses one that holds records unless --force
                                                  (the embedded store: stop the server first)

Warren: reverse tunnels to workspaces and CI jobs. Every setting is a flag, a WARREN_*
environment variable and a key in the config file; precedence flag > env > file > default.

Settings:
`;

function fail(message: string): never {
  process.stderr.write(`warren-server: ${message}\n`);
  process.exit(2);
}

function loadConfig(argv: string[]): ServerConfig {
  const cli = parseCommandLine(argv, SERVER_SETTINGS);
  if (cli.help) {
    process.stdout.write(`${USAGE}${settingsHelp(SERVER_SETTINGS)}\n  --config <file>                    WARREN_CONFIG                  YAML or JSON file of settings (camelCase keys)\n`);
    process.exit(0);
  }
  if (cli.version) {
    process.stdout.write(`warren-server ${VERSION}\n`);
    process.exit(0);
  }
  if (cli.positionals.length > 0) throw new WarrenError("invalid_argument", `unexpected argument "${cli.positionals[0]}" (see --help)`);
  const configFile = cli.configFile ?? process.env["WARREN_CONFIG"];
  const file = configFile ? readConfigFile(configFile, SERVER_SETTINGS) : undefined;
  const config = resolveSettings(SERVER_SETTINGS, { flags: cli.values, env: process.env, file });
  validateServerConfig(config);
  return config;
}

/** The *_ADDR setting of the listener that could not bind `port`. */
function listenerSetting(config: ServerConfig, port: number | undefined): string {
  const listeners: Array<[string, { port: number } | undefined]> = [
    ["WARREN_HTTP_ADDR", config.httpAddr],
    ["WARREN_AGENT_ADDR", config.agentAddr],
    ["WARREN_OBSERVABILITY_ADDR", config.observabilityAddr],
    ["WARREN_SSH_ADDR", config.sshAddr],
    ["WARREN_PRIVATE_ADDR", config.redisUrl ? config.privateAddr : undefined],
  ];
  const named = listeners.filter(([, addr]) => addr !== undefined && addr.port === port).map(([name]) => name);
  return named.length > 0 ? named.join(" or ") : "a listener's *_ADDR setting";
}

/** Where things are, from the listeners the server actually opened. */
function bannerInfo(server: WarrenServer, config: ServerConfig, local: LocalState): BannerInfo {
  const { observability, ssh } = server.addresses;
  const reachable = (address: string) => (address === "0.0.0.0" || address === "::" ? "127.0.0.1" : address.includes(":") ? `[${address}]` : address);
  return {
    version: VERSION,
    publicUrl: server.publicUrl,
    agentUrl: config.publicAgentUrl ?? agentUrlFor(server.publicUrl),
    metricsUrl: `${config.observabilityTls ? "https" : "http"}://${reachable(observability.address)}:${observability.port}/metrics`,
    ...(ssh ? { ssh: { host: config.rootDomain, port: ssh.port } } : {}),
    adminToken:
      config.adminToken !== undefined
        ? "the one in WARREN_ADMIN_TOKEN"
        : local.adminToken?.generated
          ? `${local.adminToken.value}  (generated now, shown this once; kept in ${local.adminToken.path})`
          : local.adminToken
            ? `in ${local.adminToken.path} (generated on the first start)`
            : `${server.adminToken}  (generated for this run; set WARREN_ADMIN_TOKEN to keep one)`,
    loginToken: config.adminToken === undefined && local.adminToken?.generated ? local.adminToken.value : undefined,
    state: config.redisUrl ? "in Redis" : local.embeddedStore ? "in the data directory (embedded store): kept across restarts" : "in memory: gone when the server stops",
  };
}

/** `backup` / `restore`: one line on stderr, the backup itself on stdout / stdin. */
async function runStoreCommand(command: StoreCommand, argv: string[]): Promise<void> {
  const force = argv.includes("--force");
  let config: ServerConfig;
  try {
    config = loadConfig(argv.filter((a) => a !== "--force" || command !== "restore"));
  } catch (err) {
    fail((err as Error).message);
  }
  try {
    const summary = command === "backup" ? await backupCommand(config, process.stdout) : await restoreCommand(config, process.stdin, force);
    process.stderr.write(`warren-server: ${summary}\n`);
    process.exit(0);
  } catch (err) {
    if (err instanceof WarrenError) {
      process.stderr.write(`warren-server ${command}: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const command = STORE_COMMANDS.find((c) => c === argv[0]);
  if (command) return runStoreCommand(command, argv.slice(1));
  let config: ServerConfig;
  try {
    config = loadConfig(argv);
  } catch (err) {
    fail((err as Error).message);
  }
  const logFormat = config.logFormat ?? defaultLogFormat(process.stdout);
  const log = createLogger({ name: "warren-server", level: config.logLevel, format: logFormat });
  let local: LocalState;
  try {
    // The data directory: the embedded store (locked, checked, migrated) and generated secrets.
    local = await openLocalState(config, log);
  } catch (err) {
    if (err instanceof WarrenError) fail(err.message);
    throw err;
  }
  let server: WarrenServer;
  try {
    server = new WarrenServer(config, log, local);
  } catch (err) {
    // A setting only the modules can check (e.g. a TLS certificate file that holds no certificate).
    if (err instanceof WarrenError && err.code === "invalid_argument") fail(err.message);
    throw err;
  }
  try {
    await server.start();
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
    if (e.code === "EADDRINUSE" || e.code === "EACCES" || e.code === "EADDRNOTAVAIL") {
      fail(`${listenerSetting(config, e.port)}: cannot listen on ${e.address ?? ""}:${e.port ?? ""}: ${e.code}`);
    }
    // A setting that only start-up could check (e.g. an unreadable SSH host key).
    if (err instanceof WarrenError && err.code === "invalid_argument") fail(err.message);
    throw err;
  }
  // A person at a terminal gets the summary; pipes and containers only the log lines.
  if (logFormat === "pretty") process.stdout.write(readyBanner(bannerInfo(server, config, local)));
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, "signal received");
    // Ctrl-C is a person at a terminal, not a load balancer that must notice first.
    server
      .shutdown(signal === "SIGINT" ? { drainDelayMs: 0 } : {})
      .then(() => local.close())
      .then(
        () => process.exit(0),
        (err) => {
          log.error({ err }, "shutdown failed");
          process.exit(1);
        },
      );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main().catch((err) => {
  process.stderr.write(`warren-server: fatal: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
