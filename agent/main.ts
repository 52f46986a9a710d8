import { readFileSync } from "node:fs";
import { createLogger, type Logger } from "../shared/logger.js";
import { parseCommandLine, readConfigFile, resolveSettings, settingsHelp } from "../shared/settings.js";
import { VERSION } from "../shared/version.js";
import { describeProxy, proxyFor } from "../shared/proxy.js";
import { AGENT_SETTINGS, type AgentConfig } from "./config.js";
import { AgentExit, AgentRunner } from "./agent-runner.js";
import { DesiredStateReconciler } from "./desired-state-reconciler.js";
import { NoWorkload } from "./no-workload.js";
import type { WorkloadControl, WorkloadStatusReport } from "./workload-control.js";
import { WorkloadSupervisor } from "./workload-supervisor.js";
import { WorkloadVariables } from "./workload-variables.js";
import { listeningPortsMessage, PortDiscovery } from "./port-discovery.js";
import { runCi } from "./ci-command.js";

const USAGE = `Usage: warren-agent [flags]
       warren-agent run [flags] -- CMD [ARGS...]
       warren-agent ci [flags] -- CMD [ARGS...]   (a CI job's own workspace: warren-agent ci --help)

Connects this workspace to a Warren server and carries connections to its local ports
(127.0.0.1 only, and only the ports the workspace exposes). Every setting is a flag, a
WARREN_* environment variable and a key in a config file (--config).

With "run", it also supervises CMD (an editor server, a notebook...): starts it with the
workspace's variables once connected, stops, starts and restarts it as the workspace's
desired state says, passes SIGTERM and SIGINT on to it, and reports its state to the server.
When CMD exits by itself or after a signal, the agent reports that, lets open connections
finish and exits with CMD's exit code (128+N when signal N killed it).

Exit codes: 0 stopped by SIGTERM or SIGINT; 1 refused by the server (token invalid, expired
or revoked, workspace deleted or terminated); 2 bad command line or settings; with "run",
CMD's exit code.

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
    // The Node.js inside matters to whoever patches machines: the single file embeds its own.
    process.stdout.write(`warren-agent ${VERSION} (Node.js ${process.version}, ${process.platform}-${process.arch})\n`);
    process.exit(0);
  }
  const [subcommand, ...extra] = cli.positionals;
  if (subcommand !== undefined && subcommand !== "run") throw new Error(`unexpected argument "${subcommand}" (see --help)`);
  if (subcommand === "run") {
    if (extra.length > 0) throw new Error(`put the command after "--": warren-agent run [flags] -- ${extra.join(" ")}`);
    if (cli.rest.length === 0) throw new Error("run needs a command: warren-agent run [flags] -- CMD [ARGS...]");
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

async function main(): Promise<void> {
  // `ci` creates its own workspace and token: a command of its own (agent/ci-command.ts).
  if (process.argv[2] === "ci") await runCi(process.argv.slice(3));
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
  // HTTPS_PROXY / HTTP_PROXY / NO_PROXY: checked once here, so a bad proxy address stops the agent at start.
  for (const server of config.server) {
    let proxy: URL | undefined;
    try {
      proxy = proxyFor(server);
    } catch (err) {
      usageError((err as Error).message);
    }
    if (proxy) log.info({ server: server.origin, proxy: describeProxy(proxy) }, `connecting to ${server.origin} through the proxy ${describeProxy(proxy)}`);
  }
  const variables = new WorkloadVariables();
  const agentEnv = { ...process.env };
  const workload: WorkloadControl = commandLine.workload
    ? new WorkloadSupervisor({
        command: commandLine.workload,
        environment: () => variables.environment(agentEnv),
        stopTimeoutMs: config.workloadStopTimeout,
        log: log.child({ component: "workload" }),
      })
    : new NoWorkload();
  let variablesSet = false;
  let stopping = false;
  // Declared before the runner: reports go out on whichever session is current, and the
  // runner sends the latest one again after every reconnect.
  let runner: AgentRunner | undefined;
  const reconciler = new DesiredStateReconciler({
    workload,
    send: (report) => void runner?.reportWorkload(report),
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
    liveness: { intervalMs: config.pingInterval, timeoutMs: config.pingTimeout },
    log,
    onReady: (welcome, server) => {
      log.info(
        { event: "ready", workspace: welcome.workspace, urls: welcome.urls, ports: welcome.allowedPorts, server: server.origin, serverId: welcome.serverId },
        `warren agent ready: workspace "${welcome.workspace}" is reachable at ${welcome.urls.join(" ") || "(no ports exposed)"}`,
      );
      // Every new connection hears which ports listen now.
      if (discovery) void runner?.session?.send(listeningPortsMessage(discovery.current));
      // Frozen at creation: the first welcome's variables are the workspace's for good.
      if (!variablesSet) {
        variablesSet = true;
        variables.set(welcome.variables);
        if (welcome.variables.length > 0) log.info({ variables: welcome.variables.map((v) => v.name) }, "workspace variables received");
      }
    },
    // Once shutting down, nothing is started again.
    onDesiredState: (state) => {
      if (!stopping) void reconciler.apply(state);
    },
  });
  const agent = runner;
  const discovery =
    config.portDiscoveryInterval > 0
      ? new PortDiscovery({
          intervalMs: config.portDiscoveryInterval,
          log,
          onChange: (ports) => {
            if (agent.session?.welcome) void agent.session.send(listeningPortsMessage(ports));
          },
        })
      : undefined;
  discovery?.start();
  const markStopping = () => (stopping = true);
  const code = commandLine.workload ? await supervise(agent, workload, config, log, markStopping) : await serve(agent, workload, config, log, markStopping);
  discovery?.stop();
  // Nothing the agent started outlives it (a terminated workspace's workload included).
  await workload.stop();
  variables.cleanup();
  log.info({ exitCode: code }, "agent stopped");
  // Let pino flush, then exit with the verdict.
  setImmediate(() => process.exit(code));
}

/** Plain agent: runs until SIGTERM/SIGINT (then drains) or until the server refuses it. */
async function serve(runner: AgentRunner, workload: WorkloadControl, config: AgentConfig, log: Logger, markStopping: () => void): Promise<number> {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    markStopping();
    log.info({ signal, timeoutMs: config.shutdownTimeout }, "stopping: finishing open connections");
    void runner.stop(config.shutdownTimeout);
    void workload.stop();
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  return runner.run();
}

/**
 * `run -- CMD`: the agent lives as long as its workload. The workspace's desired state stops,
 * starts and restarts it while the agent stays; when it ends by itself or after a signal the
 * agent passed on, the agent reports how, drains and exits with its code. When the server
 * refuses the agent (workspace deleted or terminated), the workload is stopped.
 */
async function supervise(runner: AgentRunner, workload: WorkloadControl, config: AgentConfig, log: Logger, markStopping: () => void): Promise<number> {
  let signalled = false;
  const ended = new Promise<WorkloadStatusReport>((resolve) => {
    workload.onStatus((report) => {
      const over = report.status === "Stopped" || report.status === "Failed";
      if (over && (report.byItself || signalled)) resolve(report);
    });
  });
  const agentDone = runner.run();
  // Signals are the workload's to handle; when none runs (stopped by the API), they stop the agent.
  const onSignal = (signal: NodeJS.Signals) => {
    if (!signalled && workload.signal(signal)) {
      signalled = true;
      markStopping();
      return;
    }
    markStopping();
    log.info({ signal }, "stopping: no workload is running");
    void runner.stop(config.shutdownTimeout);
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  const first = await Promise.race([
    ended.then((report) => ({ kind: "workload" as const, report })),
    agentDone.then((code) => ({ kind: "agent" as const, code })),
  ]);
  if (first.kind === "agent") {
    if (workload.current?.status === "Running") log.warn("the agent is done: stopping the workload");
    return first.code;
  }
  markStopping();
  const exitCode = first.report.exitCode ?? 0;
  // The end is worth a short wait for a connection: the server learns the workload is gone.
  const reported = await runner.reportWorkload(DesiredStateReconciler.toMessage(first.report), config.shutdownTimeout);
  if (!reported) log.warn({ exitCode }, "could not report the workload's end to the server");
  log.info({ timeoutMs: config.shutdownTimeout }, "workload ended: finishing open connections");
  await runner.stop(config.shutdownTimeout);
  await agentDone;
  return exitCode;
}

main().catch((err) => {
  process.stderr.write(`warren-agent: fatal: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
