import { spawn, type ChildProcess } from "node:child_process";
import { constants } from "node:os";
import type { Logger } from "../shared/logger.js";
import type { WorkloadControl, WorkloadStatusReport } from "./workload-control.js";

export interface WorkloadSupervisorOptions {
  /** The program and its arguments (`warren-agent run -- CMD ARGS...`). */
  readonly command: readonly string[];
  /** The environment of each start: the agent's own plus the workspace's variables. */
  readonly environment: () => NodeJS.ProcessEnv;
  /** How long the workload may take to exit after SIGTERM before SIGKILL. */
  readonly stopTimeoutMs: number;
  readonly log: Logger;
  /** The I/O piece, swappable in tests. */
  readonly spawnProcess?: typeof spawn;
}

/**
 * Supervises one process: starts it, stops it (SIGTERM to its process group, SIGKILL after
 * the stop timeout), restarts it, and reports every status change. The process runs in its
 * own process group so that stopping it also stops what it started (a shell's children).
 * Its stdout and stderr are the agent's. It is not restarted when it exits by itself: the
 * desired state decides (StartWorkspace or RestartWorkspace bring it back).
 */
export class WorkloadSupervisor implements WorkloadControl {
  readonly #options: WorkloadSupervisorOptions;
  readonly #listeners: Array<(report: WorkloadStatusReport) => void> = [];
  #current: WorkloadStatusReport | undefined;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #stopping = false;
  /** The signal passed on to the workload, if any: its end then counts as requested. */
  #passedSignal: NodeJS.Signals | undefined;
  /** Calls run one after another. */
  #queue: Promise<void> = Promise.resolve();

  constructor(options: WorkloadSupervisorOptions) {
    if (options.command.length === 0) throw new Error("no command to supervise");
    this.#options = options;
  }

  get current(): WorkloadStatusReport | undefined {
    return this.#current;
  }

  /** Process id of the running workload, if any (for tests and logs). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  onStatus(listener: (report: WorkloadStatusReport) => void): void {
    this.#listeners.push(listener);
  }

  start(): Promise<void> {
    return this.#enqueue(() => this.#start());
  }

  stop(): Promise<void> {
    return this.#enqueue(() => this.#stop());
  }

  signal(signal: NodeJS.Signals): boolean {
    const child = this.#child;
    if (!child) return false;
    this.#passedSignal ??= signal;
    this.#options.log.info({ signal, pid: child.pid }, "passing the signal to the workload");
    this.#signal(child, signal);
    return true;
  }

  restart(): Promise<void> {
    return this.#enqueue(async () => {
      await this.#stop();
      await this.#start();
    });
  }

  #enqueue(op: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(op, op);
    this.#queue = next.catch(() => undefined);
    return this.#queue;
  }

  #set(report: WorkloadStatusReport): void {
    this.#current = report;
    this.#options.log.info({ event: "workload", status: report.status, exitCode: report.exitCode, pid: this.#child?.pid }, `workload ${report.status.toLowerCase()}${report.message ? `: ${report.message}` : ""}`);
    for (const l of this.#listeners) l(report);
  }

  async #start(): Promise<void> {
    if (this.#child) return;
    const [program, ...args] = this.#options.command as [string, ...string[]];
    this.#set({ status: "Starting" });
    let child: ChildProcess;
    try {
      child = (this.#options.spawnProcess ?? spawn)(program, args, { env: this.#options.environment(), stdio: ["ignore", "inherit", "inherit"], detached: true });
    } catch (err) {
      this.#set(cannotStart(program, err as NodeJS.ErrnoException));
      return;
    }
    const started = await new Promise<boolean>((resolve) => {
      child.once("spawn", () => resolve(true));
      child.once("error", (err: NodeJS.ErrnoException) => {
        this.#set(cannotStart(program, err));
        resolve(false);
      });
    });
    if (!started) return;
    this.#child = child;
    this.#exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.#child = undefined;
        const passed = this.#passedSignal;
        const requested = this.#stopping || passed !== undefined;
        this.#stopping = false;
        this.#passedSignal = undefined;
        // The shell's convention: 128+N when signal N killed it.
        const exitCode = code ?? 128 + signalNumber(signal);
        const how = signal ? `was killed by ${signal}` : `exited with code ${code}${passed ? ` after ${passed}` : ""}`;
        const byItself = !requested;
        if (requested || code === 0) this.#set({ status: "Stopped", exitCode, message: how, byItself });
        else this.#set({ status: "Failed", exitCode, message: how, byItself });
        resolve();
      });
    });
    this.#set({ status: "Running" });
  }

  async #stop(): Promise<void> {
    const child = this.#child;
    if (!child) {
      // Also after a failure: "stopped" is what was asked for, and a restart waits for it.
      if (this.#current?.status !== "Stopped") this.#set({ status: "Stopped", exitCode: this.#current?.exitCode });
      return;
    }
    this.#stopping = true;
    this.#set({ status: "Stopping" });
    this.#signal(child, "SIGTERM");
    const timer = setTimeout(() => {
      this.#options.log.warn({ timeoutMs: this.#options.stopTimeoutMs }, "workload did not exit after SIGTERM; sending SIGKILL");
      this.#signal(child, "SIGKILL");
    }, this.#options.stopTimeoutMs);
    await this.#exited;
    clearTimeout(timer);
  }

  #signal(child: ChildProcess, signal: NodeJS.Signals): void {
    try {
      // The whole process group: the workload and whatever it started.
      process.kill(-child.pid!, signal);
    } catch {
      child.kill(signal);
    }
  }
}

/** A command that cannot start ends like it would in a shell: 127 not found, 126 not executable. */
function cannotStart(program: string, err: NodeJS.ErrnoException): WorkloadStatusReport {
  const exitCode = err.code === "ENOENT" ? 127 : err.code === "EACCES" ? 126 : 1;
  const why = err.code === "ENOENT" ? "not found" : err.code === "EACCES" ? "not executable" : (err.code ?? err.message);
  return { status: "Failed", exitCode, message: `could not start "${program}": ${why}`, byItself: true };
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal ? (constants.signals[signal] ?? 0) : 0;
}
