import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import type { CredentialLeases } from "../auth/credential-leases.js";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Authenticator } from "../auth/authenticator.js";
import type { Principal } from "../domain/principal.js";
import { mayReach, statesOf, trafficRefusal } from "../domain/workspace-policy.js";
import { DesiredState } from "../domain/workspace-state.js";
import { workspaceIdOf, type WorkspaceRecord } from "../domain/records.js";
import { WARREN_TOKEN_HEADER } from "../proxy/wire.js";
import type { WorkspaceLookup } from "../domain/store.js";

/** Browser sessions (the host's own session cookie). */
export interface SessionReader {
  /**
   * The principal of the request's valid session cookie for `host`, or undefined. Never rejects
   * on a bad cookie. On a workspace host, `workspace` is the incarnation it serves now (id
   * undefined when none exists): a cookie minted for another incarnation is not valid.
   */
  principalOf(req: IncomingMessage, host: string, workspace?: { readonly id: string | undefined }): Promise<Principal | undefined>;
}

export interface WorkspaceAccessOptions {
  readonly workspaces: WorkspaceLookup;
  readonly authenticator: Authenticator;
  readonly rootDomain: string;
  readonly sessions?: SessionReader;
  /**
   * Client connections are bound to the credential and workspace incarnation each request on
   * them was let through with: revoking either (or the token expiring) closes the connection,
   * a WebSocket or a response in flight included.
   */
  readonly leases?: CredentialLeases;
}

/**
 * Decides whether a request to `{port}-{workspace}.{root}` may go through. A public port of a
 * live workspace needs no credentials. Everything else needs them first (401, before anything
 * about the workspace is told), then only the owner and admins get further: for anyone else
 * the workspace answers 404 exactly like one that does not exist. Then the port must be
 * exposed (403) and the workspace not stopped (503).
 */
export class WorkspaceAccess {
  readonly #options: WorkspaceAccessOptions;

  constructor(options: WorkspaceAccessOptions) {
    this.#options = options;
  }

  /** Bindings per client connection (credential and incarnation), so that each is leased once. */
  readonly #bound = new WeakMap<Socket, Set<string>>();

  async authorize(req: IncomingMessage, workspaceName: string, port: number): Promise<WorkspaceRecord> {
    const workspace = await this.#options.workspaces.getWorkspace(workspaceName);
    const exposed = workspace?.ports.find((p) => p.port === port);
    const desired = workspace ? statesOf(workspace).desired : undefined;
    let principal: Principal | undefined;
    if (!(exposed?.public && desired !== DesiredState.Terminated)) {
      principal = await this.#principalOf(req, `${port}-${workspaceName}.${this.#options.rootDomain}`, { id: workspace ? workspaceIdOf(workspace) : undefined });
      if (!workspace || !mayReach(principal, workspace)) throw notFound(workspaceName);
    }
    if (!workspace || desired === undefined) throw notFound(workspaceName);
    const refusal = trafficRefusal(workspace);
    if (refusal?.code === ErrorCode.NotFound) throw refusal;
    if (!exposed) throw new WarrenError(ErrorCode.PermissionDenied, `port ${port} is not exposed by workspace "${workspaceName}"`);
    if (refusal) throw refusal;
    this.#bind(req.socket, workspace, principal);
    return workspace;
  }

  /** Leases the client connection on what let this request through (once per connection and credential). */
  #bind(socket: Socket | null | undefined, workspace: WorkspaceRecord, principal: Principal | undefined): void {
    const leases = this.#options.leases;
    if (!leases || !socket || socket.destroyed) return;
    const workspaceId = workspaceIdOf(workspace);
    const tokenId = principal?.tokenId;
    const key = `${tokenId ?? ""} ${workspaceId}`;
    let bound = this.#bound.get(socket);
    if (bound?.has(key)) return;
    if (!bound) this.#bound.set(socket, (bound = new Set()));
    bound.add(key);
    const expiresAt = principal?.kind === "user" ? principal.expiresAt : undefined;
    const name = workspace.name;
    const stillValid = async (): Promise<boolean> => {
      const current = await this.#options.workspaces.getWorkspace(name);
      if (!current || workspaceIdOf(current) !== workspaceId) return false;
      if (principal?.kind !== "user") return true;
      try {
        await this.#options.authenticator.principalOfSession({ user: principal.user, tokenId: principal.tokenId });
        return true;
      } catch (err) {
        if (WarrenError.from(err).code === ErrorCode.Unauthenticated) return false;
        throw err;
      }
    };
    const lease = leases.register({ tokenId, workspaceId, expiresAt, stillValid }, () => socket.destroy());
    socket.once("close", () => lease.release());
  }

  async #principalOf(req: IncomingMessage, host: string, workspace: { readonly id: string | undefined }): Promise<Principal> {
    const header = req.headers[WARREN_TOKEN_HEADER];
    const token = Array.isArray(header) ? header[0] : header;
    if (token) return this.#options.authenticator.authenticateCaller(token);
    const session = await this.#options.sessions?.principalOf(req, host, workspace);
    if (session) return session;
    throw new WarrenError(ErrorCode.Unauthenticated, `this workspace needs credentials: send the header X-Warren-Token: <token>, or log in with a browser`);
  }
}

function notFound(name: string): WarrenError {
  return new WarrenError(ErrorCode.NotFound, `workspace "${name}" not found`);
}
