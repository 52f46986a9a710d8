import type { WorkloadControl, WorkloadStatusReport } from "./workload-control.js";

/**
 * The workload of a plain `warren-agent` (no command to supervise): the tunnel itself. It
 * "runs" when the workspace should run and "stops" when it should stop, so the workspace's
 * actual state follows its desired state (a stopped workspace takes no traffic).
 */
export class NoWorkload implements WorkloadControl {
  #current: WorkloadStatusReport | undefined;
  readonly #listeners: Array<(report: WorkloadStatusReport) => void> = [];

  get current(): WorkloadStatusReport | undefined {
    return this.#current;
  }

  async start(): Promise<void> {
    if (this.#current?.status !== "Running") this.#set({ status: "Running" });
  }

  async stop(): Promise<void> {
    if (this.#current?.status !== "Stopped") this.#set({ status: "Stopped" });
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  signal(): boolean {
    return false;
  }

  onStatus(listener: (report: WorkloadStatusReport) => void): void {
    this.#listeners.push(listener);
  }

  #set(report: WorkloadStatusReport): void {
    this.#current = report;
    for (const l of this.#listeners) l(report);
  }
}
