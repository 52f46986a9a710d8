import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { isAdmin, type Principal } from "../domain/principal.js";
import { mintToken, TokenKind } from "../domain/tokens.js";
import type { TokenRecord, UserRecord } from "../domain/records.js";
import { ADMIN_KEY_OWNER } from "../domain/ssh-key-owner.js";
import type { EventBus } from "../events/event-bus.js";
import type { TokenStore, UserStore } from "../domain/store.js";
import { ownedToken } from "./owned-token.js";

export interface UserManagerOptions {
  readonly users: UserStore;
  readonly tokens: TokenStore;
  /** Revocations are announced so that every server drops the token from its cache. */
  readonly events?: EventBus;
  readonly log: Logger;
  readonly now?: () => number;
}

/** A user name: a DNS label that starts with a letter (it shows up in logs and URLs). */
const USER_NAME_RE = /^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const DEFAULT_ACCESS_TOKEN_TTL_MS = 30 * 86_400_000;
const MAX_ACCESS_TOKEN_TTL_MS = 366 * 86_400_000;

/**
 * Users and their access tokens. Users and other people's tokens need the admin; a user
 * creates, lists and revokes their own tokens.
 */
export class UserManager {
  readonly #options: UserManagerOptions;

  constructor(options: UserManagerOptions) {
    this.#options = options;
  }

  #now(): number {
    return (this.#options.now ?? Date.now)();
  }

  async createUser(principal: Principal, name: string): Promise<UserRecord> {
    requireAdmin(principal);
    validateUserName("name", name);
    // SSH keys of "admin" log in as the admin: no user may take the name.
    if (name === ADMIN_KEY_OWNER) throw new WarrenError(ErrorCode.InvalidArgument, `name: "${name}" is reserved`);
    const user: UserRecord = { name, createdAt: this.#now() };
    await this.#options.users.createUser(user);
    this.#options.log.info({ user: name }, "user created");
    return user;
  }

  async listUsers(principal: Principal): Promise<UserRecord[]> {
    requireAdmin(principal);
    return this.#options.users.listUsers();
  }

  /** Mints an access token for the user: returned once, stored hashed. */
  async createAccessToken(principal: Principal, user: string, ttlMs: number | undefined, name = ""): Promise<{ token: string; record: TokenRecord }> {
    user = ownTokensOf(principal, user, "create");
    validateUserName("user", user);
    if (name.length > 100) throw new WarrenError(ErrorCode.InvalidArgument, "name: at most 100 characters");
    let ttl = DEFAULT_ACCESS_TOKEN_TTL_MS;
    if (ttlMs) {
      if (ttlMs < 1000 || ttlMs > MAX_ACCESS_TOKEN_TTL_MS) {
        throw new WarrenError(ErrorCode.InvalidArgument, `ttlSeconds: ${Math.round(ttlMs / 1000)} is out of range 1-${MAX_ACCESS_TOKEN_TTL_MS / 1000} seconds`);
      }
      ttl = ttlMs;
    }
    if (!(await this.#options.users.getUser(user))) throw new WarrenError(ErrorCode.NotFound, `user "${user}" not found`);
    const { minted, record } = await this.#storeAccessToken(user, ttl, name ? { name } : {});
    this.#options.log.info({ user, tokenId: minted.id, expiresAt: new Date(record.expiresAt).toISOString() }, "access token created");
    return { token: minted.token, record };
  }

  /** Revokes an access token given by id or by the token itself. */
  async revokeAccessToken(principal: Principal, ref: { id: string; token: string }): Promise<void> {
    // Someone else's token answers exactly like one that does not exist.
    const record = await ownedToken(this.#options.tokens, principal, ref, TokenKind.Access);
    const id = record.id;
    await this.#options.tokens.deleteToken(id);
    await this.#options.events?.publish({ type: "token-revoked", tokenId: id });
    this.#options.log.info({ user: record.subject, tokenId: id }, "access token revoked");
  }

  /**
   * Signing out of a browser session: revokes the token behind it when it was minted for that
   * session alone (single sign-on), so a copied cookie dies with the sign-out on every host and
   * server. A token the user pasted into the login form stays: it is theirs, not the session's.
   */
  async endBrowserSession(tokenId: string): Promise<void> {
    const record = await this.#options.tokens.getToken(tokenId);
    if (!record || record.kind !== TokenKind.Access || !record.browserSession) return;
    await this.#options.tokens.deleteToken(tokenId);
    await this.#options.events?.publish({ type: "token-revoked", tokenId });
    this.#options.log.info({ user: record.subject, tokenId }, "browser session signed out: its token is revoked");
  }

  /** The unexpired access tokens of a user (their own, or anyone's for the admin), oldest first. */
  async listAccessTokens(principal: Principal, user: string): Promise<TokenRecord[]> {
    user = ownTokensOf(principal, user, "list");
    validateUserName("user", user);
    const now = this.#now();
    const tokens = await this.#options.tokens.listTokens(user);
    return tokens.filter((t) => t.kind === TokenKind.Access && t.expiresAt > now).sort((a, b) => a.createdAt - b.createdAt);
  }

  /**
   * The user a single sign-on names, created on first sign-in (no caller: the identity
   * provider vouched for them). Rejects with invalid_argument for a name Warren cannot use.
   */
  async provisionUser(name: string): Promise<UserRecord> {
    validateUserName("user", name);
    if (name === ADMIN_KEY_OWNER) throw new WarrenError(ErrorCode.InvalidArgument, `user: "${name}" is reserved`);
    const existing = await this.#options.users.getUser(name);
    if (existing) return existing;
    const user: UserRecord = { name, createdAt: this.#now() };
    try {
      await this.#options.users.createUser(user);
    } catch (err) {
      // Another server created it in the meantime.
      if (!(err instanceof WarrenError && err.code === ErrorCode.AlreadyExists)) throw err;
    }
    this.#options.log.info({ user: name }, "user created by single sign-on");
    return user;
  }

  /** The token a single sign-on browser session rides on: listed, and revocable, like any other. */
  async mintSessionToken(user: string, options: { ttlMs: number; admin: boolean; name: string }): Promise<TokenRecord> {
    const { record } = await this.#storeAccessToken(user, options.ttlMs, { name: options.name, browserSession: true, ...(options.admin ? { admin: true } : {}) });
    return record;
  }

  /** Mints an access token of the user and stores its record (hashed); resolves once stored. */
  async #storeAccessToken(user: string, ttlMs: number, extra: Pick<TokenRecord, "name" | "admin" | "browserSession">) {
    const now = this.#now();
    const minted = mintToken(TokenKind.Access);
    const record: TokenRecord = { id: minted.id, kind: TokenKind.Access, hash: minted.hash, subject: user, createdAt: now, expiresAt: now + ttlMs, ...extra };
    await this.#options.tokens.putToken(record);
    return { minted, record };
  }
}

/** The user whose tokens a call is about: the caller's own (user empty or theirs), or anyone's for the admin. */
function ownTokensOf(principal: Principal, user: string, verb: string): string {
  if (principal.kind === "admin") return user;
  if (principal.admin) return user || principal.user;
  if (user && user !== principal.user) {
    // Someone else's tokens are listed exactly like those of a user that does not exist.
    if (verb === "list") throw new WarrenError(ErrorCode.NotFound, `user "${user}" not found`);
    throw new WarrenError(ErrorCode.PermissionDenied, `user: only the admin may ${verb} tokens of someone else`);
  }
  return principal.user;
}

function requireAdmin(principal: Principal): void {
  if (!isAdmin(principal)) throw new WarrenError(ErrorCode.PermissionDenied, "this call needs the admin token");
}

function validateUserName(field: string, name: string): void {
  if (!name) throw new WarrenError(ErrorCode.InvalidArgument, `${field}: required`);
  if (!USER_NAME_RE.test(name)) {
    throw new WarrenError(
      ErrorCode.InvalidArgument,
      `${field}: "${name.slice(0, 80)}" is not a valid user name (1-63 lowercase letters, digits and hyphens, starting with a letter)`,
    );
  }
}
