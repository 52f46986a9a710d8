import { describe, expect, it } from "vitest";
import { ActualState as A, applyAction, applyAgentGone, applyReport, DesiredState as D, isLegalTransition } from "./workspace-state.js";

describe("workspace state machine", () => {
  it("allows the transitions of the lifecycle and refuses the others", () => {
    const legal: Array<[A, A]> = [
      [A.CreationRequested, A.Starting],
      [A.CreationRequested, A.Running],
      [A.Starting, A.Running],
      [A.Starting, A.Failed],
      [A.Running, A.Stopping],
      [A.Running, A.Failed],
      [A.Stopping, A.Stopped],
      [A.Stopped, A.Starting],
      [A.Failed, A.Starting],
      [A.Failed, A.Stopped],
      [A.Running, A.Unknown],
      [A.Unknown, A.Running],
      [A.Running, A.Terminating],
      [A.Terminating, A.Terminated],
    ];
    for (const [from, to] of legal) expect(isLegalTransition(from, to), `${from} -> ${to}`).toBe(true);
    const illegal: Array<[A, A]> = [
      [A.Stopped, A.Stopping],
      [A.Stopping, A.Running],
      [A.Stopping, A.Starting],
      [A.Running, A.Starting],
      [A.Running, A.CreationRequested],
      [A.Terminated, A.Running],
      [A.Terminated, A.Unknown],
      [A.Terminating, A.Running],
      [A.Terminating, A.Unknown],
      [A.Running, A.Running],
      [A.Running, A.Terminated],
    ];
    for (const [from, to] of illegal) expect(isLegalTransition(from, to), `${from} -> ${to}`).toBe(false);
  });

  it("stop, start and restart set the desired state; the actual state waits for the agent", () => {
    const running = { desired: D.Running, actual: A.Running };
    expect(applyAction(running, "stop", "w")).toEqual({ desired: D.Stopped, actual: A.Running });
    expect(applyAction({ desired: D.Stopped, actual: A.Stopped }, "start", "w")).toEqual({ desired: D.Running, actual: A.Stopped });
    expect(applyAction(running, "restart", "w")).toEqual({ desired: D.RestartRequested, actual: A.Running });
    expect(applyAction(running, "start", "w")).toBe(running);
    // A workload that died while it should run: start brings it back by way of a restart.
    expect(applyAction({ desired: D.Running, actual: A.Failed }, "start", "w")).toEqual({ desired: D.RestartRequested, actual: A.Failed });
  });

  it("returns from RestartRequested to Running once a Stopped report arrives", () => {
    let s = { desired: D.RestartRequested, actual: A.Running } as { desired: D; actual: A };
    s = applyReport(s, "Stopping");
    expect(s).toEqual({ desired: D.RestartRequested, actual: A.Stopping });
    s = applyReport(s, "Stopped");
    expect(s).toEqual({ desired: D.Running, actual: A.Stopped });
    s = applyReport(s, "Starting");
    s = applyReport(s, "Running");
    expect(s).toEqual({ desired: D.Running, actual: A.Running });
  });

  it("terminates: Terminating until the workload stops, then Terminated for good", () => {
    let s = applyAction({ desired: D.Stopped, actual: A.Stopped }, "terminate", "w");
    expect(s).toEqual({ desired: D.Terminated, actual: A.Terminating });
    expect(applyReport(s, "Stopping")).toEqual({ desired: D.Terminated, actual: A.Terminating });
    s = applyReport(s, "Stopped");
    expect(s).toEqual({ desired: D.Terminated, actual: A.Terminated });
    expect(applyReport(s, "Running")).toBe(s);
    expect(applyAction(s, "terminate", "w")).toBe(s);
    expect(() => applyAction(s, "start", "w")).toThrow(/workspace "w" is terminated/);
    expect(applyAgentGone({ desired: D.Terminated, actual: A.Terminating })).toEqual({ desired: D.Terminated, actual: A.Terminated });
  });

  it("makes the actual state Unknown when the reporting agent goes away", () => {
    expect(applyAgentGone({ desired: D.Running, actual: A.Running })).toEqual({ desired: D.Running, actual: A.Unknown });
    const fresh = { desired: D.Running, actual: A.CreationRequested };
    expect(applyAgentGone(fresh)).toBe(fresh);
  });
});
