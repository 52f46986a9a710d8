import { DisconnectReason } from "../shared/gen/warren/v1/agent_pb.js";
import type { Logger } from "../shared/logger.js";
import { Authenticator } from "./auth/authenticator.js";
import type { CredentialLeases } from "./auth/credential-leases.js";
import { SecretBox } from "./auth/secret-box.js";
import { KeyPurpose, type SecretKeys } from "./auth/secret-keys.js";
import type { ServerConfig } from "./config.js";
import { AgentControl } from "./control/agent-control.js";
import { EnrollmentTokens } from "./control/enrollment-tokens.js";
import { SshKeyManager } from "./control/ssh-key-manager.js";
import { UserManager } from "./control/user-manager.js";
import { WorkspaceManager } from "./control/workspace-manager.js";
import { sshKeyOfCredential } from "./domain/ssh-key-owner.js";
import type { ControlStore } from "./domain/store.js";
import type { EventBus } from "./events/event-bus.js";
import type { TunnelRegistry } from "./tunnel/tunnel-registry.js";

/** The rules that change state (server/control/), and the authenticator that reads it. */
export interface ControlLayer {
  readonly authenticator: Authenticator;
  readonly manager: WorkspaceManager;
  readonly users: UserManager;
  readonly sshKeys: SshKeyManager;
  readonly enrollmentTokens: EnrollmentTokens;
  readonly agentControl: AgentControl;
}

export interface ControlLayerContext {
  readonly config: ServerConfig;
  readonly log: Logger;
  readonly store: ControlStore;
  readonly events: EventBus;
  readonly adminToken: string;
  /** The current secret key and those still accepted (WARREN_SECRET_KEY_ACCEPTED). */
  readonly keys: SecretKeys;
  readonly acceptedKeys: readonly SecretKeys[];
  readonly registry: TunnelRegistry;
  readonly leases: CredentialLeases;
  readonly isConnected: (workspaceId: string) => Promise<boolean>;
}

/**
 * Builds the control layer over the mode's store and events, and makes every revocation event
 * (from this server or, in a cluster, any other) close what the revoked credential opened here:
 * no credential outlives its revocation on any server.
 */
export function buildControlLayer(context: ControlLayerContext): ControlLayer {
  const { config, store, events, registry, leases } = context;
  const log = context.log.child({ component: "control" });
  const authenticator = new Authenticator({ workspaces: store, tokens: store, adminToken: context.adminToken });
  const manager = new WorkspaceManager({
    workspaces: store,
    tokens: store,
    users: store,
    events,
    secretBox: new SecretBox(
      context.keys.derive(KeyPurpose.Variables),
      context.acceptedKeys.map((k) => k.derive(KeyPurpose.Variables)),
    ),
    agentTokenTtlMs: config.agentTokenTtl,
    isConnected: context.isConnected,
    log,
  });
  const users = new UserManager({ users: store, tokens: store, events, log });
  const sshKeys = new SshKeyManager({ keys: store, users: store, log, events });
  const enrollmentTokens = new EnrollmentTokens({ tokens: store, users: store, log });
  const agentControl = new AgentControl({ manager, workspaces: store, connections: registry, events, log });
  events.subscribe((event) => {
    if (event.type === "workspace-revoked") {
      // By token (rotated) or by incarnation (deleted, terminated); only events of servers
      // older than incarnations name the workspace alone.
      if (event.tokenId) leases.revokeToken(event.tokenId, event.reason);
      else if (event.workspaceId) leases.revokeWorkspace(event.workspaceId, event.reason);
      else registry.disconnectWorkspace(event.workspace, DisconnectReason.REVOKED, event.reason);
    } else if (event.type === "workspace-created") {
      registry.closeOtherIncarnations(event.workspace, event.workspaceId);
    } else if (event.type === "token-revoked") {
      authenticator.forgetToken(event.tokenId);
      leases.revokeToken(event.tokenId, sshKeyOfCredential(event.tokenId) ? "the SSH key was removed" : "the access token was revoked");
    }
  });
  return { authenticator, manager, users, sshKeys, enrollmentTokens, agentControl };
}
