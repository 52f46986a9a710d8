import type { IncomingMessage } from "node:http";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Authenticator, Principal } from "../auth/authenticator.js";
import type { WorkspaceRecord } from "../store/records.js";
import { WARREN_TOKEN_HEADER } from "./headers.js";

export interface WorkspaceLookup {
  /** The workspace record, or undefined; may serve from a short-lived cache. */
  getWorkspace(name: string): Promise<WorkspaceRecord | undefined>;
}

export interface WorkspaceAccessOptions {
  readonly workspaces: WorkspaceLookup;
  readonly authenticator: Authenticator;
}

/**
 * Decides whether a request to `{port}-{workspace}.{root}` may go through: the workspace must
 * exist (404), the caller must be allowed in unless the port is public (401), and the port must
 * be exposed (403). Credentials are checked before the port, so nothing about a workspace's
 * ports is told to a caller who may not see it.
 */
export class WorkspaceAccess {
  readonly #options: WorkspaceAccessOptions;

  constructor(options: WorkspaceAccessOptions) {
    this.#options = options;
  }

  async authorize(req: IncomingMessage, workspaceName: string, port: number): Promise<WorkspaceRecord> {
    const workspace = await this.#options.workspaces.getWorkspace(workspaceName);
    if (!workspace) throw notFound(workspaceName);
    const exposed = workspace.ports.find((p) => p.port === port);
    if (!exposed?.public) {
      const principal = await this.#principalOf(req);
      if (!mayReach(principal, workspace)) throw notFound(workspaceName);
    }
    if (!exposed) throw new WarrenError(ErrorCode.PermissionDenied, `port ${port} is not exposed by workspace "${workspaceName}"`);
    return workspace;
  }

  async #principalOf(req: IncomingMessage): Promise<Principal> {
    const header = req.headers[WARREN_TOKEN_HEADER];
    const token = Array.isArray(header) ? header[0] : header;
    if (!token) {
      throw new WarrenError(ErrorCode.Unauthenticated, `this workspace needs credentials: send the header X-Warren-Token: <token>`);
    }
    return this.#options.authenticator.authenticateCaller(token);
  }
}

/** Whether the principal may reach the workspace (HTTP and SSH front doors share this rule). */
export function mayReach(principal: Principal, _workspace: WorkspaceRecord): boolean {
  return principal.kind === "admin";
}

function notFound(name: string): WarrenError {
  return new WarrenError(ErrorCode.NotFound, `workspace "${name}" not found`);
}
