import { WorkloadState, WorkspaceDesiredState } from "../shared/gen/warren/v1/agent_pb.js";
import type { Logger } from "../shared/logger.js";
import type { WorkloadControl, WorkloadStatus, WorkloadStatusReport } from "./workload-control.js";

/** A report for the server (WorkloadReport on the control stream). */
export interface WorkloadReportMessage {
  readonly state: WorkloadState;
  readonly exitCode: number;
  readonly message: string;
}

export interface DesiredStateReconcilerOptions {
  readonly workload: WorkloadControl;
  /** Sends a report on the current control stream; dropped when there is none (the next connect re-reports). */
  readonly send: (report: WorkloadReportMessage) => void;
  readonly log: Logger;
}

const TO_PROTO: Record<WorkloadStatus, WorkloadState> = {
  Starting: WorkloadState.STARTING,
  Running: WorkloadState.RUNNING,
  Stopping: WorkloadState.STOPPING,
  Stopped: WorkloadState.STOPPED,
  Failed: WorkloadState.FAILED,
  Error: WorkloadState.ERROR,
};

/**
 * Acts on the desired state the server sends and reports the workload's status back:
 * Running starts the workload, Stopped stops it, RestartRequested stops it and says so (the
 * server then asks for Running, which starts it again), Terminated stops it before the server
 * disconnects the agent. Desired states are applied one at a time, in the order they came.
 */
export class DesiredStateReconciler {
  readonly #options: DesiredStateReconcilerOptions;
  #queue: Promise<void> = Promise.resolve();
  #reports = 0;

  constructor(options: DesiredStateReconcilerOptions) {
    this.#options = options;
    options.workload.onStatus((report) => this.#report(report));
  }

  /** A (re)connected control stream: the server learns what the workload is doing now. */
  onConnected(): void {
    const current = this.#options.workload.current;
    if (current) this.#report(current);
  }

  apply(desired: WorkspaceDesiredState): Promise<void> {
    this.#queue = this.#queue.then(() => this.#apply(desired)).catch((err: Error) => {
      this.#options.log.error({ err: err.message }, "could not apply the desired state");
    });
    return this.#queue;
  }

  async #apply(desired: WorkspaceDesiredState): Promise<void> {
    const { workload, log } = this.#options;
    log.info({ desired: WorkspaceDesiredState[desired] }, "desired state received");
    switch (desired) {
      case WorkspaceDesiredState.RUNNING:
        await workload.start();
        return;
      case WorkspaceDesiredState.STOPPED:
        await workload.stop();
        return;
      case WorkspaceDesiredState.RESTART_REQUESTED:
      case WorkspaceDesiredState.TERMINATED: {
        const before = this.#reports;
        await workload.stop();
        // The server waits for a Stopped report even when there was nothing to stop.
        if (this.#reports === before && workload.current) this.#report(workload.current);
        return;
      }
      default:
        log.warn({ desired }, "ignoring an unknown desired state");
    }
  }

  /** The wire form of a status report. */
  static toMessage(report: WorkloadStatusReport): WorkloadReportMessage {
    return { state: TO_PROTO[report.status], exitCode: report.exitCode ?? 0, message: report.message ?? "" };
  }

  #report(report: WorkloadStatusReport): void {
    this.#reports++;
    this.#options.send(DesiredStateReconciler.toMessage(report));
  }
}
