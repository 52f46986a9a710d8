import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Principal } from "../auth/authenticator.js";
import { mintToken, TokenKind } from "../auth/tokens.js";
import type { EventBus } from "../events/event-bus.js";
import { isValidWorkspaceName } from "../http/workspace-host.js";
import type { PortRecord, WorkspaceRecord } from "../store/records.js";
import type { TokenStore, WorkspaceStore } from "../store/store.js";

export interface CreateWorkspaceInput {
  readonly name: string;
  readonly ports: readonly PortRecord[];
  /** Agent token lifetime in ms; the server default when 0 or absent. */
  readonly agentTokenTtlMs?: number;
  /** Port of the workspace's sshd; the default when 0 or absent. */
  readonly sshPort?: number;
  /** User the SSH front door logs in as; the default when empty or absent. */
  readonly sshUser?: string;
}

export interface WorkspaceManagerOptions {
  readonly workspaces: WorkspaceStore;
  readonly tokens: TokenStore;
  readonly events: EventBus;
  readonly agentTokenTtlMs: number;
  readonly now?: () => number;
}

const MAX_PORTS = 64;

/** The control module's rules for workspaces: validation, ownership, tokens, revocation. */
export class WorkspaceManager {
  readonly #options: WorkspaceManagerOptions;

  constructor(options: WorkspaceManagerOptions) {
    this.#options = options;
  }

  #now(): number {
    return (this.#options.now ?? Date.now)();
  }

  /** Creates a workspace and its agent token; the token is returned once and stored hashed. */
  async create(principal: Principal, input: CreateWorkspaceInput): Promise<{ workspace: WorkspaceRecord; agentToken: string }> {
    requireAdmin(principal);
    validateName(input.name);
    const ports = validatePorts(input.ports);
    const ssh = validateSsh(input);
    const now = this.#now();
    const ttl = input.agentTokenTtlMs && input.agentTokenTtlMs > 0 ? input.agentTokenTtlMs : this.#options.agentTokenTtlMs;
    const token = mintToken(TokenKind.Agent);
    const workspace: WorkspaceRecord = {
      name: input.name,
      ports,
      createdAt: now,
      agentTokenId: token.id,
      agentTokenExpiresAt: now + ttl,
      ...ssh,
    };
    await this.#options.workspaces.createWorkspace(workspace);
    await this.#options.tokens.putToken({
      id: token.id,
      kind: TokenKind.Agent,
      hash: token.hash,
      subject: workspace.name,
      createdAt: now,
      expiresAt: now + ttl,
    });
    return { workspace, agentToken: token.token };
  }

  /** The workspace, or not_found. */
  async get(principal: Principal, name: string): Promise<WorkspaceRecord> {
    requireAdmin(principal);
    validateName(name);
    const workspace = await this.#options.workspaces.getWorkspace(name);
    if (!workspace) throw new WarrenError(ErrorCode.NotFound, `workspace "${name}" not found`);
    return workspace;
  }

  async list(principal: Principal): Promise<WorkspaceRecord[]> {
    requireAdmin(principal);
    return this.#options.workspaces.listWorkspaces();
  }

  /** Deletes the workspace, revokes its agent token and disconnects its agents everywhere. */
  async delete(principal: Principal, name: string): Promise<void> {
    const workspace = await this.get(principal, name);
    await this.#options.tokens.deleteToken(workspace.agentTokenId);
    await this.#options.workspaces.deleteWorkspace(name);
    await this.#options.events.publish({ type: "workspace-revoked", workspace: name, reason: `workspace "${name}" was deleted` });
  }
}

function requireAdmin(principal: Principal): void {
  if (principal.kind !== "admin") throw new WarrenError(ErrorCode.PermissionDenied, "this call needs the admin token");
}

function validateName(name: string): void {
  if (!name) throw new WarrenError(ErrorCode.InvalidArgument, "name: required");
  if (!isValidWorkspaceName(name)) {
    throw new WarrenError(
      ErrorCode.InvalidArgument,
      `name: "${name.slice(0, 80)}" is not a valid workspace name (1-63 lowercase letters, digits and hyphens, not starting or ending with a hyphen)`,
    );
  }
}

/** POSIX portable user names (useradd's default rule). */
const SSH_USER = /^[a-z_][a-z0-9_-]{0,31}$/;

function validateSsh(input: CreateWorkspaceInput): { sshPort?: number; sshUser?: string } {
  const out: { sshPort?: number; sshUser?: string } = {};
  if (input.sshPort) {
    if (!Number.isInteger(input.sshPort) || input.sshPort < 1 || input.sshPort > 65535) {
      throw new WarrenError(ErrorCode.InvalidArgument, `ssh_port: ${input.sshPort} is not a port number 1-65535`);
    }
    out.sshPort = input.sshPort;
  }
  if (input.sshUser) {
    if (!SSH_USER.test(input.sshUser)) {
      throw new WarrenError(ErrorCode.InvalidArgument, `ssh_user: "${input.sshUser.slice(0, 40)}" is not a valid user name (lowercase letters, digits, _ and -, up to 32)`);
    }
    out.sshUser = input.sshUser;
  }
  return out;
}

function validatePorts(ports: readonly PortRecord[]): PortRecord[] {
  if (ports.length > MAX_PORTS) throw new WarrenError(ErrorCode.InvalidArgument, `ports: at most ${MAX_PORTS} ports`);
  const seen = new Set<number>();
  return ports.map((p, i) => {
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) {
      throw new WarrenError(ErrorCode.InvalidArgument, `ports[${i}].port: ${p.port} is not a port number 1-65535`);
    }
    if (seen.has(p.port)) throw new WarrenError(ErrorCode.InvalidArgument, `ports[${i}].port: ${p.port} is listed twice`);
    seen.add(p.port);
    return { port: p.port, public: p.public };
  });
}
