import { readFileSync } from "node:fs";
import { create } from "@bufbuild/protobuf";
import { ControlRequestSchema } from "../shared/gen/warren/v1/agent_pb.js";
import { createLogger } from "../shared/logger.js";
import { parseCommandLine, readConfigFile, resolveSettings, settingsHelp } from "../shared/settings.js";
import { VERSION } from "../shared/version.js";
import { AGENT_SETTINGS, type AgentConfig } from "./config.js";
import { AgentExit, AgentRunner } from "./agent-runner.js";
import { DesiredStateReconciler } from "./desired-state-reconciler.js";
import { NoWorkload } from "./no-workload.js";
import type { WorkloadControl } from "./workload-control.js";
import { WorkloadSupervisor } from "./workload-supervisor.js";
import { WorkloadVariables } from "./workload-variables.js";

const USAGE = `Usage: warren-agent [flags]
       warren-agent run [flags] -- COMMAND [ARGS...]

Connects this workspace to a Warren server and carries connections to its local ports
(127.0.0.1 only, and only the ports the workspace exposes). With \`run\`, it also supervises
COMMAND: starts it with the workspace's variables, and stops, starts and restarts it as the
workspace's desired state says. Every setting is a flag, a WARREN_* environment variable and
a key in a config file (--config).

Settings:
`;

function usageError(message: string): never {
  process.stderr.write(`warren-agent: ${message}\n`);
  process.exit(AgentExit.Usage);
}

function loadConfig(argv: string[]): AgentConfig & { command: string[] | undefined } {
  const cli = parseCommandLine(argv, AGENT_SETTINGS);
  if (cli.help) {
    process.stdout.write(`${USAGE}${settingsHelp(AGENT_SETTINGS)}\n`);
    process.exit(0);
  }
  if (cli.version) {
    process.stdout.write(`warren-agent ${VERSION}\n`);
    process.exit(0);
  }
  const [sub, ...extra] = cli.positionals;
  if (sub !== undefined && sub !== "run") throw new Error(`unexpected argument "${sub}" (see --help)`);
  if (extra.length > 0) throw new Error(`unexpected argument "${extra[0]}": put the command after --, e.g. warren-agent run -- npm start`);
  if (sub === "run" && cli.rest.length === 0) throw new Error("run: give the command after --, e.g. warren-agent run -- npm start");
  if (sub === undefined && cli.rest.length > 0) throw new Error("a command after -- needs `run`: warren-agent run -- COMMAND");
  const configFile = cli.configFile ?? process.env["WARREN_CONFIG"];
  const file = configFile ? readConfigFile(configFile, AGENT_SETTINGS) : undefined;
  return { ...resolveSettings(AGENT_SETTINGS, { flags: cli.values, env: process.env, file }), command: sub === "run" ? cli.rest : undefined };
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
  let config: AgentConfig & { command: string[] | undefined };
  try {
    config = loadConfig(process.argv.slice(2));
  } catch (err) {
    usageError((err as Error).message);
  }
  if (!config.server) usageError("no server address: set WARREN_SERVER or --server (e.g. https://ws.example.com:8150)");
  if (!config.token && !config.tokenFile) usageError("no agent token: set WARREN_TOKEN, --token or --token-file");
  const log = createLogger({ name: "warren-agent", level: config.logLevel });
  const variables = new WorkloadVariables();
  const agentEnv = { ...process.env };
  const workload: WorkloadControl = config.command
    ? new WorkloadSupervisor({
        command: config.command,
        environment: () => variables.environment(agentEnv),
        stopTimeoutMs: config.workloadStopTimeout,
        log: log.child({ component: "workload" }),
      })
    : new NoWorkload();
  let variablesSet = false;
  // Declared before the runner: reports go out on whichever session is current.
  let runner: AgentRunner | undefined;
  const reconciler = new DesiredStateReconciler({
    workload,
    send: (report) => runner?.session?.send(create(ControlRequestSchema, { msg: { case: "workload", value: report } })),
    log,
  });
  runner = new AgentRunner({
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
      // Frozen at creation: the first welcome's variables are the workspace's for good.
      if (!variablesSet) {
        variablesSet = true;
        variables.set(welcome.variables);
        if (welcome.variables.length > 0) log.info({ variables: welcome.variables.map((v) => v.name) }, "workspace variables received");
      }
      reconciler.onConnected();
    },
    // Once shutting down, nothing is started again.
    onDesiredState: (state) => {
      if (!stopping) void reconciler.apply(state);
    },
  });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, timeoutMs: config.shutdownTimeout }, "stopping: finishing open connections");
    void runner?.stop(config.shutdownTimeout);
    void workload.stop();
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  const code = await runner.run();
  // Nothing the agent started outlives it (a terminated workspace's workload included).
  await workload.stop();
  variables.cleanup();
  log.info({ exitCode: code }, "agent stopped");
  // Let pino flush, then exit with the runner's verdict.
  setImmediate(() => process.exit(code));
}

main().catch((err) => {
  process.stderr.write(`warren-agent: fatal: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
