import type { IncomingMessage } from "node:http";
import type { ServiceImpl } from "@connectrpc/connect";
import { CiService } from "../../shared/gen/warren/v1/ci_pb.js";
import type { Workspace } from "../../shared/gen/warren/v1/workspace_pb.js";
import { bearerToken } from "../domain/tokens.js";
import type { CiEnrollment } from "../ci/ci-enrollment.js";
import type { WorkspaceRecord } from "../domain/records.js";

export interface CiApiOptions {
  readonly enrollment: CiEnrollment;
  readonly toProto: (record: WorkspaceRecord) => Promise<Workspace>;
  /** Where agents connect, for a request that reached the server with these headers (see install-script.ts). */
  readonly agentUrlFor: (request: Pick<IncomingMessage, "headers" | "socket">) => string;
  /** `ssh -p PORT NAME@HOST` for a request like that one; empty without an SSH listener. */
  readonly sshCommandFor: (request: Pick<IncomingMessage, "headers" | "socket">, workspace: string) => string;
}

/** warren.v1.CiService over the Connect protocol: `warren-agent ci` enrolls, holds and ends its workspace. */
export function ciApi(options: CiApiOptions): ServiceImpl<typeof CiService> {
  const { enrollment, toProto } = options;
  const tokenOf = (headers: Headers) => bearerToken(headers.get("authorization") ?? undefined);
  return {
    async enrollWorkspace(req, ctx) {
      const { workspace, agentToken } = await enrollment.enroll(tokenOf(ctx.requestHeader), {
        name: req.name,
        ports: req.ports.map((p) => ({ port: p.port, public: p.public })),
        ttlMs: req.ttlSeconds * 1000,
        project: req.project,
        job: req.job,
        jobUrl: req.jobUrl,
        sshPort: req.sshPort,
        sshUser: req.sshUser,
      });
      const url = new URL(ctx.url);
      const request = {
        headers: { host: ctx.requestHeader.get("host") ?? url.host },
        socket: { encrypted: url.protocol === "https:" } as unknown as IncomingMessage["socket"],
      };
      return { workspace: await toProto(workspace), agentToken, agentUrl: options.agentUrlFor(request), sshCommand: options.sshCommandFor(request, workspace.name) };
    },
    async holdWorkspace(req, ctx) {
      return { workspace: await toProto(await enrollment.hold(tokenOf(ctx.requestHeader), req.holdSeconds * 1000, req.exitCode)) };
    },
    async finishWorkspace(_req, ctx) {
      await enrollment.finish(tokenOf(ctx.requestHeader));
      return {};
    },
  };
}
