import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { isAdmin, type Principal } from "./principal.js";
import type { WorkspaceRecord } from "./records.js";
import { acceptsTraffic, ActualState, DesiredState, type WorkspaceStates } from "./workspace-state.js";

/*
 * Who may reach a workspace, and whether it takes traffic: the rules every front door (HTTP,
 * WebSocket, SSH, port-forward, API) applies the same way.
 */

/** The states of a record, with the defaults of records written before states existed. */
export function statesOf(record: WorkspaceRecord): WorkspaceStates {
  return { desired: record.desiredState ?? DesiredState.Running, actual: record.actualState ?? ActualState.CreationRequested };
}

/**
 * Why the workspace takes no traffic now (terminated: not_found; stopped: unavailable), or
 * undefined when it does. HTTP, WebSocket and SSH answer with the same words.
 */
export function trafficRefusal(workspace: WorkspaceRecord): WarrenError | undefined {
  const { desired } = statesOf(workspace);
  if (desired === DesiredState.Terminated) return new WarrenError(ErrorCode.NotFound, `workspace "${workspace.name}" is terminated`);
  if (!acceptsTraffic(desired)) {
    return new WarrenError(ErrorCode.Unavailable, `workspace "${workspace.name}" is stopped (start it with StartWorkspace or \`warren workspace start\`)`);
  }
  return undefined;
}

/** Whether the principal may see and use the workspace: its owner, or an admin. */
export function mayReach(principal: Principal, workspace: WorkspaceRecord): boolean {
  return isAdmin(principal) || (principal.kind === "user" && workspace.owner !== undefined && workspace.owner === principal.user);
}
