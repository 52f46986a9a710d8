import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Principal } from "../domain/principal.js";
import type { TokenStore, WorkspaceStore } from "../domain/store.js";
import { workspaceIdOf, type WorkspaceRecord } from "../domain/records.js";
import type { SessionClaims } from "./session-cookie.js";
import { TokenCache } from "./token-cache.js";
import { constantTimeEquals, parseToken, secretMatches, sha256Hex, TokenKind } from "../domain/tokens.js";


export interface AuthenticatedAgent {
  readonly workspace: WorkspaceRecord;
  readonly tokenId: string;
  /** When the agent token expires (ms since the epoch): its connections close then. */
  readonly tokenExpiresAt: number;
}

export interface AuthenticatorOptions {
  readonly workspaces: WorkspaceStore;
  readonly tokens: TokenStore;
  readonly adminToken: string;
  readonly now?: () => number;
  /** How long access-token records are cached (revocations invalidate them at once). */
  readonly tokenCacheTtlMs?: number;
}

const INVALID_AGENT_TOKEN = "agent token is invalid, expired or revoked";
const INVALID_TOKEN = "token is invalid, expired or revoked";

/** Checks bearer tokens against the token store. Rejects with unauthenticated, never says which part failed. */
export class Authenticator {
  readonly #options: AuthenticatorOptions;
  /** Stands for the admin token in sessions; changes when the admin token does. */
  readonly #adminTokenId: string;
  /** SHA-256 of the admin token, computed once: a request hashes only what it presents. */
  readonly #adminTokenHash: string;
  readonly #accessTokens: TokenCache;
  #browserSessions: ((headers: Headers) => Promise<Principal | undefined>) | undefined;

  constructor(options: AuthenticatorOptions) {
    this.#options = options;
    this.#adminTokenHash = sha256Hex(options.adminToken);
    this.#adminTokenId = `admin:${this.#adminTokenHash.slice(0, 16)}`;
    this.#accessTokens = new TokenCache({ store: options.tokens, ttlMs: options.tokenCacheTtlMs, now: options.now });
  }

  /**
   * Lets API calls from the dashboard authenticate with the root domain's session cookie
   * (set once at the composition root; the reader applies the CSRF defence).
   */
  useBrowserSessions(reader: (headers: Headers) => Promise<Principal | undefined>): void {
    this.#browserSessions = reader;
  }

  /** The principal of a browser session on the root domain, or undefined (no cookie, no CSRF header). */
  async browserSessionOf(headers: Headers): Promise<Principal | undefined> {
    return this.#browserSessions?.(headers);
  }

  /** An access token was revoked (on any server): forget its cached record. Never blocks. */
  forgetToken(id: string): void {
    this.#accessTokens.invalidate(id);
  }

  /** The store may have lost or changed data (Redis came back): forget every cached token. Never blocks. */
  forgetAllTokens(): void {
    this.#accessTokens.clear();
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
    if (!workspace || workspace.agentTokenId !== record.id || workspace.desiredState === "Terminated") {
      throw new WarrenError(ErrorCode.Unauthenticated, INVALID_AGENT_TOKEN);
    }
    return { workspace, tokenId: record.id, tokenExpiresAt: record.expiresAt };
  }

  /**
   * Whether an agent connection welcomed with `tokenId` into the workspace incarnation
   * `workspaceId` may stay: the incarnation still exists under its name and the token is still
   * its current one (a terminating workspace's token is already deleted: its agent stays until
   * the termination completes). Reads the store; rejects when it cannot.
   */
  async agentStillValid(name: string, workspaceId: string, tokenId: string): Promise<boolean> {
    const workspace = await this.#options.workspaces.getWorkspace(name);
    if (!workspace || workspaceIdOf(workspace) !== workspaceId || workspace.agentTokenId !== tokenId) return false;
    if (workspace.desiredState === "Terminated") return workspace.actualState !== "Terminated";
    // Expiry is the lease's own clock (which leaves a token expiring with its workspace to the termination).
    return (await this.#options.tokens.getToken(tokenId)) !== undefined;
  }

  /** A person or script calling the API or a workspace host. */
  async authenticateCaller(token: string | undefined): Promise<Principal> {
    if (!token) throw new WarrenError(ErrorCode.Unauthenticated, "missing token");
    if (secretMatches(token, this.#adminTokenHash)) return { kind: "admin", tokenId: this.#adminTokenId };
    const parsed = parseToken(token);
    if (!parsed || parsed.kind !== TokenKind.Access) throw new WarrenError(ErrorCode.Unauthenticated, INVALID_TOKEN);
    const record = await this.#accessTokens.getToken(parsed.id);
    if (!record || record.kind !== TokenKind.Access || !secretMatches(parsed.secret, record.hash) || record.expiresAt <= this.#now()) {
      throw new WarrenError(ErrorCode.Unauthenticated, INVALID_TOKEN);
    }
    return { kind: "user", user: record.subject, tokenId: record.id, expiresAt: record.expiresAt, ...(record.admin ? { admin: true } : {}) };
  }

  /**
   * The principal of a verified session (cookie or login code): valid only while the token it
   * was made with is; rejects with unauthenticated once that token is revoked or expired.
   */
  async principalOfSession(claims: Pick<SessionClaims, "user" | "tokenId">): Promise<Principal> {
    if (claims.user === undefined) {
      if (constantTimeEquals(claims.tokenId, this.#adminTokenId)) return { kind: "admin", tokenId: this.#adminTokenId };
      throw new WarrenError(ErrorCode.Unauthenticated, "session expired; log in again");
    }
    const record = await this.#accessTokens.getToken(claims.tokenId);
    if (!record || record.kind !== TokenKind.Access || record.subject !== claims.user || record.expiresAt <= this.#now()) {
      throw new WarrenError(ErrorCode.Unauthenticated, "session expired; log in again");
    }
    return { kind: "user", user: claims.user, tokenId: record.id, expiresAt: record.expiresAt, ...(record.admin ? { admin: true } : {}) };
  }

  /** When the token behind a principal expires (sessions do not outlive it). */
  async tokenExpiry(principal: Principal): Promise<number | undefined> {
    if (principal.kind === "admin") return undefined;
    return (await this.#accessTokens.getToken(principal.tokenId))?.expiresAt;
  }
}
