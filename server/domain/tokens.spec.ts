import { describe, expect, it } from "vitest";
import { bearerToken, constantTimeEquals, mintToken, parseToken, secretMatches, TokenKind } from "./tokens.js";

describe("tokens", () => {
  it("mints 256-bit secrets that parse back and match only their own hash", () => {
    const a = mintToken(TokenKind.Agent);
    const b = mintToken(TokenKind.Agent);
    expect(a.token).not.toBe(b.token);
    const parsed = parseToken(a.token)!;
    expect(parsed.kind).toBe("wat");
    expect(parsed.id).toBe(a.id);
    expect(Buffer.from(parsed.secret, "base64url")).toHaveLength(32);
    expect(secretMatches(parsed.secret, a.hash)).toBe(true);
    expect(secretMatches(parsed.secret, b.hash)).toBe(false);
    expect(a.hash).not.toContain(parsed.secret);
  });

  it("rejects malformed tokens", () => {
    for (const t of ["", "wat_", "xyz_0123456789abcdefAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", `${mintToken(TokenKind.Access).token}x`]) {
      expect(parseToken(t)).toBeUndefined();
    }
  });

  it("reads bearer headers and compares strings of any length", () => {
    expect(bearerToken("Bearer abc")).toBe("abc");
    expect(bearerToken("bearer  abc ")).toBe("abc");
    expect(bearerToken("Basic abc")).toBeUndefined();
    expect(constantTimeEquals("abc", "abc")).toBe(true);
    expect(constantTimeEquals("abc", "abcd")).toBe(false);
  });
});
