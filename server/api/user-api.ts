import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { UserService } from "../../shared/gen/warren/v1/user_pb.js";
import type { Authenticator } from "../auth/authenticator.js";
import type { SshKeyManager } from "../control/ssh-key-manager.js";
import type { UserManager } from "../control/user-manager.js";
import type { EnrollmentTokens } from "../control/enrollment-tokens.js";
import type { SshKeyRecord, TokenRecord, UserRecord } from "../domain/records.js";
import { callerOf } from "./workspace-api.js";

const toProto = (u: UserRecord) => ({ name: u.name, createTime: timestampFromMs(u.createdAt) });
const enrollmentToProto = (t: TokenRecord) => ({
  id: t.id,
  user: t.subject,
  name: t.name ?? "",
  createTime: timestampFromMs(t.createdAt),
  expireTime: timestampFromMs(t.expiresAt),
  maxWorkspaceTtlSeconds: Math.round((t.maxWorkspaceTtlMs ?? 0) / 1000),
  allowedPorts: [...(t.allowedPorts ?? [])],
});
const keyToProto = (k: SshKeyRecord) => ({ fingerprint: k.fingerprint, user: k.user, publicKey: k.publicKey, title: k.title, createTime: timestampFromMs(k.createdAt) });

/** warren.v1.UserService over the Connect protocol (users and tokens: admin only; SSH keys: their owner or the admin). */
export function userApi(options: {
  manager: UserManager;
  sshKeys: SshKeyManager;
  authenticator: Authenticator;
  enrollmentTokens: EnrollmentTokens;
}): ServiceImpl<typeof UserService> {
  const { manager, sshKeys, authenticator, enrollmentTokens } = options;
  return {
    async createEnrollmentToken(req, ctx) {
      const { token, record } = await enrollmentTokens.create(await callerOf(authenticator, ctx), {
        user: req.user,
        ttlMs: req.ttlSeconds * 1000,
        maxWorkspaceTtlMs: req.maxWorkspaceTtlSeconds * 1000,
        allowedPorts: req.allowedPorts,
        name: req.name,
      });
      return { token, enrollmentToken: enrollmentToProto(record) };
    },
    async listEnrollmentTokens(req, ctx) {
      return { tokens: (await enrollmentTokens.list(await callerOf(authenticator, ctx), req.user)).map(enrollmentToProto) };
    },
    async revokeEnrollmentToken(req, ctx) {
      await enrollmentTokens.revoke(await callerOf(authenticator, ctx), { id: req.id, token: req.token });
      return {};
    },
    async whoAmI(_req, ctx) {
      const principal = await callerOf(authenticator, ctx);
      const expiry = await authenticator.tokenExpiry(principal);
      return {
        user: principal.kind === "user" ? principal.user : "",
        admin: principal.kind === "admin",
        tokenId: principal.tokenId,
        ...(expiry !== undefined ? { tokenExpireTime: timestampFromMs(expiry) } : {}),
      };
    },
    async addSshKey(req, ctx) {
      return { key: keyToProto(await sshKeys.add(await callerOf(authenticator, ctx), req)) };
    },
    async listSshKeys(req, ctx) {
      return { keys: (await sshKeys.list(await callerOf(authenticator, ctx), req.user)).map(keyToProto) };
    },
    async removeSshKey(req, ctx) {
      await sshKeys.remove(await callerOf(authenticator, ctx), req);
      return {};
    },
    async createUser(req, ctx) {
      return { user: toProto(await manager.createUser(await callerOf(authenticator, ctx), req.name)) };
    },
    async listUsers(_req, ctx) {
      return { users: (await manager.listUsers(await callerOf(authenticator, ctx))).map(toProto) };
    },
    async createAccessToken(req, ctx) {
      const { token, record } = await manager.createAccessToken(await callerOf(authenticator, ctx), req.user, req.ttlSeconds * 1000, req.name);
      return { token, id: record.id, expireTime: timestampFromMs(record.expiresAt) };
    },
    async listAccessTokens(req, ctx) {
      const principal = await callerOf(authenticator, ctx);
      const tokens = await manager.listAccessTokens(principal, req.user);
      return {
        tokens: tokens.map((t) => ({
          id: t.id,
          user: t.subject,
          name: t.name ?? "",
          createTime: timestampFromMs(t.createdAt),
          expireTime: timestampFromMs(t.expiresAt),
          current: t.id === principal.tokenId,
        })),
      };
    },
    async revokeAccessToken(req, ctx) {
      await manager.revokeAccessToken(await callerOf(authenticator, ctx), { id: req.id, token: req.token });
      return {};
    },
  };
}
