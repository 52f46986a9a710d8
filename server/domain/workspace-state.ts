import { ErrorCode, WarrenError } from "../../shared/errors.js";

/**
 * Workspace states, after the remote-development design Warren descends from. The desired
 * state is what people asked for; the actual state is what the agent reports. The server
 * sends the desired state to the agent, the agent acts on its workload and reports back, and
 * the functions here decide every change. They are pure: the manager stores their results.
 */
export const DesiredState = {
  Running: "Running",
  Stopped: "Stopped",
  Terminated: "Terminated",
  RestartRequested: "RestartRequested",
} as const;
export type DesiredState = (typeof DesiredState)[keyof typeof DesiredState];

export const ActualState = {
  CreationRequested: "CreationRequested",
  Starting: "Starting",
  Running: "Running",
  Stopping: "Stopping",
  Stopped: "Stopped",
  Failed: "Failed",
  Error: "Error",
  Terminating: "Terminating",
  Terminated: "Terminated",
  Unknown: "Unknown",
} as const;
export type ActualState = (typeof ActualState)[keyof typeof ActualState];

/** What the agent says about its workload (WorkloadReport.state). */
export type WorkloadStatus = "Starting" | "Running" | "Stopping" | "Stopped" | "Failed" | "Error";

const A = ActualState;
/**
 * Legal changes of the actual state. Any state may become Unknown (the reporting agent went
 * away) or Terminating (terminate requested), except the final Terminated. Running may become
 * Stopped directly: a workload that exits 0 on its own has stopped without being asked to.
 */
const LEGAL: Record<ActualState, readonly ActualState[]> = {
  [A.CreationRequested]: [A.Starting, A.Running, A.Stopping, A.Stopped, A.Failed, A.Error],
  [A.Starting]: [A.Running, A.Stopping, A.Stopped, A.Failed, A.Error],
  [A.Running]: [A.Stopping, A.Stopped, A.Failed, A.Error],
  [A.Stopping]: [A.Stopped, A.Failed, A.Error],
  [A.Stopped]: [A.Starting, A.Running, A.Failed, A.Error],
  [A.Failed]: [A.Starting, A.Running, A.Stopping, A.Stopped, A.Error],
  [A.Error]: [A.Starting, A.Running, A.Stopping, A.Stopped, A.Failed],
  [A.Terminating]: [A.Terminated],
  [A.Terminated]: [],
  // A reconnecting agent reports whatever its workload is doing now.
  [A.Unknown]: [A.Starting, A.Running, A.Stopping, A.Stopped, A.Failed, A.Error],
};

/** Whether the actual state may change from `from` to `to` (staying the same is no change). */
export function isLegalTransition(from: ActualState, to: ActualState): boolean {
  if (from === to || from === A.Terminated) return false;
  // A terminating workspace ends Terminated whether or not its agent is still there.
  if (to === A.Unknown) return from !== A.Terminating;
  if (to === A.Terminating) return true;
  return LEGAL[from].includes(to);
}

/** The states of one workspace. */
export interface WorkspaceStates {
  readonly desired: DesiredState;
  readonly actual: ActualState;
}

/** What a person asks for through the API. */
export type LifecycleAction = "stop" | "start" | "restart" | "terminate";

/**
 * The states after an API action. Terminated is final: every other action on it fails with
 * failed_precondition. Stop and start are idempotent; a restart always goes through
 * RestartRequested, so the agent is told even when its workload is already stopped.
 */
export function applyAction(states: WorkspaceStates, action: LifecycleAction, name: string): WorkspaceStates {
  const { desired, actual } = states;
  if (desired === DesiredState.Terminated) {
    if (action === "terminate") return states;
    throw new WarrenError(ErrorCode.FailedPrecondition, `workspace "${name}" is terminated; create a new one`);
  }
  switch (action) {
    case "stop":
      return { desired: DesiredState.Stopped, actual };
    case "start":
      if (desired === DesiredState.Stopped) return { desired: DesiredState.Running, actual };
      // Already meant to run but the workload is down (it failed or stopped on its own): the
      // agent restarts it, by the same stop-then-start path as a restart.
      if (desired === DesiredState.Running && (actual === A.Stopped || actual === A.Failed || actual === A.Error)) {
        return { desired: DesiredState.RestartRequested, actual };
      }
      return states;
    case "restart":
      return { desired: DesiredState.RestartRequested, actual };
    case "terminate":
      return { desired: DesiredState.Terminated, actual: A.Terminating };
  }
}

/**
 * The states after an agent reports its workload. Under RestartRequested, a Stopped report
 * turns the desired state back to Running (the agent then starts the workload again). While
 * terminating, the workload stopping completes the termination.
 */
export function applyReport(states: WorkspaceStates, status: WorkloadStatus): WorkspaceStates {
  const { desired, actual } = states;
  if (actual === A.Terminated) return states;
  if (desired === DesiredState.Terminated) {
    if (status === "Stopped" || status === "Failed" || status === "Error") return { desired, actual: A.Terminated };
    return { desired, actual: A.Terminating };
  }
  const next = status as ActualState;
  if (desired === DesiredState.RestartRequested && next === A.Stopped) return { desired: DesiredState.Running, actual: next };
  return { desired, actual: next };
}

/** The states after the agent whose report set the actual state has gone away. */
export function applyAgentGone(states: WorkspaceStates): WorkspaceStates {
  const { desired, actual } = states;
  if (actual === A.Terminated || actual === A.CreationRequested || actual === A.Unknown) return states;
  // Nobody is left to stop the workload: termination is complete as far as Warren can tell.
  if (desired === DesiredState.Terminated) return { desired, actual: A.Terminated };
  return { desired, actual: A.Unknown };
}

/** Whether the workspace should carry traffic: it is neither stopped nor on its way out. */
export function acceptsTraffic(desired: DesiredState): boolean {
  return desired === DesiredState.Running || desired === DesiredState.RestartRequested;
}
