import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { WorkloadState, WorkspaceDesiredState } from "../shared/gen/warren/v1/agent_pb.js";
import { DesiredStateReconciler, type WorkloadReportMessage } from "./desired-state-reconciler.js";
import { NoWorkload } from "./no-workload.js";

describe("desired state reconciler", () => {
  const setup = () => {
    const workload = new NoWorkload();
    const sent: WorkloadReportMessage[] = [];
    const reconciler = new DesiredStateReconciler({ workload, send: (r) => sent.push(r), log: pino({ level: "silent" }) });
    return { workload, sent, reconciler, states: () => sent.map((r) => WorkloadState[r.state]) };
  };

  it("starts and stops the workload as told, reporting each change", async () => {
    const { reconciler, states } = setup();
    await reconciler.apply(WorkspaceDesiredState.RUNNING);
    await reconciler.apply(WorkspaceDesiredState.RUNNING);
    await reconciler.apply(WorkspaceDesiredState.STOPPED);
    expect(states()).toEqual(["RUNNING", "STOPPED"]);
  });

  it("reports Stopped for a restart even when nothing had to stop", async () => {
    const { reconciler, states } = setup();
    await reconciler.apply(WorkspaceDesiredState.STOPPED);
    await reconciler.apply(WorkspaceDesiredState.RESTART_REQUESTED);
    // The server needs the second Stopped to turn RestartRequested back into Running.
    expect(states()).toEqual(["STOPPED", "STOPPED"]);
    await reconciler.apply(WorkspaceDesiredState.RUNNING);
    expect(states().at(-1)).toBe("RUNNING");
  });

  it("re-reports the current status on a new connection, and nothing before the first start", () => {
    const { reconciler, states } = setup();
    reconciler.onConnected();
    expect(states()).toEqual([]);
  });
});
