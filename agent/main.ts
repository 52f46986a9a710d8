import { readFileSync } from "node:fs";
import { createLogger } from "../shared/logger.js";
import { parseCommandLine, readConfigFile, resolveSettings, settingsHelp } from "../shared/settings.js";
import { VERSION } from "../shared/version.js";
import { AGENT_SETTINGS, type AgentConfig } from "./config.js";
import { AgentExit, AgentRunner } from "./agent-runner.js";

const USAGE = `Usage: warren-agent [flags]

Connects this workspace to a Warren server and carries connections to its local ports
(127.0.0.1 only, and only the ports the workspace exposes). Every setting is a flag, a
WARREN_* environment variable and a key in a config file (--config).

Settings:
`;

function usageError(message: string): never {
  process.stderr.write(`warren-agent: ${message}\n`);
  process.exit(AgentExit.Usage);
}

function loadConfig(argv: string[]): AgentConfig {
  const cli = parseCommandLine(argv, AGENT_SETTINGS);
  if (cli.help) {
    process.stdout.write(`${USAGE}${settingsHelp(AGENT_SETTINGS)}\n`);
    process.exit(0);
  }
  if (cli.version) {
    process.stdout.write(`warren-agent ${VERSION}\n`);
    process.exit(0);
  }
  if (cli.positionals.length > 0) throw new Error(`unexpected argument "${cli.positionals[0]}" (see --help)`);
  const configFile = cli.configFile ?? process.env["WARREN_CONFIG"];
  const file = configFile ? readConfigFile(configFile, AGENT_SETTINGS) : undefined;
  return resolveSettings(AGENT_SETTINGS, { flags: cli.values, env: process.env, file });
}

function tokenReader(config: AgentConfig): () => string {
  if (config.token) {
    const token = config.token.trim();
    return () => token;
  }
  const file = config.tokenFile!;
  return () => readFileSync(file, "utf8").trim();
}

async function main(): Promise<void> {
  let config: AgentConfig;
  try {
    config = loadConfig(process.argv.slice(2));
  } catch (err) {
    usageError((err as Error).message);
  }
  if (!config.server) usageError("no server address: set WARREN_SERVER or --server (e.g. https://ws.example.com:8150)");
  if (!config.token && !config.tokenFile) usageError("no agent token: set WARREN_TOKEN, --token or --token-file");
  const log = createLogger({ name: "warren-agent", level: config.logLevel });
  const runner = new AgentRunner({
    servers: config.server,
    token: tokenReader(config),
    ca: config.caFile ? readFileSync(config.caFile) : undefined,
    pool: {
      minIdle: config.poolMinIdle,
      maxStreams: config.poolMaxStreams,
      burst: config.poolBurst,
      idleTimeoutMs: config.poolIdleTimeout,
    },
    dialTimeoutMs: config.dialTimeout,
    log,
    onReady: (welcome, server) => {
      log.info(
        { event: "ready", workspace: welcome.workspace, urls: welcome.urls, ports: welcome.allowedPorts, server: server.origin, serverId: welcome.serverId },
        `warren agent ready: workspace "${welcome.workspace}" is reachable at ${welcome.urls.join(" ") || "(no ports exposed)"}`,
      );
    },
  });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, timeoutMs: config.shutdownTimeout }, "stopping: finishing open connections");
    void runner.stop(config.shutdownTimeout);
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  const code = await runner.run();
  log.info({ exitCode: code }, "agent stopped");
  // Let pino flush, then exit with the runner's verdict.
  setImmediate(() => process.exit(code));
}

main().catch((err) => {
  process.stderr.write(`warren-agent: fatal: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
