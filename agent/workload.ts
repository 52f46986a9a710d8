import { spawn, type ChildProcess } from "node:child_process";
import { constants } from "node:os";
import { WorkloadState } from "../shared/gen/warren/v1/agent_pb.js";
import type { Logger } from "../shared/logger.js";

/** What the agent reports to the server about its workload (proto WorkloadReport). */
export interface WorkloadStatus {
  readonly state: WorkloadState;
  readonly exitCode: number;
  readonly message: string;
}

/** How the workload ended: the agent's exit code, and the final report. */
export interface WorkloadExit {
  /** The workload's exit code; 128+N when signal N killed it; 127/126 when it could not start. */
  readonly exitCode: number;
  readonly status: WorkloadStatus;
}

export interface WorkloadOptions {
  readonly command: string;
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly log: Logger;
  /** Called with STARTING, then RUNNING; the end comes as the result of start(). */
  readonly onStatus?: (status: WorkloadStatus) => void;
}

/**
 * The process `warren-agent run -- CMD ARGS...` supervises: started with the agent's stdin,
 * stdout and stderr, sent the signals the agent receives, and watched until it exits.
 */
export class Workload {
  readonly #options: WorkloadOptions;
  #child: ChildProcess | undefined;
  #stopSignal: NodeJS.Signals | undefined;
  #exited: Promise<WorkloadExit> | undefined;

  constructor(options: WorkloadOptions) {
    this.#options = options;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts the process once; resolves when it has exited (never rejects). */
  start(): Promise<WorkloadExit> {
    this.#exited ??= new Promise<WorkloadExit>((resolve) => {
      const { command, args, env, log, onStatus } = this.#options;
      onStatus?.({ state: WorkloadState.STARTING, exitCode: 0, message: "" });
      let spawned = false;
      let settled = false;
      const finish = (exit: WorkloadExit) => {
        if (settled) return;
        settled = true;
        log.info({ event: "workload-exit", state: WorkloadState[exit.status.state], exitCode: exit.exitCode }, `workload ${exit.status.message}`);
        resolve(exit);
      };
      const child = spawn(command, [...args], { env, stdio: "inherit" });
      this.#child = child;
      child.once("spawn", () => {
        spawned = true;
        log.info({ event: "workload-start", workloadPid: child.pid, command: [command, ...args] }, `started workload "${command}"`);
        onStatus?.({ state: WorkloadState.RUNNING, exitCode: 0, message: "" });
      });
      child.once("error", (err: NodeJS.ErrnoException) => {
        if (spawned) return;
        // The shell's conventions: 127 not found, 126 found but not executable.
        const exitCode = err.code === "ENOENT" ? 127 : err.code === "EACCES" ? 126 : 1;
        const why = err.code === "ENOENT" ? "not found" : err.code === "EACCES" ? "not executable" : err.message;
        finish({ exitCode, status: { state: WorkloadState.FAILED, exitCode, message: `could not start "${command}": ${why}` } });
      });
      child.once("exit", (code, signal) => finish(this.#exitOf(code, signal)));
    });
    return this.#exited;
  }

  /** Passes a signal on (SIGTERM, SIGINT); a stop signal makes the end a STOPPED, not a FAILED. */
  signal(signal: NodeJS.Signals): void {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    if (signal === "SIGTERM" || signal === "SIGINT") this.#stopSignal ??= signal;
    this.#options.log.info({ signal, workloadPid: child.pid }, "passing the signal to the workload");
    try {
      child.kill(signal);
    } catch {
      // Already gone: its exit event follows.
    }
  }

  /** Stops it: SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  async stop(graceMs: number): Promise<WorkloadExit> {
    const exited = this.#exited;
    if (!exited) throw new Error("the workload was never started");
    this.signal("SIGTERM");
    const timer = setTimeout(() => this.signal("SIGKILL"), graceMs);
    const exit = await exited;
    clearTimeout(timer);
    return exit;
  }

  #exitOf(code: number | null, signal: NodeJS.Signals | null): WorkloadExit {
    const exitCode = code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    const stopped = code === 0 || this.#stopSignal !== undefined;
    const message = this.#stopSignal && !signal ? `${how} after ${this.#stopSignal}` : how;
    return { exitCode, status: { state: stopped ? WorkloadState.STOPPED : WorkloadState.FAILED, exitCode, message } };
  }
}
