import type { TokenKind } from "../auth/tokens.js";

/** A port a workspace exposes through the tunnel. */
export interface PortRecord {
  readonly port: number;
  /** Reachable without credentials. */
  readonly public: boolean;
}

export interface WorkspaceRecord {
  readonly name: string;
  readonly ports: readonly PortRecord[];
  /** Milliseconds since the epoch. */
  readonly createdAt: number;
  /** Id of the workspace's current agent token. */
  readonly agentTokenId: string;
  readonly agentTokenExpiresAt: number;
  /** Port of the workspace's sshd, dialed by the SSH front door; DEFAULT_SSH_PORT when absent. */
  readonly sshPort?: number;
  /** User the SSH front door logs in as on the workspace's sshd; DEFAULT_SSH_USER when absent. */
  readonly sshUser?: string;
}

export const DEFAULT_SSH_PORT = 22;
export const DEFAULT_SSH_USER = "warren";

/**
 * Ports the agent may dial: the exposed ones, and the sshd port, which only the SSH front
 * door dials (it is not exposed over HTTP or to `ssh -L`).
 */
export function dialablePorts(workspace: WorkspaceRecord): number[] {
  const ports = workspace.ports.map((p) => p.port);
  const ssh = workspace.sshPort || DEFAULT_SSH_PORT;
  return ports.includes(ssh) ? ports : [...ports, ssh];
}

export interface TokenRecord {
  readonly id: string;
  readonly kind: TokenKind;
  /** Hex SHA-256 of the token's secret part; the token itself is never stored. */
  readonly hash: string;
  /** Workspace name for agent tokens, user name for access tokens. */
  readonly subject: string;
  readonly createdAt: number;
  readonly expiresAt: number;
}

/** A public key a user registered for SSH logins. A key belongs to one user at most. */
export interface SshKeyRecord {
  /** `SHA256:<unpadded base64>` of the key blob, as `ssh-keygen -l` prints it. */
  readonly fingerprint: string;
  readonly user: string;
  /** `<type> <base64>`, without comment. */
  readonly publicKey: string;
  readonly title: string;
  readonly createdAt: number;
}

/**
 * Per-workspace SSH state that the SSH front door keeps. `workspaceCreatedAt` ties it to one
 * incarnation of the workspace name: state left by a deleted workspace of the same name is
 * ignored and replaced.
 */
export interface WorkspaceSshIdentity {
  readonly workspaceCreatedAt: number;
  /** OpenSSH private key the front door logs in to the workspace's sshd with. */
  readonly privateKey: string;
  /** Its public half (`ssh-ed25519 <base64> warren@<workspace>`), for the image to trust. */
  readonly publicKey: string;
}

/** The workspace sshd's host key, remembered on first use. */
export interface PinnedHostKey {
  readonly workspaceCreatedAt: number;
  /** `<type> <base64>` */
  readonly publicKey: string;
  readonly fingerprint: string;
  readonly pinnedAt: number;
}
