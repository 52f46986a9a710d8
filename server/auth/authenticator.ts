import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { TokenStore, WorkspaceStore } from "../store/store.js";
import type { WorkspaceRecord } from "../store/records.js";
import { constantTimeEquals, parseToken, secretMatches, TokenKind } from "./tokens.js";

/** Who is calling, once authenticated. */
export type Principal = { readonly kind: "admin" } | { readonly kind: "user"; readonly user: string };

export interface AuthenticatedAgent {
  readonly workspace: WorkspaceRecord;
  readonly tokenId: string;
}

export interface AuthenticatorOptions {
  readonly workspaces: WorkspaceStore;
  readonly tokens: TokenStore;
  readonly adminToken: string;
  readonly now?: () => number;
}

const INVALID_AGENT_TOKEN = "agent token is invalid, expired or revoked";
const INVALID_TOKEN = "token is invalid, expired or revoked";

/** Checks bearer tokens against the token store. Rejects with unauthenticated, never says which part failed. */
export class Authenticator {
  readonly #options: AuthenticatorOptions;

  constructor(options: AuthenticatorOptions) {
    this.#options = options;
  }

  #now(): number {
    return (this.#options.now ?? Date.now)();
  }

  /** The workspace an agent token is bound to. */
  async authenticateAgent(token: string | undefined): Promise<AuthenticatedAgent> {
    if (!token) throw new WarrenError(ErrorCode.Unauthenticated, "missing agent token (authorization: Bearer <token>)");
    const parsed = parseToken(token);
    if (!parsed || parsed.kind !== TokenKind.Agent) throw new WarrenError(ErrorCode.Unauthenticated, INVALID_AGENT_TOKEN);
    const record = await this.#options.tokens.getToken(parsed.id);
    if (!record || record.kind !== TokenKind.Agent || !secretMatches(parsed.secret, record.hash) || record.expiresAt <= this.#now()) {
      throw new WarrenError(ErrorCode.Unauthenticated, INVALID_AGENT_TOKEN);
    }
    const workspace = await this.#options.workspaces.getWorkspace(record.subject);
    if (!workspace || workspace.agentTokenId !== record.id) throw new WarrenError(ErrorCode.Unauthenticated, INVALID_AGENT_TOKEN);
    return { workspace, tokenId: record.id };
  }

  /** A person or script calling the API or a workspace host. */
  async authenticateCaller(token: string | undefined): Promise<Principal> {
    if (!token) throw new WarrenError(ErrorCode.Unauthenticated, "missing token");
    if (constantTimeEquals(token, this.#options.adminToken)) return { kind: "admin" };
    const parsed = parseToken(token);
    if (!parsed || parsed.kind !== TokenKind.Access) throw new WarrenError(ErrorCode.Unauthenticated, INVALID_TOKEN);
    const record = await this.#options.tokens.getToken(parsed.id);
    if (!record || record.kind !== TokenKind.Access || !secretMatches(parsed.secret, record.hash) || record.expiresAt <= this.#now()) {
      throw new WarrenError(ErrorCode.Unauthenticated, INVALID_TOKEN);
    }
    return { kind: "user", user: record.subject };
  }
}
