import { describe, expect, it } from "vitest";
import { CredentialLeases } from "./credential-leases.js";

function closer(): { reasons: string[]; close: (reason: string) => void } {
  const reasons: string[] = [];
  return { reasons, close: (reason) => reasons.push(reason) };
}

describe("CredentialLeases", () => {
  it("closes what a token opened when the token is revoked, and nothing else", () => {
    const leases = new CredentialLeases();
    const a = closer();
    const b = closer();
    const handleA = leases.register({ tokenId: "t1", workspaceId: "w1" }, a.close);
    leases.register({ tokenId: "t2", workspaceId: "w1" }, b.close);
    expect(leases.revokeToken("t1", "token revoked")).toBe(1);
    expect(a.reasons).toEqual(["token revoked"]);
    expect(b.reasons).toEqual([]);
    expect(handleA.revoked).toBe(true);
    // Closed once, however often it is revoked.
    expect(leases.revokeToken("t1", "again")).toBe(0);
    expect(a.reasons).toEqual(["token revoked"]);
    expect(leases.size).toBe(1);
  });

  it("closes everything of a workspace incarnation, keyed by its id", () => {
    const leases = new CredentialLeases();
    const old = closer();
    const current = closer();
    leases.register({ tokenId: "t1", workspaceId: "dev-incarnation-1" }, old.close);
    leases.register({ tokenId: "t2", workspaceId: "dev-incarnation-2" }, current.close);
    expect(leases.revokeWorkspace("dev-incarnation-1", "workspace deleted")).toBe(1);
    expect(old.reasons).toEqual(["workspace deleted"]);
    expect(current.reasons).toEqual([]);
  });

  it("forgets a released lease: a later revocation closes nothing", () => {
    const leases = new CredentialLeases();
    const c = closer();
    const handle = leases.register({ tokenId: "t1" }, c.close);
    handle.release();
    handle.release();
    expect(leases.revokeToken("t1", "revoked")).toBe(0);
    expect(c.reasons).toEqual([]);
    expect(handle.revoked).toBe(false);
    expect(leases.size).toBe(0);
  });

  it("closes a lease when its credential expires, by the injected clock", async () => {
    let now = 1000;
    const leases = new CredentialLeases({ now: () => now });
    const soon = closer();
    const later = closer();
    leases.register({ tokenId: "t1", expiresAt: 2000 }, soon.close);
    leases.register({ tokenId: "t2", expiresAt: 5000 }, later.close);
    expect(leases.expireDue()).toBe(0);
    now = 2000;
    expect(leases.expireDue()).toBe(1);
    expect(soon.reasons).toEqual(["the credential expired"]);
    expect(later.reasons).toEqual([]);
    // Registered already expired: closed at once.
    const stale = closer();
    leases.register({ tokenId: "t3", expiresAt: 1500 }, stale.close);
    await Promise.resolve();
    expect(stale.reasons).toEqual(["the credential expired"]);
  });

  it("re-validation closes leases whose credential is gone and keeps those it cannot check", async () => {
    const leases = new CredentialLeases();
    const gone = closer();
    const kept = closer();
    const unknown = closer();
    leases.register({ tokenId: "t1", stillValid: async () => false }, gone.close);
    leases.register({ tokenId: "t2", stillValid: async () => true }, kept.close);
    leases.register({ tokenId: "t3", stillValid: () => Promise.reject(new Error("store unavailable")) }, unknown.close);
    expect(await leases.revalidate()).toBe(1);
    expect(gone.reasons).toEqual(["the credential is no longer valid"]);
    expect(kept.reasons).toEqual([]);
    expect(unknown.reasons).toEqual([]);
  });

  it("a closer that throws does not keep the others open", () => {
    const leases = new CredentialLeases();
    const c = closer();
    leases.register({ workspaceId: "w" }, () => {
      throw new Error("boom");
    });
    leases.register({ workspaceId: "w" }, c.close);
    expect(leases.revokeWorkspace("w", "deleted")).toBe(2);
    expect(c.reasons).toEqual(["deleted"]);
  });
});
