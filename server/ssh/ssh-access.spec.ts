import { describe, expect, it } from "vitest";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Principal } from "../auth/authenticator.js";
import type { SshKeyRecord, WorkspaceRecord } from "../store/records.js";
import { CredentialSshAccess, provisionalPrincipalOfKeyOwner } from "./ssh-access.js";
import { generateEd25519KeyPair } from "./ssh-keygen.js";
import { parsePublicKey } from "./ssh-public-key.js";

const workspace: WorkspaceRecord = { name: "alpha", ports: [], createdAt: 1, agentTokenId: "t", agentTokenExpiresAt: 2 };

function access(keys: SshKeyRecord[] = []) {
  return new CredentialSshAccess({
    authenticateCaller: async (token) => {
      if (token === "admin-token") return { kind: "admin", tokenId: "admin" };
      if (token === "bob-token") return { kind: "user", user: "bob", tokenId: "t1" };
      throw new WarrenError(ErrorCode.Unauthenticated, "token is invalid");
    },
    getWorkspace: async (name) => (name === workspace.name ? workspace : undefined),
    getSshKey: async (fingerprint) => keys.find((k) => k.fingerprint === fingerprint),
    principalOfKeyOwner: provisionalPrincipalOfKeyOwner,
    mayReach: (p: Principal) => p.kind === "admin",
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
    expect(await a.authorize("alpha", { kind: "publickey", key: adminKey })).toMatchObject({ allowed: true, user: "admin" });
    expect(await a.authorize("alpha", { kind: "publickey", key: bobKey })).toEqual({ allowed: false, reason: "not_allowed", user: "bob" });
    expect(await a.authorize("alpha", { kind: "publickey", key: key("stranger") })).toEqual({ allowed: false, reason: "unknown_key", user: undefined });
  });
});
