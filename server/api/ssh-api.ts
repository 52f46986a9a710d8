import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { SshKeySchema, SshService, type SshKey } from "../../shared/gen/warren/v1/ssh_pb.js";
import type { Authenticator, Principal } from "../auth/authenticator.js";
import { isValidWorkspaceName } from "../http/workspace-host.js";
import type { SshKeyRecord } from "../store/records.js";
import type { SshKeyStore } from "../store/store.js";
import { parsePublicKey } from "../ssh/ssh-public-key.js";
import { callerOf } from "./workspace-api.js";

export interface SshApiOptions {
  readonly authenticator: Authenticator;
  readonly keys: SshKeyStore;
  /** Forgets a workspace's remembered sshd host key; false when none was remembered. */
  readonly forgetHostKey: (workspace: string) => Promise<boolean>;
  readonly now?: () => number;
}

const USER_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const MAX_TITLE = 200;
const MAX_KEYS_PER_USER = 100;

/**
 * warren.v1.SshService over the Connect protocol. Admin only until users land in the control
 * module; then key management belongs on UserService (a user managing their own keys).
 */
export function sshApi(options: SshApiOptions): ServiceImpl<typeof SshService> {
  const { authenticator, keys } = options;
  return {
    async addSshKey(req, ctx) {
      requireAdmin(await callerOf(authenticator, ctx));
      const user = validUser(req.user);
      const key = parsePublicKey(req.publicKey);
      const title = (req.title || key.comment).slice(0, MAX_TITLE);
      if ((await keys.listSshKeys(user)).length >= MAX_KEYS_PER_USER) {
        throw new WarrenError(ErrorCode.ResourceExhausted, `user "${user}" already has ${MAX_KEYS_PER_USER} SSH keys; remove one first`);
      }
      const record: SshKeyRecord = { fingerprint: key.fingerprint, user, publicKey: key.line, title, createdAt: (options.now ?? Date.now)() };
      await keys.addSshKey(record);
      return { key: toProto(record) };
    },
    async listSshKeys(req, ctx) {
      requireAdmin(await callerOf(authenticator, ctx));
      return { keys: (await keys.listSshKeys(validUser(req.user))).map(toProto) };
    },
    async removeSshKey(req, ctx) {
      requireAdmin(await callerOf(authenticator, ctx));
      const user = validUser(req.user);
      if (!req.fingerprint) throw new WarrenError(ErrorCode.InvalidArgument, "fingerprint: required");
      if (!(await keys.removeSshKey(user, req.fingerprint))) {
        throw new WarrenError(ErrorCode.NotFound, `user "${user}" has no SSH key ${req.fingerprint.slice(0, 80)}`);
      }
      return {};
    },
    async forgetWorkspaceHostKey(req, ctx) {
      requireAdmin(await callerOf(authenticator, ctx));
      if (!isValidWorkspaceName(req.workspace)) throw new WarrenError(ErrorCode.InvalidArgument, "workspace: not a valid workspace name");
      return { forgotten: await options.forgetHostKey(req.workspace) };
    },
  };
}

function toProto(record: SshKeyRecord): SshKey {
  return create(SshKeySchema, {
    fingerprint: record.fingerprint,
    user: record.user,
    publicKey: record.publicKey,
    title: record.title,
    createTime: timestampFromMs(record.createdAt),
  });
}

function requireAdmin(principal: Principal): void {
  if (principal.kind !== "admin") throw new WarrenError(ErrorCode.PermissionDenied, "this call needs the admin token");
}

function validUser(user: string): string {
  if (!user) throw new WarrenError(ErrorCode.InvalidArgument, "user: required");
  if (!USER_NAME.test(user)) throw new WarrenError(ErrorCode.InvalidArgument, `user: "${user.slice(0, 80)}" is not a valid user name`);
  return user;
}
