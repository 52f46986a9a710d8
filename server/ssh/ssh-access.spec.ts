import { describe, expect, it } from "vitest";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Principal } from "../domain/principal.js";
import type { SshKeyRecord, WorkspaceRecord } from "../domain/records.js";
import { CredentialSshAccess } from "./ssh-access.js";
import { provisionalPrincipalOfKeyOwner } from "../domain/ssh-key-owner.js";
import { generateEd25519KeyPair } from "./ssh-keygen.js";
import { parsePublicKey } from "../domain/ssh-public-key.js";

const workspace: WorkspaceRecord = { name: "alpha", ports: [], createdAt: 1, agentTokenId: "t", agentTokenExpiresAt: 2 };
const bobs: WorkspaceRecord = { name: "bobs", owner: "bob", ports: [], createdAt: 1, agentTokenId: "t2", agentTokenExpiresAt: 2 };

function access(keys: SshKeyRecord[] = []) {
  return new CredentialSshAccess({
    authenticateCaller: async (token) => {
      if (token === "admin-token") return { kind: "admin", tokenId: "admin" };
      if (token === "bob-token") return { kind: "user", user: "bob", tokenId: "t1" };
      throw new WarrenError(ErrorCode.Unauthenticated, "token is invalid");
    },
    getWorkspace: async (name) => [workspace, bobs].find((w) => w.name === name),
    findSshKeys: async (fingerprint) => keys.filter((k) => k.fingerprint === fingerprint),
    principalOfKeyOwner: provisionalPrincipalOfKeyOwner,
    mayReach: (p: Principal, w: WorkspaceRecord) => p.kind === "admin" || p.user === w.owner,
  });
}

function key(comment: string) {
  return parsePublicKey(generateEd25519KeyPair(comment).publicKey);
}

describe("CredentialSshAccess", () => {
  it("lets a token in when its principal may reach the workspace", async () => {
    const d = await access().authorize("alpha", { kind: "password", password: "admin-token" });
    expect(d).toMatchObject({ allowed: true, workspace: { name: "alpha" }, principal: { kind: "admin" } });
  });

  it("answers another user's workspace exactly like a missing one, apart from the logged reason", async () => {
    const a = access();
    expect(await a.authorize("alpha", { kind: "password", password: "wrong" })).toEqual({ allowed: false, reason: "bad_token", user: undefined });
    expect(await a.authorize("alpha", { kind: "password", password: "bob-token" })).toEqual({ allowed: false, reason: "not_allowed", user: "bob" });
    expect(await a.authorize("beta", { kind: "password", password: "bob-token" })).toEqual({ allowed: false, reason: "no_such_workspace", user: "bob" });
    expect(await a.authorize("Not A Name", { kind: "password", password: "admin-token" })).toMatchObject({ allowed: false, reason: "no_such_workspace" });
  });

  it("maps a registered key to its owner; unknown keys and other owners' keys are refused", async () => {
    const adminKey = key("admin");
    const bobKey = key("bob");
    const records: SshKeyRecord[] = [
      { fingerprint: adminKey.fingerprint, user: "admin", publicKey: adminKey.line, title: "", createdAt: 0 },
      { fingerprint: bobKey.fingerprint, user: "bob", publicKey: bobKey.line, title: "", createdAt: 0 },
    ];
    const a = access(records);
    expect(await a.authorize("alpha", { kind: "publickey", key: adminKey })).toMatchObject({ allowed: true, user: "admin", principal: { kind: "admin" } });
    expect(await a.authorize("alpha", { kind: "publickey", key: bobKey })).toEqual({ allowed: false, reason: "not_allowed", user: undefined });
    expect(await a.authorize("alpha", { kind: "publickey", key: key("stranger") })).toEqual({ allowed: false, reason: "unknown_key", user: undefined });
  });

  it("scopes registrations: a key logs in to W only through W's owner's (or the admin's) registration, and as that registrant", async () => {
    const shared = key("shared");
    const reg = (user: string, createdAt: number): SshKeyRecord => ({ fingerprint: shared.fingerprint, user, publicKey: shared.line, title: "", createdAt });
    // Mallory registered bob's public key first: it changes nothing for bob.
    const a = access([reg("mallory", 0), reg("bob", 1)]);
    expect(await a.authorize("bobs", { kind: "publickey", key: shared })).toMatchObject({ allowed: true, user: "bob", principal: { kind: "user", user: "bob" } });
    // And gives nothing of bob's to mallory's registration.
    const onlyMallory = access([reg("mallory", 0)]);
    expect(await onlyMallory.authorize("bobs", { kind: "publickey", key: shared })).toEqual({ allowed: false, reason: "not_allowed", user: undefined });
    // The owner's registration wins over the admin's for the owner's workspace.
    const both = access([reg("admin", 0), reg("bob", 1)]);
    expect(await both.authorize("bobs", { kind: "publickey", key: shared })).toMatchObject({ allowed: true, user: "bob" });
    expect(await both.authorize("alpha", { kind: "publickey", key: shared })).toMatchObject({ allowed: true, user: "admin" });
  });

  it("answers a key query from the key alone: the same for every workspace name", async () => {
    const bobKey = key("bob");
    const a = access([{ fingerprint: bobKey.fingerprint, user: "bob", publicKey: bobKey.line, title: "", createdAt: 0 }]);
    expect(await a.acceptsKeyQuery(bobKey)).toBe(true);
    expect(await a.acceptsKeyQuery(key("stranger"))).toBe(false);
  });
});
