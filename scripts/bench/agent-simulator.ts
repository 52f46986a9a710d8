// node dist/bench.cjs --simulate-agents --server http://127.0.0.1:8150 --tokens FILE
//
// Many real agents in one process: each runs the agent's own AgentRunner, AgentSession and
// TunnelPool (the real protocol, the default pool settings, the real reconnect backoff) with
// its own token, and answers dials like `warren-agent` without a workload (NoWorkload), so a
// workspace reached through the server gets the app on 127.0.0.1:<port>.
//
// Commands, one JSON object a line on stdin:
//   {"cmd":"start","count":N}   starts the next N agents of the token file
//   {"cmd":"stop"}              stops every agent and exits
// Status, one JSON object a line on stdout ({"sim":...}), every 250 ms and after each command.
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { Writable } from "node:stream";
import { pino, type LevelWithSilent } from "pino";
import { AgentExit, AgentRunner } from "../../agent/agent-runner.js";
import { AGENT_SETTINGS } from "../../agent/config.js";
import { DesiredStateReconciler } from "../../agent/desired-state-reconciler.js";
import { NoWorkload } from "../../agent/no-workload.js";
import { parseDuration } from "../../shared/settings.js";

export interface SimulatorStatus {
  readonly sim: "status";
  /** Agents started so far. */
  readonly started: number;
  /** Agents whose current session has been welcomed (pool opened). */
  readonly ready: number;
  /** Agents whose run ended because the server refused their token. */
  readonly gaveUp: number;
  /** Sessions that ended and were retried (every reconnect attempt counts). */
  readonly sessionEnds: number;
  /** Welcomes received, in total. */
  readonly welcomes: number;
  /** Why sessions ended ("disconnected; reconnecting" reasons, numbers masked), with counts. */
  readonly endReasons: Record<string, number>;
  readonly rss: number;
  readonly heapUsed: number;
}

interface SimAgent {
  readonly runner: AgentRunner;
  ready: boolean;
}

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

export async function runAgentSimulator(args: string[]): Promise<void> {
  const server = option(args, "--server");
  const tokensFile = option(args, "--tokens");
  if (!server || !tokensFile) throw new Error("--simulate-agents needs --server URL and --tokens FILE");
  const tokens = readFileSync(tokensFile, "utf8").split("\n").map((t) => t.trim()).filter(Boolean);
  // Agents log to stderr (stdout is the status channel); only errors by default.
  // Warnings and above are read for the reasons sessions end (the storm's figures say why agents
  // failed, not only how often); errors, and everything at WARREN_SIM_LOG_LEVEL, go to stderr.
  const endReasons: Record<string, number> = {};
  const printLevel = pino.levels.values[(process.env["WARREN_SIM_LOG_LEVEL"] ?? "error") as LevelWithSilent] ?? 50;
  const stderr = pino.destination(2);
  const tally = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split("\n")) {
        if (!line) continue;
        const entry = JSON.parse(line) as { level: number; msg?: string; reason?: string };
        if (entry.reason) {
          const key = `${entry.msg}: ${entry.reason.replace(/\d+/g, "N")}`;
          endReasons[key] = (endReasons[key] ?? 0) + 1;
        }
        if (entry.level >= printLevel) stderr.write(`${line}\n`);
      }
      callback();
    },
  });
  const log = pino({ name: "agent-simulator", level: "info" }, tally);
  const pool = {
    minIdle: AGENT_SETTINGS.poolMinIdle.default!,
    maxStreams: AGENT_SETTINGS.poolMaxStreams.default!,
    burst: AGENT_SETTINGS.poolBurst.default!,
    idleTimeoutMs: AGENT_SETTINGS.poolIdleTimeout.default!,
  };
  // The agent's own liveness settings, from the same variables (the bench compares ping intervals).
  const env = process.env;
  const liveness = {
    intervalMs: env["WARREN_AGENT_PING_INTERVAL"] ? parseDuration(env["WARREN_AGENT_PING_INTERVAL"]) : AGENT_SETTINGS.pingInterval.default!,
    timeoutMs: env["WARREN_AGENT_PING_TIMEOUT"] ? parseDuration(env["WARREN_AGENT_PING_TIMEOUT"]) : AGENT_SETTINGS.pingTimeout.default!,
  };
  const servers = [new URL(server)];
  const agents: SimAgent[] = [];
  const counters = { ready: 0, gaveUp: 0, sessionEnds: 0, welcomes: 0 };
  const done: Array<Promise<number>> = [];

  const startOne = (token: string) => {
    const workload = new NoWorkload();
    let runner: AgentRunner | undefined;
    const reconciler = new DesiredStateReconciler({ workload, send: (report) => void runner?.reportWorkload(report), log });
    const agent: SimAgent = {
      ready: false,
      runner: (runner = new AgentRunner({
        servers,
        token: () => token,
        pool,
        dialTimeoutMs: AGENT_SETTINGS.dialTimeout.default!,
        liveness,
        log,
        onReady: () => {
          counters.welcomes++;
          if (!agent.ready) counters.ready++;
          agent.ready = true;
        },
        onDesiredState: (state) => void reconciler.apply(state),
        onSession: (session) => {
          if (session) return;
          counters.sessionEnds++;
          if (agent.ready) counters.ready--;
          agent.ready = false;
        },
      })),
    };
    agents.push(agent);
    done.push(
      agent.runner.run().then((code) => {
        if (code === AgentExit.Rejected) counters.gaveUp++;
        return code;
      }),
    );
  };

  const status = (): SimulatorStatus => {
    const m = process.memoryUsage();
    return { sim: "status", started: agents.length, ...counters, endReasons, rss: m.rss, heapUsed: m.heapUsed };
  };
  const report = () => process.stdout.write(`${JSON.stringify(status())}\n`);
  const timer = setInterval(report, 250);

  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const command = JSON.parse(line) as { cmd: string; count?: number };
    if (command.cmd === "start") {
      const end = Math.min(tokens.length, agents.length + (command.count ?? 0));
      while (agents.length < end) startOne(tokens[agents.length]!);
    } else if (command.cmd === "stop") {
      break;
    }
    report();
  }
  clearInterval(timer);
  await Promise.all(agents.map((a) => a.runner.stop(0)));
  await Promise.race([Promise.allSettled(done), new Promise((r) => setTimeout(r, 3000))]);
  report();
  process.exit(0);
}
