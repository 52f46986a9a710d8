import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { WorkspaceSchema, WorkspaceService, type Workspace } from "../../shared/gen/warren/v1/workspace_pb.js";
import type { Authenticator, Principal } from "../auth/authenticator.js";
import { bearerToken } from "../auth/tokens.js";
import type { WorkspaceManager } from "../control/workspace-manager.js";
import type { WorkspaceRecord } from "../store/records.js";

export interface WorkspaceApiOptions {
  readonly manager: WorkspaceManager;
  readonly authenticator: Authenticator;
  readonly urlsOf: (workspace: WorkspaceRecord) => string[];
  /** Whether an agent of the workspace is connected anywhere in the cluster. */
  readonly isConnected: (workspace: string) => Promise<boolean>;
  /** SSH settings as shown (port, user, and the public key the front door logs in with). */
  readonly sshOf: (workspace: WorkspaceRecord) => Promise<{ sshPort: number; sshUser: string; sshPublicKey: string }>;
}

export async function callerOf(authenticator: Authenticator, ctx: HandlerContext): Promise<Principal> {
  return authenticator.authenticateCaller(bearerToken(ctx.requestHeader.get("authorization") ?? undefined));
}

/** warren.v1.WorkspaceService over the Connect protocol. */
export function workspaceApi(options: WorkspaceApiOptions): ServiceImpl<typeof WorkspaceService> {
  const { manager, authenticator } = options;
  const toProto = async (record: WorkspaceRecord): Promise<Workspace> =>
    create(WorkspaceSchema, {
      name: record.name,
      ports: record.ports.map((p) => ({ port: p.port, public: p.public })),
      urls: options.urlsOf(record),
      connected: await options.isConnected(record.name),
      createTime: timestampFromMs(record.createdAt),
      agentTokenExpireTime: timestampFromMs(record.agentTokenExpiresAt),
      ...(await options.sshOf(record)),
    });
  return {
    async createWorkspace(req, ctx) {
      const principal = await callerOf(authenticator, ctx);
      const { workspace, agentToken } = await manager.create(principal, {
        name: req.name,
        ports: req.ports.map((p) => ({ port: p.port, public: p.public })),
        agentTokenTtlMs: req.agentTokenTtlSeconds * 1000,
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
  };
}
