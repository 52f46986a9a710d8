import { Client, type AnyAuthMethod, type AuthenticationType } from "ssh2";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { DEFAULT_SSH_PORT, DEFAULT_SSH_USER, workspaceRefOf, type WorkspaceRecord } from "../domain/records.js";
import { trafficRefusal } from "../domain/workspace-policy.js";
import type { Dialer } from "../tunnel/tunnel-dialer.js";
import type { KnownHostKeys } from "./known-host-keys.js";
import { SSH_ALGORITHMS, WORKSPACE_HOST_KEY_ALGORITHMS } from "./ssh-algorithms.js";
import type { WorkspaceSshIdentities } from "./workspace-ssh-identity.js";

export interface WorkspaceSshConnectorOptions {
  readonly dialer: Dialer;
  readonly identities: Pick<WorkspaceSshIdentities, "get">;
  readonly knownHosts: Pick<KnownHostKeys, "check">;
  /** Handshake and login with the workspace's sshd, after the dial. */
  readonly readyTimeoutMs: number;
  readonly keepaliveIntervalMs: number;
  readonly log: Logger;
}

export function sshPortOf(workspace: WorkspaceRecord): number {
  return workspace.sshPort || DEFAULT_SSH_PORT;
}

export function sshUserOf(workspace: WorkspaceRecord): string {
  return workspace.sshUser || DEFAULT_SSH_USER;
}

/**
 * Opens the relay's SSH client session to a workspace's own sshd: dials its SSH port through
 * the tunnel, checks the host key against the one remembered on first use, and logs in as the
 * workspace's SSH user with no password, the workspace's key pair, or an empty password, in
 * that order (workspace images usually allow the first or the last).
 */
export class WorkspaceSshConnector {
  readonly #options: WorkspaceSshConnectorOptions;

  constructor(options: WorkspaceSshConnectorOptions) {
    this.#options = options;
  }

  /**
   * Resolves with a logged-in client that the caller owns (and must end). Rejects with a
   * WarrenError whose message a person can act on: unavailable (not connected), bad_gateway
   * (no sshd, or not SSH), failed_precondition (host key changed, login refused),
   * deadline_exceeded.
   */
  async connect(workspace: WorkspaceRecord, connectionId: string): Promise<Client> {
    const refusal = trafficRefusal(workspace);
    if (refusal) throw refusal;
    const port = sshPortOf(workspace);
    const user = sshUserOf(workspace);
    const socket = await this.#options.dialer.dial(workspaceRefOf(workspace), port, { connectionId }).catch((err: unknown) => {
      throw dialFailure(workspace.name, port, WarrenError.from(err));
    });
    let identity;
    try {
      identity = await this.#options.identities.get(workspace);
    } catch (err) {
      socket.destroy();
      throw err;
    }
    const client = new Client();
    let hostKeyProblem: WarrenError | undefined;
    const methods: AnyAuthMethod[] = [
      { type: "none", username: user },
      { type: "publickey", username: user, key: identity.privateKey },
      { type: "password", username: user, password: "" },
    ];
    return new Promise<Client>((resolve, reject) => {
      const fail = (err: WarrenError) => {
        client.removeAllListeners("ready");
        client.on("error", () => {});
        client.end();
        socket.destroy();
        reject(err);
      };
      client.once("ready", () => {
        client.removeAllListeners("error");
        client.on("error", (err) => this.#options.log.debug({ connectionId, err: err.message }, "workspace sshd connection error"));
        resolve(client);
      });
      client.once("error", (err: Error & { level?: string }) => {
        if (hostKeyProblem) return fail(hostKeyProblem);
        if (err.level === "client-authentication") {
          return fail(
            new WarrenError(
              ErrorCode.FailedPrecondition,
              `the SSH server of workspace "${workspace.name}" refused user "${user}": let that user in with an empty password, or add the workspace's sshPublicKey (GetWorkspace) to ~${user}/.ssh/authorized_keys`,
            ),
          );
        }
        if (err.level === "client-timeout") {
          return fail(new WarrenError(ErrorCode.DeadlineExceeded, `the SSH server of workspace "${workspace.name}" (port ${port}) did not complete the login within ${this.#options.readyTimeoutMs} ms`));
        }
        fail(new WarrenError(ErrorCode.BadGateway, `the SSH server of workspace "${workspace.name}" (port ${port}) failed the handshake: ${err.message}`));
      });
      let next = 0;
      client.connect({
        sock: socket,
        username: user,
        algorithms: { ...SSH_ALGORITHMS, serverHostKey: WORKSPACE_HOST_KEY_ALGORITHMS as never },
        readyTimeout: this.#options.readyTimeoutMs,
        keepaliveInterval: this.#options.keepaliveIntervalMs,
        keepaliveCountMax: 3,
        hostVerifier: (key: Buffer, verify: (valid: boolean) => void) => {
          this.#options.knownHosts.check(workspace, key).then(
            (result) => {
              if (result.ok) {
                if (result.firstUse) this.#options.log.info({ connectionId, workspace: workspace.name, hostKey: result.fingerprint }, "remembered the workspace sshd host key on first use");
                verify(true);
                return;
              }
              hostKeyProblem = new WarrenError(
                ErrorCode.FailedPrecondition,
                `the SSH host key of workspace "${workspace.name}" changed (remembered ${result.expected}, now ${result.presented}); refusing to connect. If the workspace's sshd got a new key on purpose, its owner or an admin can forget the old one (WorkspaceService/ForgetWorkspaceHostKey)`,
              );
              this.#options.log.warn({ connectionId, workspace: workspace.name, expected: result.expected, presented: result.presented }, "workspace sshd host key changed; refused");
              verify(false);
            },
            (err: unknown) => {
              hostKeyProblem = WarrenError.from(err);
              verify(false);
            },
          );
        },
        authHandler: (authsLeft: AuthenticationType[] | null, _partial: boolean, done: (next: AnyAuthMethod | false) => void) => {
          while (next < methods.length) {
            const method = methods[next++]!;
            if (!authsLeft || method.type === "none" || authsLeft.includes(method.type)) return done(method);
          }
          done(false);
        },
      } as never);
    });
  }
}

function dialFailure(workspace: string, port: number, err: WarrenError): WarrenError {
  switch (err.code) {
    case ErrorCode.BadGateway:
      return new WarrenError(
        ErrorCode.BadGateway,
        `the SSH server of workspace "${workspace}" is not reachable: nothing listens on port ${port} inside the workspace; start sshd there (or set the workspace's sshPort)`,
        { cause: err },
      );
    case ErrorCode.PermissionDenied:
      return new WarrenError(ErrorCode.BadGateway, `the agent of workspace "${workspace}" refuses to dial its SSH port ${port}; upgrade the agent`, { cause: err });
    default:
      return err;
  }
}
