import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { isAdmin, type Principal } from "../domain/principal.js";
import type { TokenRecord } from "../domain/records.js";
import type { TokenStore } from "../domain/store.js";
import { parseToken, TokenKind } from "../domain/tokens.js";

const TOKEN_ID_RE = /^[0-9a-f]{16}$/;

/** How a token kind is named in errors: "access token (wut_...)". */
const NAMES: Partial<Record<TokenKind, string>> = {
  [TokenKind.Access]: "access token",
  [TokenKind.Enrollment]: "enrollment token",
};

/**
 * The record of a token a call names (by id, or by the token itself) when the caller may manage
 * it: its owner or an admin. Anyone else's token answers exactly like one that does not exist.
 */
export async function ownedToken(tokens: TokenStore, principal: Principal, ref: { id: string; token: string }, kind: TokenKind): Promise<TokenRecord> {
  const name = NAMES[kind] ?? "token";
  if (ref.id && ref.token) throw new WarrenError(ErrorCode.InvalidArgument, "id: give either id or token, not both");
  let id: string;
  if (ref.token) {
    const parsed = parseToken(ref.token);
    if (!parsed || parsed.kind !== kind) throw new WarrenError(ErrorCode.InvalidArgument, `token: not an ${name} (${kind}_...)`);
    id = parsed.id;
  } else if (ref.id) {
    if (!TOKEN_ID_RE.test(ref.id)) throw new WarrenError(ErrorCode.InvalidArgument, `id: "${ref.id.slice(0, 40)}" is not a token id (16 hex digits)`);
    id = ref.id;
  } else {
    throw new WarrenError(ErrorCode.InvalidArgument, "id: required (or token)");
  }
  const record = await tokens.getToken(id);
  if (!record || record.kind !== kind || !(isAdmin(principal) || (principal.kind === "user" && record.subject === principal.user))) {
    throw new WarrenError(ErrorCode.NotFound, `${name} "${id}" not found`);
  }
  return record;
}
