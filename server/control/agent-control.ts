import { create } from "@bufbuild/protobuf";
import { ControlResponseSchema, WorkloadState, WorkspaceDesiredState, type ControlResponse, type ListeningPorts, type WorkloadReport } from "../../shared/gen/warren/v1/agent_pb.js";
import type { Logger } from "../../shared/logger.js";
import type { ClusterEvent, EventBus } from "../events/event-bus.js";
import { dialablePorts, workspaceIdOf, type WorkspaceRecord } from "../domain/records.js";
import type { WorkspaceLookup } from "../domain/store.js";
import { type WorkspaceManager } from "./workspace-manager.js";
import { statesOf } from "../domain/workspace-policy.js";
import { DesiredState, type WorkloadStatus } from "../domain/workspace-state.js";

/** The side of an agent connection the control module drives. */
export interface ControlledConnection {
  readonly id: string;
  readonly workspace: string;
  /** The workspace incarnation the connection was welcomed into: its reports apply to it only. */
  readonly workspaceId: string;
  readonly closed: boolean;
  /** Sends the desired state on the control stream; never blocks, false when it is gone. */
  sendDesiredState(state: WorkspaceDesiredState): void;
  /** Sends a control message; never blocks, false when the control stream is gone. */
  send(message: ControlResponse): boolean;
  onClose(handler: () => void): void;
}

/** The agent connections held by this server (the tunnel registry). */
export interface LocalConnections {
  connectionsOf(workspace: string): readonly ControlledConnection[];
}

export interface AgentControlOptions {
  readonly manager: WorkspaceManager;
  readonly workspaces: WorkspaceLookup;
  readonly connections: LocalConnections;
  readonly events: EventBus;
  readonly log: Logger;
}

const toProtoDesired: Record<DesiredState, WorkspaceDesiredState> = {
  [DesiredState.Running]: WorkspaceDesiredState.RUNNING,
  [DesiredState.Stopped]: WorkspaceDesiredState.STOPPED,
  [DesiredState.Terminated]: WorkspaceDesiredState.TERMINATED,
  [DesiredState.RestartRequested]: WorkspaceDesiredState.RESTART_REQUESTED,
};

const fromWorkload: Partial<Record<WorkloadState, WorkloadStatus>> = {
  [WorkloadState.STARTING]: "Starting",
  [WorkloadState.RUNNING]: "Running",
  [WorkloadState.STOPPING]: "Stopping",
  [WorkloadState.STOPPED]: "Stopped",
  [WorkloadState.FAILED]: "Failed",
  [WorkloadState.ERROR]: "Error",
};

/**
 * Keeps agents in step with their workspace's desired state: sends it when an agent connects
 * and whenever the workspace changes anywhere in the cluster (workspace-changed events), and
 * hands the agents' workload reports to the manager. Each connection gets a desired state
 * only when it differs from the last one it got, newest revision first.
 */
export class AgentControl {
  readonly #options: AgentControlOptions;
  readonly #sent = new WeakMap<ControlledConnection, { revision: number; desired: DesiredState }>();
  /** The allowed ports each connection last got (revision and list), so that each change goes out once. */
  readonly #sentPorts = new WeakMap<ControlledConnection, { revision: number; key: string }>();
  /** Reports of one connection are stored one after another, in the order they came. */
  readonly #reports = new WeakMap<ControlledConnection, Promise<void>>();

  constructor(options: AgentControlOptions) {
    this.#options = options;
    options.events.subscribe((event) => this.#onEvent(event));
  }

  /** A new agent connection: tell it what to do; when it goes, its report goes stale. */
  attach(connection: ControlledConnection): void {
    connection.onClose(() => {
      // After its last report, so that the departure is the final word.
      void (this.#reports.get(connection) ?? Promise.resolve())
        .then(() => this.#options.manager.agentGone(connection.workspace, connection.workspaceId, connection.id))
        .catch((err: Error) => {
          this.#options.log.warn({ workspace: connection.workspace, err: err.message }, "could not record the agent's departure");
        });
    });
    void this.#push(connection.workspace, [connection], true);
  }

  /** A WorkloadReport from the agent. */
  onReport(connection: ControlledConnection, report: WorkloadReport): void {
    const state = WorkloadState[report.state] ?? String(report.state);
    this.#options.log.info(
      { event: "workload", workspace: connection.workspace, state, exitCode: report.exitCode, message: report.message },
      `workload of "${connection.workspace}": ${state.toLowerCase()}${report.message ? ` (${report.message})` : ""}`,
    );
    const status = fromWorkload[report.state];
    if (!status) {
      this.#options.log.debug({ workspace: connection.workspace, state: report.state }, "ignoring a workload report without a known state");
      return;
    }
    const previous = this.#reports.get(connection) ?? Promise.resolve();
    const next = previous.then(() =>
      this.#options.manager
        .report(connection.workspace, connection.workspaceId, connection.id, status, { exitCode: report.exitCode, message: report.message })
        .catch((err: Error) => this.#options.log.warn({ workspace: connection.workspace, err: err.message }, "could not record a workload report")),
    );
    this.#reports.set(connection, next);
  }

  /** A ListeningPorts report from the agent: stored on the workspace as its detected ports. */
  onListeningPorts(connection: ControlledConnection, message: ListeningPorts): void {
    const ports = message.ports.map((p) => ({ port: p.port, address: p.address, ...(p.process ? { process: p.process } : {}) }));
    const previous = this.#reports.get(connection) ?? Promise.resolve();
    const next = previous.then(() =>
      this.#options.manager
        .reportListeningPorts(connection.workspace, connection.workspaceId, ports)
        .catch((err: Error) => this.#options.log.warn({ workspace: connection.workspace, err: err.message }, "could not record the listening ports")),
    );
    this.#reports.set(connection, next);
  }

  #onEvent(event: ClusterEvent): void {
    if (event.type !== "workspace-changed") return;
    const connections = this.#options.connections.connectionsOf(event.workspace);
    if (connections.length === 0) return;
    // The event carries the new ports: the agents hear of them before anyone can ask for them.
    if (event.allowedPorts && event.revision !== undefined) {
      this.#sendAllowedPorts(event.workspace, event.workspaceId, connections, event.revision, event.allowedPorts);
    }
    void this.#push(event.workspace, connections);
  }

  /** Tells each connection which ports it may dial, unless it has this list or a newer one. */
  #sendAllowedPorts(
    name: string,
    workspaceId: string | undefined,
    connections: readonly ControlledConnection[],
    revision: number,
    ports: readonly number[],
    always = false,
  ): void {
    const key = [...ports].sort((a, b) => a - b).join(",");
    for (const connection of connections) {
      // Another incarnation's agent never hears this workspace's ports.
      if (connection.closed || (workspaceId !== undefined && connection.workspaceId !== workspaceId)) continue;
      const last = this.#sentPorts.get(connection);
      if (!always && last && (last.revision > revision || last.key === key)) continue;
      this.#sentPorts.set(connection, { revision, key });
      this.#options.log.debug({ workspace: name, agentConnection: connection.id, ports }, "sending allowed ports");
      connection.send(create(ControlResponseSchema, { msg: { case: "allowedPorts", value: { ports: [...ports] } } }));
    }
  }

  async #push(name: string, connections: readonly ControlledConnection[], attaching = false): Promise<void> {
    let record: WorkspaceRecord | undefined;
    try {
      record = await this.#options.workspaces.getWorkspace(name);
    } catch (err) {
      this.#options.log.warn({ workspace: name, err: (err as Error).message }, "could not read the workspace to send its desired state");
      return;
    }
    if (!record) return;
    const workspaceId = workspaceIdOf(record);
    const desired = statesOf(record).desired;
    const revision = record.revision ?? 0;
    // A new connection got its welcome from a record read earlier: send the ports as they are now.
    this.#sendAllowedPorts(name, workspaceId, connections, revision, dialablePorts(record), attaching);
    for (const connection of connections) {
      // A connection of an earlier workspace of the name is on its way out: not this one's state.
      if (connection.closed || connection.workspaceId !== workspaceId) continue;
      const last = this.#sent.get(connection);
      // Reads may finish out of order: never replace a newer state with an older one.
      if (last && (last.revision > revision || last.desired === desired)) continue;
      this.#sent.set(connection, { revision, desired });
      this.#options.log.debug({ workspace: name, agentConnection: connection.id, desired }, "sending desired state");
      connection.sendDesiredState(toProtoDesired[desired]);
    }
  }
}
