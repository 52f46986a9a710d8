import { readFileSync } from "node:fs";
import { WorkloadState } from "../shared/gen/warren/v1/agent_pb.js";
import { createLogger, type Logger } from "../shared/logger.js";
import { parseCommandLine, readConfigFile, resolveSettings, settingsHelp } from "../shared/settings.js";
import { VERSION } from "../shared/version.js";
import { AGENT_SETTINGS, type AgentConfig } from "./config.js";
import { AgentExit, AgentRunner } from "./agent-runner.js";
import { Workload } from "./workload.js";

const USAGE = `Usage: warren-agent [flags]
       warren-agent run [flags] -- CMD [ARGS...]

Connects this workspace to a Warren server and carries connections to its local ports
(127.0.0.1 only, and only the ports the workspace exposes). Every setting is a flag, a
WARREN_* environment variable and a key in a config file (--config).

With "run", it also starts CMD (an editor server, a notebook...), passes SIGTERM and SIGINT
on to it, reports its state to the server, and when CMD exits, reports that, lets open
connections finish and exits with CMD's exit code (128+N when signal N killed it).

Exit codes: 0 stopped by SIGTERM or SIGINT; 1 refused by the server (token invalid, expired
or revoked, workspace deleted); 2 bad command line or settings; with "run", CMD's exit code.

Settings:
`;

function usageError(message: string): never {
  process.stderr.write(`warren-agent: ${message}\n`);
  process.exit(AgentExit.Usage);
}

interface CommandLine {
  readonly config: AgentConfig;
  /** `run -- CMD ARGS...`: the workload to supervise. */
  readonly workload?: readonly [string, ...string[]];
}

function loadCommandLine(argv: string[]): CommandLine {
  const cli = parseCommandLine(argv, AGENT_SETTINGS);
  if (cli.help) {
    process.stdout.write(
      `${USAGE}${settingsHelp(AGENT_SETTINGS)}\n  ${"--config <file>".padEnd(34)} ${"WARREN_CONFIG".padEnd(30)} YAML or JSON file of settings (camelCase keys)\n`,
    );
    process.exit(0);
  }
  if (cli.version) {
    process.stdout.write(`warren-agent ${VERSION}\n`);
    process.exit(0);
  }
  const [subcommand, ...extra] = cli.positionals;
  if (subcommand !== undefined && subcommand !== "run") throw new Error(`unexpected argument "${subcommand}" (see --help)`);
  if (subcommand === "run") {
    if (extra.length > 0) throw new Error(`put the command after "--": warren-agent run [flags] -- ${extra.join(" ")}`);
    if (cli.rest.length === 0) throw new Error('run needs a command: warren-agent run [flags] -- CMD [ARGS...]');
  } else if (cli.rest.length > 0) {
    throw new Error(`to start "${cli.rest[0]}", use: warren-agent run [flags] -- ${cli.rest.join(" ")}`);
  }
  const configFile = cli.configFile ?? process.env["WARREN_CONFIG"];
  const file = configFile ? readConfigFile(configFile, AGENT_SETTINGS) : undefined;
  const config = resolveSettings(AGENT_SETTINGS, { flags: cli.values, env: process.env, file });
  const [command, ...args] = cli.rest;
  return command === undefined ? { config } : { config, workload: [command, ...args] };
}

function tokenReader(config: AgentConfig): () => string {
  if (config.token) {
    const token = config.token.trim();
    return () => token;
  }
  const file = config.tokenFile!;
  return () => readFileSync(file, "utf8").trim();
}

/** The workload's environment: the agent's, less its token (the workload has no use for it). */
function workloadEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env["WARREN_TOKEN"];
  return env;
}

async function main(): Promise<void> {
  let commandLine: CommandLine;
  try {
    commandLine = loadCommandLine(process.argv.slice(2));
  } catch (err) {
    usageError((err as Error).message);
  }
  const { config } = commandLine;
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
      // The line a CI log shows: where to click.
      log.info(
        { event: "ready", workspace: welcome.workspace, urls: welcome.urls, ports: welcome.allowedPorts, server: server.origin, serverId: welcome.serverId },
        `warren agent ready: workspace "${welcome.workspace}" is reachable at ${welcome.urls.join(" ") || "(no ports exposed)"}`,
      );
    },
  });
  const code = commandLine.workload ? await supervise(runner, commandLine.workload, config, log) : await serve(runner, config, log);
  log.info({ exitCode: code }, "agent stopped");
  // Let pino flush, then exit with the verdict.
  setImmediate(() => process.exit(code));
}

/** Plain agent: runs until SIGTERM/SIGINT (then drains) or until the server refuses it. */
async function serve(runner: AgentRunner, config: AgentConfig, log: Logger): Promise<number> {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, timeoutMs: config.shutdownTimeout }, "stopping: finishing open connections");
    void runner.stop(config.shutdownTimeout);
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  return runner.run();
}

/**
 * `run -- CMD`: the agent lives as long as its workload. Signals go to the workload; when it
 * exits, the agent reports how, drains and exits with its code. When the server refuses the
 * agent (workspace deleted), the workload is stopped.
 */
async function supervise(runner: AgentRunner, [command, ...args]: readonly [string, ...string[]], config: AgentConfig, log: Logger): Promise<number> {
  const workload = new Workload({
    command,
    args,
    env: workloadEnv(),
    log,
    onStatus: (status) => void runner.reportWorkload(status),
  });
  let workloadExited = false;
  // Signals are the workload's to handle; once it has exited, they cut the agent's wind-down short.
  const forward = (signal: NodeJS.Signals) => {
    if (workloadExited) void runner.stop(0);
    else workload.signal(signal);
  };
  process.on("SIGTERM", forward);
  process.on("SIGINT", forward);
  const agentDone = runner.run();
  const workloadDone = workload.start();
  const first = await Promise.race([
    workloadDone.then((exit) => ({ kind: "workload" as const, exit })),
    agentDone.then((code) => ({ kind: "agent" as const, code })),
  ]);
  if (first.kind === "agent") {
    log.warn({ timeoutMs: config.shutdownTimeout }, "the agent is done: stopping the workload");
    await workload.stop(config.shutdownTimeout);
    return first.code;
  }
  const { exit } = first;
  workloadExited = true;
  // The end is worth a short wait for a connection: the server learns the workload is gone.
  if (!(await runner.reportWorkload(exit.status, config.shutdownTimeout))) {
    log.warn({ state: WorkloadState[exit.status.state], exitCode: exit.exitCode }, "could not report the workload's end to the server");
  }
  log.info({ timeoutMs: config.shutdownTimeout }, "workload ended: finishing open connections");
  await runner.stop(config.shutdownTimeout);
  await agentDone;
  return exit.exitCode;
}

main().catch((err) => {
  process.stderr.write(`warren-agent: fatal: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
