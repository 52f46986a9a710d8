import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { Principal } from "../domain/principal.js";
import { mintToken, parseToken, secretMatches, TokenKind } from "../domain/tokens.js";
import type { TokenRecord } from "../domain/records.js";
import type { TokenStore, UserStore } from "../domain/store.js";
import { ownedToken } from "./owned-token.js";

export interface EnrollmentTokensOptions {
  readonly tokens: TokenStore;
  readonly users: UserStore;
  readonly log: Logger;
  readonly now?: () => number;
}

export interface CreateEnrollmentTokenInput {
  /** Empty: the caller. */
  readonly user: string;
  readonly ttlMs?: number;
  readonly maxWorkspaceTtlMs?: number;
  readonly allowedPorts?: readonly number[];
  readonly name?: string;
}

const DEFAULT_TTL_MS = 30 * 86_400_000;
const MAX_TTL_MS = 366 * 86_400_000;
const DEFAULT_MAX_WORKSPACE_TTL_MS = 3_600_000;
const MAX_WORKSPACE_TTL_MS = 7 * 86_400_000;
const INVALID = "enrollment token is invalid, expired or revoked";

/**
 * Enrollment tokens (`wen_...`): for CI systems without OIDC ID tokens. A user mints them for
 * themselves (the admin for anyone); their holder may only enroll short-lived workspaces of
 * that user through CiService (authenticateCaller never accepts them, so no other API or
 * workspace host does). Stored hashed like every token.
 */
export class EnrollmentTokens {
  readonly #options: EnrollmentTokensOptions;

  constructor(options: EnrollmentTokensOptions) {
    this.#options = options;
  }

  #now(): number {
    return (this.#options.now ?? Date.now)();
  }

  async create(principal: Principal, input: CreateEnrollmentTokenInput): Promise<{ token: string; record: TokenRecord }> {
    const user = ownerOfCall(principal, input.user, "create");
    const ttl = inRange("ttlSeconds", input.ttlMs, DEFAULT_TTL_MS, MAX_TTL_MS);
    const maxWorkspaceTtlMs = inRange("maxWorkspaceTtlSeconds", input.maxWorkspaceTtlMs, DEFAULT_MAX_WORKSPACE_TTL_MS, MAX_WORKSPACE_TTL_MS);
    const allowedPorts = [...new Set(input.allowedPorts ?? [])].sort((a, b) => a - b);
    for (const port of allowedPorts) {
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new WarrenError(ErrorCode.InvalidArgument, `allowedPorts: ${port} is not a port number 1-65535`);
    }
    const name = input.name ?? "";
    if (name.length > 100) throw new WarrenError(ErrorCode.InvalidArgument, "name: at most 100 characters");
    if (!(await this.#options.users.getUser(user))) throw new WarrenError(ErrorCode.NotFound, `user "${user.slice(0, 80)}" not found`);
    const now = this.#now();
    const minted = mintToken(TokenKind.Enrollment);
    const record: TokenRecord = {
      id: minted.id,
      kind: TokenKind.Enrollment,
      hash: minted.hash,
      subject: user,
      createdAt: now,
      expiresAt: now + ttl,
      maxWorkspaceTtlMs,
      ...(allowedPorts.length > 0 ? { allowedPorts } : {}),
      ...(name ? { name } : {}),
    };
    await this.#options.tokens.putToken(record);
    this.#options.log.info({ user, tokenId: minted.id, maxWorkspaceTtlMs, allowedPorts }, "enrollment token created");
    return { token: minted.token, record };
  }

  /** The user's unexpired enrollment tokens, oldest first. */
  async list(principal: Principal, user: string): Promise<TokenRecord[]> {
    const subject = ownerOfCall(principal, user, "list");
    const now = this.#now();
    const tokens = await this.#options.tokens.listTokens(subject);
    return tokens.filter((t) => t.kind === TokenKind.Enrollment && t.expiresAt > now).sort((a, b) => a.createdAt - b.createdAt);
  }

  /**
   * Revokes the token: no workspace is enrolled with it from now on. Workspaces it enrolled
   * run on (see docs/security.md): they hold their own agent tokens and a short time to live,
   * and a token rotated while jobs run must not cut those jobs off.
   */
  async revoke(principal: Principal, ref: { id: string; token: string }): Promise<void> {
    const record = await ownedToken(this.#options.tokens, principal, ref, TokenKind.Enrollment);
    const id = record.id;
    await this.#options.tokens.deleteToken(id);
    this.#options.log.info({ user: record.subject, tokenId: id }, "enrollment token revoked");
  }

  /** The record of a presented enrollment token; unauthenticated when it is not a valid one. */
  async authenticate(token: string): Promise<TokenRecord> {
    const parsed = parseToken(token);
    if (!parsed || parsed.kind !== TokenKind.Enrollment) throw new WarrenError(ErrorCode.Unauthenticated, INVALID);
    const record = await this.#options.tokens.getToken(parsed.id);
    if (!record || record.kind !== TokenKind.Enrollment || !secretMatches(parsed.secret, record.hash) || record.expiresAt <= this.#now()) {
      throw new WarrenError(ErrorCode.Unauthenticated, INVALID);
    }
    return record;
  }
}

/** The user a call is about: the caller's own (empty or theirs), or anyone's for the admin. */
function ownerOfCall(principal: Principal, user: string, verb: string): string {
  if (principal.kind === "admin") {
    if (!user) throw new WarrenError(ErrorCode.InvalidArgument, "user: required with the admin token");
    return user;
  }
  if (principal.admin) return user || principal.user;
  if (user && user !== principal.user) throw new WarrenError(ErrorCode.PermissionDenied, `user: only the admin may ${verb} enrollment tokens of someone else`);
  return principal.user;
}

function inRange(field: string, ms: number | undefined, fallback: number, max: number): number {
  if (!ms) return fallback;
  if (!Number.isFinite(ms) || ms < 60_000 || ms > max) {
    throw new WarrenError(ErrorCode.InvalidArgument, `${field}: ${Math.round(ms / 1000)} is out of range 60-${max / 1000} seconds`);
  }
  return ms;
}
