/**
 * The agent's handle on the workload it supervises (`warren-agent run -- CMD`), driven by the
 * workspace's desired state (see desired-state-reconciler.ts). The names of the statuses are
 * those of WorkloadReport in agent.proto.
 */
export type WorkloadStatus = "Starting" | "Running" | "Stopping" | "Stopped" | "Failed" | "Error";

export interface WorkloadStatusReport {
  readonly status: WorkloadStatus;
  /** Exit code once the process has exited (Stopped or Failed). */
  readonly exitCode?: number;
  /** What happened, for people (never holds variable values). */
  readonly message?: string;
  /** The process ended without being asked to (no stop(), no signal passed on). */
  readonly byItself?: boolean;
}

/**
 * Contract:
 * - Every change of status is told to the onStatus listeners, in order, as it happens:
 *   start gives Starting then Running (or Error when it cannot start); stop gives Stopping
 *   then Stopped; a workload that exits by itself gives Stopped (exit code 0) or Failed.
 * - start, stop and restart never reject and are idempotent: start on a running workload and
 *   stop on a stopped one resolve at once without a status change. Calls are serialized: a
 *   call waits for the one before it to finish.
 * - start resolves once the workload runs (or failed to start); stop resolves once it has
 *   exited, sending SIGTERM first and SIGKILL after the stop timeout.
 * - The caller owns the lifetime: call stop() before the agent exits.
 */
export interface WorkloadControl {
  /** The last status, undefined before the first start. */
  readonly current: WorkloadStatusReport | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** stop() then start(). */
  restart(): Promise<void>;
  /**
   * Passes a signal the agent received (SIGTERM, SIGINT) on to the running workload; its end
   * then counts as requested (Stopped). False when nothing runs. Never blocks.
   */
  signal(signal: NodeJS.Signals): boolean;
  /** Adds a listener for every status change. Listeners must not throw. */
  onStatus(listener: (report: WorkloadStatusReport) => void): void;
}
