import { hash, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * Bearer tokens: `<kind>_<id><secret>`, where kind is three letters, id is 16 hex characters
 * (64 random bits, the lookup key) and secret is 43 base64url characters (256 random bits).
 * Only the SHA-256 of the secret is stored; verification compares hashes in constant time.
 */
export const TokenKind = {
  Agent: "wat",
  Access: "wut",
  /** One-time browser login code (never a bearer token: only redeemable once, on one host). */
  LoginCode: "wlc",
  /**
   * Enrollment token of a CI system without OIDC: its holder may only enroll short-lived
   * workspaces of its user (CiService/EnrollWorkspace), nothing else.
   */
  Enrollment: "wen",
} as const;
export type TokenKind = (typeof TokenKind)[keyof typeof TokenKind];

const ID_HEX = 16;
const SECRET_CHARS = 43;
const TOKEN_RE = /^(wat|wut|wlc|wen)_([0-9a-f]{16})([A-Za-z0-9_-]{43})$/;

export interface MintedToken {
  readonly token: string;
  readonly kind: TokenKind;
  readonly id: string;
  /** Hex SHA-256 of the secret part: what the store keeps. */
  readonly hash: string;
}

export function mintToken(kind: TokenKind): MintedToken {
  const id = randomBytes(ID_HEX / 2).toString("hex");
  const secret = randomBytes(32).toString("base64url");
  return { token: `${kind}_${id}${secret}`, kind, id, hash: sha256Hex(secret) };
}

export interface ParsedToken {
  readonly kind: TokenKind;
  readonly id: string;
  readonly secret: string;
}

/** Splits a presented token; undefined when it is not shaped like a Warren token. */
export function parseToken(token: string): ParsedToken | undefined {
  const m = TOKEN_RE.exec(token);
  if (!m) return undefined;
  const secret = m[3]!;
  if (secret.length !== SECRET_CHARS) return undefined;
  return { kind: m[1] as TokenKind, id: m[2]!, secret };
}

export function sha256Hex(value: string): string {
  return hash("sha256", value, "hex");
}

/** Constant-time check of a presented secret against a stored hex SHA-256. */
export function secretMatches(secret: string, storedHashHex: string): boolean {
  // crypto.hash: one call, no Hash object; this runs for every request that carries a token.
  const presented = hash("sha256", secret, "buffer");
  const stored = Buffer.from(storedHashHex, "hex");
  return stored.length === presented.length && timingSafeEqual(presented, stored);
}

/** Constant-time equality of two strings of any length (compares their hashes). */
export function constantTimeEquals(a: string, b: string): boolean {
  const ha = hash("sha256", a, "buffer");
  const hb = hash("sha256", b, "buffer");
  return timingSafeEqual(ha, hb);
}

/** An admin token for servers started without WARREN_ADMIN_TOKEN. */
export function generateAdminToken(): string {
  return `wadm_${randomBytes(32).toString("base64url")}`;
}

/** The token in `Authorization: Bearer <token>`, or undefined. */
export function bearerToken(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(value);
  return m ? m[1] : undefined;
}
