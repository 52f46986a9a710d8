import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { WorkspaceDesiredState } from "../../shared/gen/warren/v1/agent_pb.js";
import { WorkspaceActualState, WorkspaceSchema, WorkspaceService, type Workspace } from "../../shared/gen/warren/v1/workspace_pb.js";
import type { Authenticator } from "../auth/authenticator.js";
import type { Principal } from "../domain/principal.js";
import { bearerToken } from "../domain/tokens.js";
import { type WorkspaceManager } from "../control/workspace-manager.js";
import { statesOf } from "../domain/workspace-policy.js";
import { ActualState, DesiredState } from "../domain/workspace-state.js";
import { workspaceIdOf, type WorkspaceRecord } from "../domain/records.js";

export interface WorkspaceApiOptions {
  readonly manager: WorkspaceManager;
  readonly authenticator: Authenticator;
  readonly urlsOf: (workspace: WorkspaceRecord) => string[];
  /** Whether an agent of the workspace is connected anywhere in the cluster. */
  /** Whether an agent of the workspace incarnation (by id) is connected anywhere in the cluster. */
  readonly isConnected: (workspaceId: string) => Promise<boolean>;
  /** SSH settings as shown (port, user, and the public key the front door logs in with). */
  readonly sshOf: (workspace: WorkspaceRecord) => Promise<{ sshPort: number; sshUser: string; sshPublicKey: string }>;
  /** Forgets the remembered host key of the workspace's sshd; false when none was remembered. */
  readonly forgetHostKey: (workspace: string) => Promise<boolean>;
}

/** The caller: a bearer token, or else (browsers on the root domain) a session cookie with the CSRF header. */
export async function callerOf(authenticator: Authenticator, ctx: HandlerContext): Promise<Principal> {
  const authorization = ctx.requestHeader.get("authorization");
  if (authorization === null) {
    const session = await authenticator.browserSessionOf(ctx.requestHeader);
    if (session) return session;
  }
  return authenticator.authenticateCaller(bearerToken(authorization ?? undefined));
}

const DESIRED: Record<DesiredState, WorkspaceDesiredState> = {
  [DesiredState.Running]: WorkspaceDesiredState.RUNNING,
  [DesiredState.Stopped]: WorkspaceDesiredState.STOPPED,
  [DesiredState.Terminated]: WorkspaceDesiredState.TERMINATED,
  [DesiredState.RestartRequested]: WorkspaceDesiredState.RESTART_REQUESTED,
};

const ACTUAL: Record<ActualState, WorkspaceActualState> = {
  [ActualState.CreationRequested]: WorkspaceActualState.CREATION_REQUESTED,
  [ActualState.Starting]: WorkspaceActualState.STARTING,
  [ActualState.Running]: WorkspaceActualState.RUNNING,
  [ActualState.Stopping]: WorkspaceActualState.STOPPING,
  [ActualState.Stopped]: WorkspaceActualState.STOPPED,
  [ActualState.Failed]: WorkspaceActualState.FAILED,
  [ActualState.Error]: WorkspaceActualState.ERROR,
  [ActualState.Terminating]: WorkspaceActualState.TERMINATING,
  [ActualState.Terminated]: WorkspaceActualState.TERMINATED,
  [ActualState.Unknown]: WorkspaceActualState.UNKNOWN,
};

/** Turns workspace records into their API form (WorkspaceService, CiService). */
export function workspaceProto(options: Pick<WorkspaceApiOptions, "urlsOf" | "isConnected" | "sshOf">): (record: WorkspaceRecord) => Promise<Workspace> {
  return async (record: WorkspaceRecord): Promise<Workspace> => {
    const states = statesOf(record);
    return create(WorkspaceSchema, {
      name: record.name,
      id: workspaceIdOf(record),
      ports: record.ports.map((p) => ({ port: p.port, public: p.public })),
      urls: options.urlsOf(record),
      connected: await options.isConnected(workspaceIdOf(record)),
      createTime: timestampFromMs(record.createdAt),
      agentTokenExpireTime: timestampFromMs(record.agentTokenExpiresAt),
      desiredState: DESIRED[states.desired],
      actualState: ACTUAL[states.actual],
      actualStateTime: timestampFromMs(record.actualStateAt ?? record.createdAt),
      ...(record.expiresAt !== undefined ? { expireTime: timestampFromMs(record.expiresAt) } : {}),
      owner: record.owner ?? "",
      variableNames: [...(record.variableNames ?? [])],
      ...(await options.sshOf(record)),
      detectedPorts: (record.detectedPorts ?? []).map((d) => ({
        port: d.port,
        address: d.address,
        process: d.process ?? "",
        exposed: record.ports.some((p) => p.port === d.port),
      })),
      ...(record.ci
        ? {
            ci: {
              issuer: record.ci.issuer,
              project: record.ci.project ?? "",
              job: record.ci.job ?? "",
              jobUrl: record.ci.jobUrl ?? "",
              ...(record.ci.holdUntil !== undefined ? { holdExpireTime: timestampFromMs(record.ci.holdUntil), exitCode: record.ci.exitCode ?? 0 } : {}),
            },
          }
        : {}),
    });
  };
}

/** warren.v1.WorkspaceService over the Connect protocol. */
export function workspaceApi(options: WorkspaceApiOptions): ServiceImpl<typeof WorkspaceService> {
  const { manager, authenticator } = options;
  const toProto = workspaceProto(options);
  return {
    async createWorkspace(req, ctx) {
      const principal = await callerOf(authenticator, ctx);
      const { workspace, agentToken } = await manager.create(principal, {
        name: req.name,
        ports: req.ports.map((p) => ({ port: p.port, public: p.public })),
        agentTokenTtlMs: req.agentTokenTtlSeconds * 1000,
        ttlMs: req.ttlSeconds * 1000,
        variables: req.variables.map((v) => ({ name: v.name, value: v.value, file: v.file })),
        owner: req.owner || undefined,
        sshPort: req.sshPort,
        sshUser: req.sshUser,
      });
      return { workspace: await toProto(workspace), agentToken };
    },
    async getWorkspace(req, ctx) {
      const principal = await callerOf(authenticator, ctx);
      return { workspace: await toProto(await manager.get(principal, req.name)) };
    },
    async listWorkspaces(_req, ctx) {
      const principal = await callerOf(authenticator, ctx);
      const records = await manager.list(principal);
      return { workspaces: await Promise.all(records.map(toProto)) };
    },
    async deleteWorkspace(req, ctx) {
      const principal = await callerOf(authenticator, ctx);
      await manager.delete(principal, req.name);
      return {};
    },
    async stopWorkspace(req, ctx) {
      return { workspace: await toProto(await manager.act(await callerOf(authenticator, ctx), req.name, "stop")) };
    },
    async startWorkspace(req, ctx) {
      return { workspace: await toProto(await manager.act(await callerOf(authenticator, ctx), req.name, "start")) };
    },
    async restartWorkspace(req, ctx) {
      return { workspace: await toProto(await manager.act(await callerOf(authenticator, ctx), req.name, "restart")) };
    },
    async terminateWorkspace(req, ctx) {
      return { workspace: await toProto(await manager.act(await callerOf(authenticator, ctx), req.name, "terminate")) };
    },
    async forgetWorkspaceHostKey(req, ctx) {
      // Reading it first checks that the caller may see the workspace (owner or admin).
      const workspace = await manager.get(await callerOf(authenticator, ctx), req.name);
      return { forgotten: await options.forgetHostKey(workspace.name) };
    },
    async exposePort(req, ctx) {
      return { workspace: await toProto(await manager.exposePort(await callerOf(authenticator, ctx), req.name, req.port, req.public)) };
    },
    async unexposePort(req, ctx) {
      return { workspace: await toProto(await manager.unexposePort(await callerOf(authenticator, ctx), req.name, req.port)) };
    },
    async rotateAgentToken(req, ctx) {
      const principal = await callerOf(authenticator, ctx);
      const { workspace, agentToken } = await manager.rotateAgentToken(principal, req.name, req.agentTokenTtlSeconds * 1000);
      return { workspace: await toProto(workspace), agentToken };
    },
  };
}
