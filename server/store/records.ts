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
