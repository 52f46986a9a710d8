import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { cookieValues, SessionCookieSigner, setCookieHeader, withoutSessionCookies } from "./session-cookie.js";

describe("session cookies", () => {
  const key = randomBytes(32);
  let now = 1_000_000;
  const signer = new SessionCookieSigner({ key, now: () => now });
  const hostA = "8000-alpha.warren.localhost";
  const hostB = "8000-beta.warren.localhost";

  it("verifies a cookie on the host it was minted for, until it expires", () => {
    const value = signer.sign({ host: hostA, user: "alice", tokenId: "0123456789abcdef", expiresAt: now + 60_000 });
    expect(signer.verify(value, hostA)).toEqual({ host: hostA, user: "alice", tokenId: "0123456789abcdef", expiresAt: now + 60_000 });
    now += 60_000;
    expect(signer.verify(value, hostA)).toBeUndefined();
  });

  it("a cookie minted for one workspace incarnation is refused on a later workspace of the same name", () => {
    const value = signer.sign({ host: hostA, user: "alice", tokenId: "0123456789abcdef", expiresAt: now + 60_000, workspaceId: "ws_first" });
    expect(signer.verify(value, hostA, { id: "ws_first" })).toMatchObject({ user: "alice", workspaceId: "ws_first" });
    expect(signer.verify(value, hostA, { id: "ws_second" })).toBeUndefined();
    // The workspace is gone: the person is still known (the answer is a 404 either way).
    expect(signer.verify(value, hostA, { id: undefined })).toMatchObject({ user: "alice" });
    // A cookie naming no incarnation (minted before ids, or for a missing workspace) is not valid on one.
    const bare = signer.sign({ host: hostA, user: "alice", tokenId: "0123456789abcdef", expiresAt: now + 60_000 });
    expect(signer.verify(bare, hostA, { id: "ws_first" })).toBeUndefined();
  });

  it("refuses a cookie minted for another host, a forged one and one signed with another key", () => {
    const value = signer.sign({ host: hostA, tokenId: "admin:x", expiresAt: now + 60_000 });
    expect(signer.verify(value, hostB)).toBeUndefined();
    const [payload, mac] = value.split(".") as [string, string];
    const forged = Buffer.from(JSON.stringify({ h: hostB, t: "admin:x", e: now + 60_000 })).toString("base64url");
    expect(signer.verify(`${forged}.${mac}`, hostB)).toBeUndefined();
    const flipped = `${mac.slice(0, 10)}${mac[10] === "A" ? "B" : "A"}${mac.slice(11)}`;
    expect(signer.verify(`${payload}.${flipped}`, hostA)).toBeUndefined();
    expect(new SessionCookieSigner({ key: randomBytes(32), now: () => now }).verify(value, hostA)).toBeUndefined();
    for (const junk of ["", ".", "abc", "x.y", `${payload}.`, "a".repeat(5000)]) expect(signer.verify(junk, hostA)).toBeUndefined();
  });

  it("verifies cookies signed with an accepted earlier key, and signs new ones with the current key", () => {
    const earlierKey = randomBytes(32);
    const earlier = new SessionCookieSigner({ key: earlierKey, now: () => now });
    const rotated = new SessionCookieSigner({ key, acceptedKeys: [earlierKey], now: () => now });
    const old = earlier.sign({ host: hostA, user: "alice", tokenId: "0123456789abcdef", expiresAt: now + 60_000 });
    expect(rotated.verify(old, hostA)?.user).toBe("alice");
    expect(signer.verify(old, hostA)).toBeUndefined();
    const fresh = rotated.sign({ host: hostA, user: "alice", tokenId: "0123456789abcdef", expiresAt: now + 60_000 });
    expect(signer.verify(fresh, hostA)?.user).toBe("alice");
    expect(earlier.verify(fresh, hostA)).toBeUndefined();
  });

  it("writes host-only, HttpOnly, SameSite=Lax cookies, Secure under TLS", () => {
    const plain = setCookieHeader({ name: "warren_session", value: "v", maxAgeSeconds: 3600, secure: false });
    expect(plain).toBe("warren_session=v; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax");
    expect(plain).not.toMatch(/Domain/i);
    expect(setCookieHeader({ name: "__Host-warren_session", value: "v", maxAgeSeconds: 0, secure: true })).toMatch(/; Secure$/);
  });

  it("strips only Warren's cookies from what the app receives", () => {
    expect(withoutSessionCookies("a=1; warren_session=x; b=2")).toBe("a=1; b=2");
    expect(withoutSessionCookies("__Host-warren_session=x")).toBeUndefined();
    expect(withoutSessionCookies("warren_session_other=1")).toBe("warren_session_other=1");
    expect(cookieValues("a=1; warren_session=x; warren_session=y", "warren_session")).toEqual(["x", "y"]);
  });
});
