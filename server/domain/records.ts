import type { TokenKind } from "./tokens.js";
import type { ActualState, DesiredState } from "./workspace-state.js";

/** A port a workspace exposes through the tunnel. */
export interface PortRecord {
  readonly port: number;
  /** Reachable without credentials. */
  readonly public: boolean;
}

/**
 * A workspace. Plain JSON-serializable data: the Redis store keeps it as one JSON value.
 * Fields added by the control module are optional so that records written before them load.
 */
export interface WorkspaceRecord {
  /**
   * Immutable id of this incarnation of the workspace, made when it is created: a name used
   * again later is another workspace. Absent in records written before ids: see workspaceIdOf().
   */
  readonly id?: string;
  readonly name: string;
  readonly ports: readonly PortRecord[];
  /** Milliseconds since the epoch. */
  readonly createdAt: number;
  /** Id of the workspace's current agent token. */
  readonly agentTokenId: string;
  readonly agentTokenExpiresAt: number;
  /** The user who owns it; undefined: only admins reach it. */
  readonly owner?: string;
  /** What the workspace should be; Running when absent. */
  readonly desiredState?: DesiredState;
  /** What the agent last reported (or the server concluded); CreationRequested when absent. */
  readonly actualState?: ActualState;
  /** When actualState last changed (ms since the epoch). */
  readonly actualStateAt?: number;
  /** Id of the agent connection whose report set actualState (so that only its loss makes it Unknown). */
  readonly reportedBy?: string;
  /** When the time to live passes and the workspace is terminated (ms since the epoch). */
  readonly expiresAt?: number;
  /** When termination was requested: the agent gets a grace period to stop its workload. */
  readonly terminatingSince?: number;
  /** Names of the variables, in order (values are only in `sealedVariables`). */
  readonly variableNames?: readonly string[];
  /** The variables, sealed with AES-256-GCM (see server/auth/secret-box.ts); never plaintext. */
  readonly sealedVariables?: string;
  /**
   * Bumped by every update: updateWorkspaceIf() stores a change only when the stored
   * revision is still the one the change was computed from.
   */
  readonly revision?: number;
  /** Port of the workspace's sshd, dialed by the SSH front door; DEFAULT_SSH_PORT when absent. */
  readonly sshPort?: number;
  /** User the SSH front door logs in as on the workspace's sshd; DEFAULT_SSH_USER when absent. */
  readonly sshUser?: string;
  /** TCP ports listening inside the workspace, as its agent last reported them (informational). */
  readonly detectedPorts?: readonly DetectedPortRecord[];
  /** Workspaces a CI job enrolled for itself (`warren-agent ci`): who vouched for the job, and its hold. */
  readonly ci?: CiJobRecord;
}

/**
 * The CI job behind a workspace made by `warren-agent ci`. With an ID token, issuer, project
 * and job come from its verified claims; with an enrollment token they are what the job said.
 */
export interface CiJobRecord {
  /** The ID token's issuer URL, or `enrollment token <id>`. */
  readonly issuer: string;
  readonly project?: string;
  readonly job?: string;
  /** A link to the job in the CI system, when known. */
  readonly jobUrl?: string;
  /** The enrollment token it was made with (absent for ID tokens). */
  readonly enrollmentTokenId?: string;
  /** The job's command failed: the workspace is held for a person to look inside until then (ms since the epoch). */
  readonly holdUntil?: number;
  /** The failed command's exit code, during a hold. */
  readonly exitCode?: number;
}

/** A port the agent saw listening inside the workspace; being detected makes nothing reachable. */
export interface DetectedPortRecord {
  readonly port: number;
  /** The address it listens on ("127.0.0.1", "0.0.0.0", "::", ...). */
  readonly address: string;
  /** The listening process's name, when the agent could read it. */
  readonly process?: string;
}

/**
 * The workspace's incarnation id: what agent connections, their reports and every credential
 * lease are bound to, never the name alone. Records written before ids get one derived from
 * what never changes in them (name and creation time), so it is the same on every server.
 */
export function workspaceIdOf(workspace: Pick<WorkspaceRecord, "id" | "name" | "createdAt">): string {
  return workspace.id ?? `${workspace.name}@${workspace.createdAt}`;
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

/** A variable of a workspace, as delivered to its agent (plaintext only in memory). */
export interface VariableRecord {
  readonly name: string;
  readonly value: string;
  /** A file variable: the value goes into a file and the variable holds its path. */
  readonly file: boolean;
}

export interface TokenRecord {
  readonly id: string;
  readonly kind: TokenKind;
  /** Hex SHA-256 of the token's secret part; the token itself is never stored. */
  readonly hash: string;
  /** Workspace name for agent tokens, user name for access and enrollment tokens. */
  readonly subject: string;
  readonly createdAt: number;
  readonly expiresAt: number;
  /** Access tokens: a label the user chose ("laptop", "browser session (SSO)"). */
  readonly name?: string;
  /** Access tokens: the holder has the admin's rights (single sign-on sessions of admin groups). */
  readonly admin?: boolean;
  /** Access tokens minted for one browser session (single sign-on): signing out revokes them. */
  readonly browserSession?: boolean;
  /** Enrollment tokens: the longest time to live a workspace enrolled with it may have. */
  readonly maxWorkspaceTtlMs?: number;
  /** Enrollment tokens: the only ports its workspaces may expose (none listed: any). */
  readonly allowedPorts?: readonly number[];
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

export interface UserRecord {
  readonly name: string;
  readonly createdAt: number;
}

/**
 * A one-time login code: minted by the login page on the root domain, redeemed once on the
 * workspace host it names, which then sets its own session cookie.
 */
export interface LoginCodeRecord {
  /** Lookup key (the code's id part). */
  readonly id: string;
  /** Hex SHA-256 of the code's secret part. */
  readonly hash: string;
  /** The workspace host label it may be redeemed on: `{port}-{workspace}`. */
  readonly host: string;
  /**
   * The workspace incarnation (id) the host served when the code was minted; undefined when no
   * workspace of that name existed. Redeemed only while the host serves the same one.
   */
  readonly workspaceId?: string;
  /** Who logged in: a user name, or undefined for the admin. */
  readonly user?: string;
  /** Id of the access token used to log in ("admin" for the admin token): sessions end with it. */
  readonly tokenId: string;
  readonly expiresAt: number;
  /** Set for `warren login` codes (host is "cli-login"): redeemed by the CLI with its PKCE verifier. */
  readonly cliLogin?: {
    /** base64url SHA-256 of the CLI's code verifier. */
    readonly codeChallenge: string;
    /** The loopback URL the code was sent to; the exchange must name it again. */
    readonly redirectUri: string;
    /** Label of the access token the exchange creates. */
    readonly name: string;
  };
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

/** The workspace incarnation a record describes, for dials and presence (tunnel/workspace-ref.ts). */
export function workspaceRefOf(workspace: Pick<WorkspaceRecord, "id" | "name" | "createdAt">): { readonly name: string; readonly id: string } {
  return { name: workspace.name, id: workspaceIdOf(workspace) };
}
