import { appendFileSync, readFileSync } from "node:fs";
import { basename } from "node:path";
import { WorkspaceDesiredState } from "../shared/gen/warren/v1/agent_pb.js";
import { createLogger, type Logger } from "../shared/logger.js";
import { formatDuration, parseCommandLine, parseDuration, parsePort, readConfigFile, resolveSettings } from "../shared/settings.js";
import { AgentExit, AgentRunner } from "./agent-runner.js";
import { CiApiError, callControlApi } from "./ci-api-client.js";
import { ciJobOf, uniqueWorkspaceName } from "./ci-job.js";
import { AGENT_SETTINGS, type AgentConfig } from "./config.js";
import { DesiredStateReconciler } from "./desired-state-reconciler.js";
import type { WorkloadStatusReport } from "./workload-control.js";
import { WorkloadSupervisor } from "./workload-supervisor.js";

export const CI_USAGE = `Usage: warren-agent ci [flags] -- CMD [ARGS...]

Runs inside a CI job: creates the job's own workspace on the Warren server (WARREN_SERVER, the
server's URL), proving who the job is with its CI system's OIDC ID token (WARREN_CI_ID_TOKEN or
--id-token-file; in GitHub Actions with \`permissions: id-token: write\` it asks for one itself)
or an enrollment token (WARREN_ENROLL_TOKEN). It prints the workspace's URLs on one line, runs
CMD (an editor server, a notebook, the job's tests...) under the same supervision as "run", and
when CMD exits terminates the workspace and exits with CMD's code. SIGTERM ends CMD and the
workspace; so does losing the job (the agent's parent process going away).

Flags:
  --port N                  expose port N of the job to its owner (repeatable)
  --public-port N           expose port N to anyone, without credentials (repeatable)
  --name NAME               workspace name (default: from the CI job's variables, made unique)
  --hold-on-failure D       when CMD fails, keep the workspace (and ssh into the job) for D, e.g. 30m,
                            or until its owner terminates it
  --ttl D                   time to live of the workspace (default and most: what the credential allows)
  --id-token-file FILE      file holding the job's OIDC ID token
  --audience AUD            audience of the ID token asked for in GitHub Actions (default: WARREN_SERVER)
  --ssh-port N              port of the job's sshd, for ssh <workspace>@<server> (default 22)
  --ssh-user USER           user the SSH front door logs in as on that sshd (default warren)
  --authorize-ssh-key FILE  append the workspace's SSH key (the one the server logs in with) to FILE,
                            e.g. ~/.ssh/authorized_keys of that user
  and the agent's settings (warren-agent --help), e.g. --ca-file, --log-level (default warn here).

Exit codes: CMD's exit code; 1 the server refused the credential or could not be reached;
2 bad command line or settings (no credential, a name or port the server finds invalid).
`;

interface CiOptions {
  readonly config: AgentConfig;
  readonly server: URL;
  readonly name?: string;
  readonly ports: readonly { port: number; public: boolean }[];
  readonly holdOnFailureMs: number;
  readonly ttlMs: number;
  readonly idTokenFile?: string;
  readonly audience?: string;
  readonly sshPort: number;
  readonly sshUser: string;
  readonly authorizeSshKey?: string;
  readonly command: readonly [string, ...string[]];
  readonly logLevelSet: boolean;
}

interface EnrollAnswer {
  workspace: { name: string; urls?: string[]; owner?: string; expireTime?: string; sshPublicKey?: string };
  agentToken: string;
  agentUrl: string;
  sshCommand?: string;
}

/** Flags of `ci` itself; the rest are the agent's settings. */
const CI_FLAGS = new Set(["port", "public-port", "name", "hold-on-failure", "ttl", "id-token-file", "audience", "ssh-port", "ssh-user", "authorize-ssh-key"]);

function fail(code: number, message: string): never {
  process.stderr.write(`warren-agent ci: ${message}\n`);
  process.exit(code);
}

export function parseCiCommandLine(argv: readonly string[], env: NodeJS.ProcessEnv): CiOptions | "help" {
  const end = argv.indexOf("--");
  const flags = end >= 0 ? argv.slice(0, end) : argv;
  const command = end >= 0 ? argv.slice(end + 1) : [];
  const mine = new Map<string, string[]>();
  const rest: string[] = [];
  for (let i = 0; i < flags.length; i++) {
    const arg = flags[i]!;
    const m = /^--([a-z-]+)(?:=(.*))?$/s.exec(arg);
    if (!m || !CI_FLAGS.has(m[1]!)) {
      rest.push(arg);
      continue;
    }
    const value = m[2] ?? flags[++i];
    if (value === undefined) throw new Error(`--${m[1]} needs a value`);
    mine.set(m[1]!, [...(mine.get(m[1]!) ?? []), value]);
  }
  const cli = parseCommandLine(rest, AGENT_SETTINGS);
  if (cli.help) return "help";
  if (cli.positionals.length > 0) throw new Error(`unexpected argument "${cli.positionals[0]}": put the command after "--": warren-agent ci [flags] -- CMD [ARGS...]`);
  if (command.length === 0) throw new Error("ci needs a command: warren-agent ci --port 8000 -- CMD [ARGS...]");
  const configFile = cli.configFile ?? env["WARREN_CONFIG"];
  const file = configFile ? readConfigFile(configFile, AGENT_SETTINGS) : undefined;
  const config = resolveSettings(AGENT_SETTINGS, { flags: cli.values, env, file });
  if (!config.server) throw new Error("no server: set WARREN_SERVER or --server to the Warren server's URL (e.g. https://ws.example.com)");
  const one = (flag: string) => {
    const values = mine.get(flag);
    if (values && values.length > 1) throw new Error(`--${flag} is given ${values.length} times; give it once`);
    return values?.[0];
  };
  const port = (flag: string, raw: string) => {
    try {
      const n = parsePort(raw);
      if (n === 0) throw new Error("port 0 is not a port to expose");
      return n;
    } catch (err) {
      throw new Error(`--${flag}: ${(err as Error).message}`);
    }
  };
  const duration = (flag: string) => {
    const raw = one(flag);
    if (raw === undefined) return 0;
    try {
      return parseDuration(raw);
    } catch (err) {
      throw new Error(`--${flag}: ${(err as Error).message}`);
    }
  };
  const ports = [
    ...(mine.get("port") ?? []).map((raw) => ({ port: port("port", raw), public: false })),
    ...(mine.get("public-port") ?? []).map((raw) => ({ port: port("public-port", raw), public: true })),
  ];
  const seen = new Set<number>();
  for (const p of ports) {
    if (seen.has(p.port)) throw new Error(`port ${p.port} is given twice`);
    seen.add(p.port);
  }
  const name = one("name");
  const idTokenFile = one("id-token-file");
  const audience = one("audience");
  const sshPort = one("ssh-port");
  const sshUser = one("ssh-user");
  const authorizeSshKey = one("authorize-ssh-key");
  return {
    config,
    server: config.server[0]!,
    ...(name !== undefined ? { name } : {}),
    ports,
    holdOnFailureMs: duration("hold-on-failure"),
    ttlMs: duration("ttl"),
    ...(idTokenFile !== undefined ? { idTokenFile } : {}),
    ...(audience !== undefined ? { audience } : {}),
    sshPort: sshPort === undefined ? 0 : port("ssh-port", sshPort),
    sshUser: sshUser ?? "",
    ...(authorizeSshKey !== undefined ? { authorizeSshKey } : {}),
    command: command as [string, ...string[]],
    logLevelSet: cli.values.has("log-level") || Boolean(env["WARREN_LOG_LEVEL"]) || Boolean(file?.has("logLevel")),
  };
}

/** The job's credential: an ID token (file, variable, or GitHub's request endpoint), else an enrollment token. */
async function credentialOf(options: CiOptions, env: NodeJS.ProcessEnv): Promise<string> {
  if (options.idTokenFile) {
    try {
      return readFileSync(options.idTokenFile, "utf8").trim();
    } catch (err) {
      throw new CiApiError(`cannot read --id-token-file ${options.idTokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, "invalid_argument");
    }
  }
  const idToken = env["WARREN_CI_ID_TOKEN"]?.trim();
  if (idToken) return idToken;
  const enrollToken = env["WARREN_ENROLL_TOKEN"]?.trim();
  if (enrollToken) return enrollToken;
  const requestUrl = env["ACTIONS_ID_TOKEN_REQUEST_URL"];
  const requestToken = env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"];
  if (requestUrl && requestToken) return githubIdToken(requestUrl, requestToken, options.audience ?? options.server.origin);
  throw new CiApiError(
    "no credential: set WARREN_CI_ID_TOKEN (GitLab: id_tokens) or --id-token-file, run in GitHub Actions with `permissions: id-token: write`, or set WARREN_ENROLL_TOKEN",
    "invalid_argument",
  );
}

/** Asks GitHub Actions for the job's ID token with the server as its audience. */
async function githubIdToken(requestUrl: string, requestToken: string, audience: string): Promise<string> {
  const url = new URL(requestUrl);
  url.searchParams.set("audience", audience);
  let res: Response;
  try {
    res = await fetch(url, { headers: { authorization: `bearer ${requestToken}`, accept: "application/json" }, signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    throw new CiApiError(`cannot get the job's ID token from GitHub Actions: ${(err as Error).message}`, "unavailable");
  }
  const body = (await res.json().catch(() => ({}))) as { value?: unknown };
  if (!res.ok || typeof body.value !== "string") throw new CiApiError(`GitHub Actions did not give an ID token (HTTP ${res.status}): does the job have \`permissions: id-token: write\`?`, "unavailable");
  return body.value;
}

/** The command as people call it: `node`, not `/usr/bin/node`. */
function commandName(options: CiOptions): string {
  return basename(options.command[0]);
}

/** A line for people in the job's log (stdout: the log lines of the agent are JSON). */
function say(line: string): void {
  process.stdout.write(`warren: ${line}\n`);
}

function summarize(env: NodeJS.ProcessEnv, lines: string[]): void {
  const file = env["GITHUB_STEP_SUMMARY"];
  if (!file) return;
  try {
    appendFileSync(file, `${lines.join("\n")}\n`);
  } catch (err) {
    process.stderr.write(`warren-agent ci: could not append to GITHUB_STEP_SUMMARY: ${(err as Error).message}\n`);
  }
}

/** `warren-agent ci [flags] -- CMD ARGS...`; exits the process. */
export async function runCi(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<never> {
  let options: CiOptions | "help";
  try {
    options = parseCiCommandLine(argv, env);
  } catch (err) {
    fail(AgentExit.Usage, (err as Error).message);
  }
  if (options === "help") {
    process.stdout.write(CI_USAGE);
    process.exit(0);
  }
  const { config } = options;
  const log = createLogger({ name: "warren-agent", level: options.logLevelSet ? config.logLevel : "warn" });
  const ca = config.caFile ? readFileSync(config.caFile) : undefined;
  const job = ciJobOf(env);
  const name = options.name ?? uniqueWorkspaceName(job.nameBase);
  let enrolled: EnrollAnswer;
  try {
    const credential = await credentialOf(options, env);
    enrolled = await callControlApi<EnrollAnswer>(
      options.server,
      "CiService/EnrollWorkspace",
      {
        name,
        ports: options.ports,
        ttlSeconds: Math.round(options.ttlMs / 1000),
        project: job.project,
        job: job.job,
        jobUrl: job.jobUrl,
        sshPort: options.sshPort,
        sshUser: options.sshUser,
      },
      credential,
      ca,
    );
  } catch (err) {
    const e = err as CiApiError;
    if (e.code === "invalid_argument") fail(AgentExit.Usage, e.message);
    fail(AgentExit.Rejected, e.code === "unauthenticated" || e.code === "permission_denied" ? `the server refused the job: ${e.message}` : e.message);
  }
  if (options.authorizeSshKey && enrolled.workspace.sshPublicKey) {
    try {
      appendFileSync(options.authorizeSshKey, `${enrolled.workspace.sshPublicKey}\n`, { mode: 0o600 });
    } catch (err) {
      process.stderr.write(`warren-agent ci: could not append the workspace's SSH key to ${options.authorizeSshKey}: ${(err as Error).message}\n`);
    }
  }
  const urls = enrolled.workspace.urls ?? [];
  say(`workspace ${name} is open at ${urls.join(" ") || "(no ports exposed)"} for ${enrolled.workspace.owner || "its owner"}; it ends with this job`);
  summarize(env, [`### Warren workspace \`${name}\``, "", ...urls.map((u) => `- [${u}](${u})`), ""]);
  const code = await superviseJob(options, enrolled, log, ca, env);
  log.info({ exitCode: code }, "agent stopped");
  setImmediate(() => process.exit(code));
  return new Promise<never>(() => {});
}

/** The job's command under supervision, then its hold and the end of the workspace; resolves with the exit code. */
async function superviseJob(options: CiOptions, enrolled: EnrollAnswer, log: Logger, ca: Buffer | undefined, env: NodeJS.ProcessEnv): Promise<number> {
  const { config } = options;
  const name = enrolled.workspace.name;
  const agentToken = enrolled.agentToken;
  // The command gets the workspace's name and URLs, never the job's credentials.
  const workloadEnv: NodeJS.ProcessEnv = { ...env, WARREN_WORKSPACE: name, WARREN_WORKSPACE_URLS: (enrolled.workspace.urls ?? []).join(" ") };
  for (const secret of ["WARREN_CI_ID_TOKEN", "WARREN_ENROLL_TOKEN", "WARREN_TOKEN"]) delete workloadEnv[secret];
  const workload = new WorkloadSupervisor({ command: options.command, environment: () => workloadEnv, stopTimeoutMs: config.workloadStopTimeout, log: log.child({ component: "workload" }) });
  let finishing = false;
  let runner: AgentRunner | undefined;
  const reconciler = new DesiredStateReconciler({ workload, send: (report) => void runner?.reportWorkload(report), log });
  let wakeHold: (() => void) | undefined;
  let agentServer: URL;
  try {
    agentServer = new URL(enrolled.agentUrl || options.server.origin);
  } catch {
    agentServer = options.server;
  }
  runner = new AgentRunner({
    servers: [agentServer],
    token: () => agentToken,
    ...(ca ? { ca } : {}),
    pool: { minIdle: config.poolMinIdle, maxStreams: config.poolMaxStreams, burst: config.poolBurst, idleTimeoutMs: config.poolIdleTimeout },
    dialTimeoutMs: config.dialTimeout,
    liveness: { intervalMs: config.pingInterval, timeoutMs: config.pingTimeout },
    log,
    onReady: (welcome) => log.info({ event: "ready", workspace: welcome.workspace, urls: welcome.urls }, "warren agent ready"),
    onDesiredState: (state) => {
      // Terminated by its owner (or its time to live): a hold ends now.
      if (state === WorkspaceDesiredState.TERMINATED) wakeHold?.();
      if (!finishing) void reconciler.apply(state);
    },
  });
  const agent = runner;
  const agentDone = agent.run();
  let signalled = false;
  const ended = new Promise<WorkloadStatusReport>((resolve) => {
    workload.onStatus((report) => {
      const over = report.status === "Stopped" || report.status === "Failed" || report.status === "Error";
      if (over && (report.byItself || signalled)) resolve(report);
    });
  });
  let stopRequested: (why: string) => void = () => {};
  const stopped = new Promise<string>((resolve) => (stopRequested = resolve));
  const onStop = (why: string) => {
    if (signalled) return;
    signalled = true;
    log.warn({ why }, "stopping the job's command and its workspace");
    stopRequested(why);
    wakeHold?.();
    if (!workload.signal("SIGTERM")) void workload.stop();
  };
  process.on("SIGTERM", () => onStop("SIGTERM"));
  process.on("SIGINT", () => onStop("SIGINT"));
  // A job killed by its CI system (SIGKILL to the shell) leaves the agent to init: it goes too.
  const parent = process.ppid;
  const orphanWatch = setInterval(() => {
    if (process.ppid !== parent) onStop("the job's process went away");
  }, 500);
  orphanWatch.unref();

  const first = await Promise.race([
    ended.then((report) => ({ kind: "workload" as const, report })),
    agentDone.then((code) => ({ kind: "agent" as const, code })),
  ]);
  let exitCode: number;
  let finalReport: WorkloadStatusReport | undefined;
  if (first.kind === "agent") {
    // Refused: the workspace was terminated (by its owner, its time to live) or deleted.
    finishing = true;
    await workload.stop();
    exitCode = workload.current?.exitCode ?? first.code;
    say(`workspace ${name} was ended on the server; the job's command was stopped`);
    clearInterval(orphanWatch);
    return exitCode === 0 ? AgentExit.Rejected : exitCode;
  }
  finalReport = first.report;
  exitCode = first.report.exitCode ?? 0;
  if (exitCode !== 0 && options.holdOnFailureMs > 0 && !signalled) {
    await hold(options, name, enrolled.sshCommand ?? "", exitCode, agentToken, log, ca, agentDone, stopped, (wake) => (wakeHold = wake));
  }
  finishing = true;
  clearInterval(orphanWatch);
  try {
    await callControlApi(options.server, "CiService/FinishWorkspace", {}, agentToken, ca);
  } catch (err) {
    // Already ended (terminated by its owner, time to live): nothing left to do.
    if ((err as CiApiError).code !== "unauthenticated") log.warn({ err: (err as Error).message }, "could not end the workspace; it ends with its time to live");
  }
  say(`${commandName(options)} exited with code ${exitCode}; workspace ${name} is terminated`);
  // The server completes the termination once it hears the command is over.
  await agent.reportWorkload(DesiredStateReconciler.toMessage(finalReport), 1000);
  await agent.stop(Math.min(config.shutdownTimeout, 2000));
  await Promise.race([agentDone, new Promise((resolve) => setTimeout(resolve, 3000).unref())]);
  return exitCode;
}

/** Keeps the failed job's workspace for a person, until the hold passes, its owner ends it, or the job is stopped. */
async function hold(
  options: CiOptions,
  name: string,
  sshCommand: string,
  exitCode: number,
  agentToken: string,
  log: Logger,
  ca: Buffer | undefined,
  agentDone: Promise<number>,
  stopped: Promise<string>,
  setWake: (wake: () => void) => void,
): Promise<void> {
  let answer: { workspace: { urls?: string[]; ci?: { holdExpireTime?: string } } };
  try {
    answer = await callControlApi(options.server, "CiService/HoldWorkspace", { holdSeconds: Math.ceil(options.holdOnFailureMs / 1000), exitCode }, agentToken, ca);
  } catch (err) {
    log.warn({ err: (err as Error).message }, "could not hold the workspace");
    say(`${commandName(options)} failed with exit code ${exitCode}; the workspace could not be held: ${(err as Error).message}`);
    return;
  }
  const until = answer.workspace.ci?.holdExpireTime ? new Date(answer.workspace.ci.holdExpireTime) : new Date(Date.now() + options.holdOnFailureMs);
  const ms = Math.max(0, until.getTime() - Date.now());
  // The hold asked for, unless the workspace's time to live cut it short (the call itself takes a moment).
  const capped = ms < options.holdOnFailureMs - 5000;
  const length = capped ? `${formatDuration(Math.round(ms / 1000) * 1000)}, all its time to live allows` : formatDuration(options.holdOnFailureMs);
  say(
    `${commandName(options)} failed with exit code ${exitCode}; workspace ${name} is held for ${length} (until ${until.toISOString()}) at ${(answer.workspace.urls ?? []).join(" ")}${sshCommand ? ` and by ${sshCommand}` : ""}; terminate it to end the hold`,
  );
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    setWake(() => {
      clearTimeout(timer);
      resolve();
    });
    void agentDone.then(() => {
      clearTimeout(timer);
      resolve();
    });
    void stopped.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
