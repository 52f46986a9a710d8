import { WorkloadState, type ControlRequest } from "../../shared/gen/warren/v1/agent_pb.js";
import type { AgentConnection } from "../tunnel/agent-connection.js";

/**
 * Handles workload reports from agents (`warren-agent run -- CMD`). For now it logs one
 * structured line per report; the control module will turn reports into the workspace's
 * actual state.
 */
export function workloadReportHandler(): (connection: AgentConnection, message: ControlRequest) => void {
  return (connection, message) => {
    if (message.msg.case !== "workload") return;
    const { state, exitCode, message: text } = message.msg.value;
    const name = WorkloadState[state] ?? String(state);
    // connection.log already names the workspace and the agent connection.
    connection.log.info(
      { event: "workload", state: name, exitCode, message: text },
      `workload of "${connection.workspace}": ${name.toLowerCase()}${text ? ` (${text})` : ""}`,
    );
  };
}
