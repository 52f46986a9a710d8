import { randomBytes } from "node:crypto";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { Principal } from "../domain/principal.js";
import { mayReach, statesOf } from "../domain/workspace-policy.js";
import type { SecretBox } from "../auth/secret-box.js";
import { mintToken, TokenKind } from "../domain/tokens.js";
import type { EventBus } from "../events/event-bus.js";
import { isValidNewWorkspaceName, isValidWorkspaceName, MAX_NEW_WORKSPACE_NAME_CHARS } from "../domain/workspace-name.js";
import { dialablePorts, workspaceIdOf, type CiJobRecord, type DetectedPortRecord, type PortRecord, type VariableRecord, type WorkspaceRecord } from "../domain/records.js";
import type { TokenStore, UserStore, WorkspaceStore } from "../domain/store.js";
import { ActualState, applyAction, applyAgentGone, applyReport, DesiredState, isLegalTransition, type LifecycleAction, type WorkloadStatus, type WorkspaceStates } from "../domain/workspace-state.js";

export interface CreateWorkspaceInput {
  readonly name: string;
  readonly ports: readonly PortRecord[];
  /** Agent token lifetime in ms; the server default when 0 or absent. */
  readonly agentTokenTtlMs?: number;
  /** Time to live in ms: the workspace is terminated when it passes; none when 0 or absent. */
  readonly ttlMs?: number;
  readonly variables?: readonly VariableRecord[];
  /** Owner (admin only); a user's workspace is always their own. */
  readonly owner?: string;
  /** Port of the workspace's sshd; the default when 0 or absent. */
  readonly sshPort?: number;
  /** User the SSH front door logs in as; the default when empty or absent. */
  readonly sshUser?: string;
  /** A CI job enrolled it (CiService only: never from WorkspaceService's request). */
  readonly ci?: CiJobRecord;
}

export interface WorkspaceManagerOptions {
  readonly workspaces: WorkspaceStore;
  readonly tokens: TokenStore;
  readonly users: UserStore;
  readonly events: EventBus;
  /** Seals variables at rest. */
  readonly secretBox: SecretBox;
  readonly agentTokenTtlMs: number;
  /** Whether an agent of the workspace is connected anywhere in the cluster. */
  /** Whether an agent of the workspace incarnation (by id) is connected anywhere in the cluster. */
  readonly isConnected: (workspaceId: string) => Promise<boolean>;
  readonly log: Logger;
  /** How long a terminating workspace's agent gets to stop its workload before Terminated. */
  readonly terminateGraceMs?: number;
  /** How long a terminated workspace stays readable before it is removed. */
  readonly terminatedRetentionMs?: number;
  /** How long a CI job's workspace waits for its agent (to connect, or to come back) before it is terminated. */
  readonly ciAgentGoneGraceMs?: number;
  readonly now?: () => number;
}

const MAX_PORTS = 64;
const MAX_VARIABLES = 100;
const MAX_VARIABLE_BYTES = 64 * 1024;
const MAX_VARIABLES_BYTES = 512 * 1024;
const MAX_TTL_MS = 366 * 86_400_000;
const VARIABLE_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const MUTATE_ATTEMPTS = 20;
/** Longer than an agent's reconnect backoff (20 s at most) and a server drain, far shorter than a CI time to live. */
const CI_AGENT_GONE_GRACE_MS = 2 * 60_000;


/**
 * The control module's rules for workspaces: validation, ownership, tokens, the lifecycle
 * state machine (workspace-state.ts) and time to live. Every change goes through one
 * compare-and-set loop, logs each state transition, and tells the cluster (workspace-changed,
 * or workspace-revoked when agents must go).
 */
export class WorkspaceManager {
  readonly #options: WorkspaceManagerOptions;
  readonly #log: Logger;

  constructor(options: WorkspaceManagerOptions) {
    this.#options = options;
    this.#log = options.log;
  }

  #now(): number {
    return (this.#options.now ?? Date.now)();
  }

  get #terminateGraceMs(): number {
    return this.#options.terminateGraceMs ?? 10_000;
  }

  /** Creates a workspace and its agent token; the token is returned once and stored hashed. */
  async create(principal: Principal, input: CreateWorkspaceInput): Promise<{ workspace: WorkspaceRecord; agentToken: string }> {
    validateNewName(input.name);
    const ports = validatePorts(input.ports);
    const variables = validateVariables(input.variables ?? []);
    const tokenTtl = validateTtl("agentTokenTtlSeconds", input.agentTokenTtlMs) ?? this.#options.agentTokenTtlMs;
    const ttl = validateTtl("ttlSeconds", input.ttlMs);
    const owner = await this.#ownerFor(principal, input.owner);
    const ssh = validateSsh(input);
    const now = this.#now();
    const expiresAt = ttl === undefined ? undefined : now + ttl;
    // A token never outlives its workspace.
    const tokenExpiresAt = Math.min(now + tokenTtl, expiresAt ?? Infinity);
    const token = mintToken(TokenKind.Agent);
    const workspace: WorkspaceRecord = {
      id: newWorkspaceId(),
      name: input.name,
      ports,
      createdAt: now,
      agentTokenId: token.id,
      agentTokenExpiresAt: tokenExpiresAt,
      ...(owner !== undefined ? { owner } : {}),
      desiredState: DesiredState.Running,
      actualState: ActualState.CreationRequested,
      actualStateAt: now,
      ...(expiresAt !== undefined ? { expiresAt } : {}),
      variableNames: variables.map((v) => v.name),
      ...(variables.length > 0 ? { sealedVariables: this.#options.secretBox.seal(JSON.stringify(variables), sealContext(input.name)) } : {}),
      revision: 1,
      ...ssh,
      ...(input.ci ? { ci: input.ci } : {}),
    };
    await this.#replaceTerminated(input.name);
    await this.#options.workspaces.createWorkspace(workspace);
    await this.#options.tokens.putToken({
      id: token.id,
      kind: TokenKind.Agent,
      hash: token.hash,
      subject: workspace.name,
      createdAt: now,
      expiresAt: tokenExpiresAt,
    });
    this.#log.info(
      { workspace: workspace.name, owner, ttlMs: ttl, variables: workspace.variableNames, desired: workspace.desiredState, actual: workspace.actualState },
      "workspace created",
    );
    // Agents of an earlier workspace of this name (a missed revocation, a store that lost its data) must go.
    await this.#options.events.publish({ type: "workspace-created", workspace: workspace.name, workspaceId: workspaceIdOf(workspace) });
    return { workspace, agentToken: token.token };
  }

  /** The workspace, or not_found (also for someone else's workspace: names do not leak). */
  async get(principal: Principal, name: string): Promise<WorkspaceRecord> {
    validateName(name);
    const workspace = await this.#options.workspaces.getWorkspace(name);
    if (!workspace || !mayReach(principal, workspace)) throw notFound(name);
    return workspace;
  }

  /** The workspaces the principal may see: all for the admin, their own for a user. */
  async list(principal: Principal): Promise<WorkspaceRecord[]> {
    const all = await this.#options.workspaces.listWorkspaces();
    return all.filter((w) => mayReach(principal, w));
  }

  /** Deletes the workspace, revokes its agent token and disconnects its agents everywhere. */
  async delete(principal: Principal, name: string): Promise<void> {
    const workspace = await this.get(principal, name);
    await this.#options.tokens.deleteToken(workspace.agentTokenId);
    await this.#options.workspaces.deleteWorkspace(name);
    this.#log.info({ workspace: name }, "workspace deleted");
    await this.#options.events.publish({
      type: "workspace-revoked",
      workspace: name,
      workspaceId: workspaceIdOf(workspace),
      reason: `workspace "${name}" was deleted`,
    });
  }

  /** Applies stop, start, restart or terminate; resolves with the workspace as it is then. */
  async act(principal: Principal, name: string, action: LifecycleAction): Promise<WorkspaceRecord> {
    await this.get(principal, name);
    if (action === "terminate") return this.#terminate(name, `terminated by ${principal.kind === "admin" ? "the admin" : `user "${principal.user}"`}`);
    const now = this.#now();
    const result = await this.#mutate(name, `${action} requested`, (r) => withStates(r, applyAction(statesOf(r), action, name), now));
    if (!result) throw notFound(name);
    return result.after;
  }

  /** Issues a new agent token and revokes the old one (its agents are disconnected). */
  async rotateAgentToken(principal: Principal, name: string, ttlMs?: number): Promise<{ workspace: WorkspaceRecord; agentToken: string }> {
    const current = await this.get(principal, name);
    if (statesOf(current).desired === DesiredState.Terminated) {
      throw new WarrenError(ErrorCode.FailedPrecondition, `workspace "${name}" is terminated; its token cannot be rotated`);
    }
    const tokenTtl = validateTtl("agentTokenTtlSeconds", ttlMs) ?? this.#options.agentTokenTtlMs;
    const now = this.#now();
    const token = mintToken(TokenKind.Agent);
    const expiresAt = Math.min(now + tokenTtl, current.expiresAt ?? Infinity);
    await this.#options.tokens.putToken({ id: token.id, kind: TokenKind.Agent, hash: token.hash, subject: name, createdAt: now, expiresAt });
    let oldTokenId: string | undefined;
    const result = await this.#mutate(name, "agent token rotated", (r) => {
      oldTokenId = r.agentTokenId;
      return { ...r, agentTokenId: token.id, agentTokenExpiresAt: expiresAt };
    });
    if (!result) {
      await this.#options.tokens.deleteToken(token.id);
      throw notFound(name);
    }
    if (oldTokenId) await this.#options.tokens.deleteToken(oldTokenId);
    this.#log.info({ workspace: name }, "agent token rotated");
    await this.#options.events.publish({
      type: "workspace-revoked",
      workspace: name,
      ...(oldTokenId ? { tokenId: oldTokenId } : { workspaceId: workspaceIdOf(current) }),
      reason: `the agent token of workspace "${name}" was rotated`,
    });
    return { workspace: result.after, agentToken: token.token };
  }

  /**
   * Exposes a port (or changes whether it is public) while the workspace runs: the agents of
   * the workspace may dial it at once, on every server. Owner or admin; resolves with the
   * workspace as it is then.
   */
  async exposePort(principal: Principal, name: string, port: number, isPublic: boolean): Promise<WorkspaceRecord> {
    await this.get(principal, name);
    validatePort("port", port);
    const result = await this.#mutate(name, `port ${port} exposed`, (r) => {
      refuseIfTerminated(r);
      const current = r.ports.find((p) => p.port === port);
      if (current && current.public === isPublic) return r;
      if (!current && r.ports.length >= MAX_PORTS) throw new WarrenError(ErrorCode.ResourceExhausted, `workspace "${name}" already exposes ${MAX_PORTS} ports, the most it may`);
      const ports = current ? r.ports.map((p) => (p.port === port ? { port, public: isPublic } : p)) : [...r.ports, { port, public: isPublic }];
      return { ...r, ports };
    });
    if (!result) throw notFound(name);
    if (result.before !== result.after) this.#log.info({ workspace: name, port, public: isPublic }, "port exposed");
    return result.after;
  }

  /**
   * Stops exposing a port: new connections to it are refused, and the agents close every open
   * one. Rejects with not_found when the port is not exposed.
   */
  async unexposePort(principal: Principal, name: string, port: number): Promise<WorkspaceRecord> {
    await this.get(principal, name);
    validatePort("port", port);
    const result = await this.#mutate(name, `port ${port} unexposed`, (r) => {
      refuseIfTerminated(r);
      if (!r.ports.some((p) => p.port === port)) {
        throw new WarrenError(ErrorCode.NotFound, `port ${port} is not exposed by workspace "${name}" (see \`warren workspace get ${name}\`)`);
      }
      return { ...r, ports: r.ports.filter((p) => p.port !== port) };
    });
    if (!result) throw notFound(name);
    this.#log.info({ workspace: name, port }, "port unexposed");
    return result.after;
  }

  /** The agent reported the ports listening inside the workspace (stored only when they changed). */
  async reportListeningPorts(name: string, workspaceId: string, ports: readonly DetectedPortRecord[]): Promise<void> {
    const detected = normalizeDetected(ports);
    await this.#mutate(name, "listening ports reported", (r) => {
      if (workspaceIdOf(r) !== workspaceId) return r;
      if (statesOf(r).actual === ActualState.Terminated) return r;
      if (JSON.stringify(r.detectedPorts ?? []) === JSON.stringify(detected)) return r;
      return { ...r, detectedPorts: detected };
    }, { fromAgent: true });
  }

  /**
   * An agent connection reported its workload's state. It applies to the workspace incarnation
   * the connection was welcomed into only: a report about an earlier workspace of the same
   * name changes nothing.
   */
  async report(
    name: string,
    workspaceId: string,
    connectionId: string,
    status: WorkloadStatus,
    detail: { exitCode?: number; message?: string } = {},
  ): Promise<void> {
    const now = this.#now();
    const cause = `agent reported ${status}${detail.exitCode ? ` (exit code ${detail.exitCode})` : ""}${detail.message ? `: ${detail.message}` : ""}`;
    const result = await this.#mutate(name, cause, (r) => {
      if (workspaceIdOf(r) !== workspaceId) return r;
      if (statesOf(r).actual === ActualState.Terminated) return r;
      const next = applyReport(statesOf(r), status);
      const same = sameStates(statesOf(r), next);
      if (same && r.reportedBy === connectionId) return r;
      return { ...withStates(r, next, now), reportedBy: connectionId };
    }, { fromAgent: true });
    if (result && result.after.actualState === ActualState.Terminated && result.before.actualState !== ActualState.Terminated) {
      await this.#revoke(result.after, `workspace "${name}" was terminated`);
    }
  }

  /** The agent connection that reported last went away: the actual state is no longer known. */
  async agentGone(name: string, workspaceId: string, connectionId: string): Promise<void> {
    const now = this.#now();
    const result = await this.#mutate(name, "the reporting agent disconnected", (r) => {
      if (workspaceIdOf(r) !== workspaceId || r.reportedBy !== connectionId) return r;
      const { reportedBy: _gone, ...rest } = withStates(r, applyAgentGone(statesOf(r)), now);
      return rest;
    });
    if (result && result.after.actualState === ActualState.Terminated && result.before.actualState !== ActualState.Terminated) {
      await this.#revoke(result.after, `workspace "${name}" was terminated`);
    }
  }

  /**
   * A CI job's command failed: the workspace stays for a person to look inside until
   * `holdMs` from now (never beyond its time to live, which the hold becomes). Only for the
   * workspace incarnation the caller's agent token belongs to.
   */
  async holdCiWorkspace(name: string, workspaceId: string, holdMs: number, exitCode: number): Promise<WorkspaceRecord> {
    const now = this.#now();
    const result = await this.#mutate(name, "CI job failed: held", (r) => {
      if (workspaceIdOf(r) !== workspaceId || !r.ci) throw notFound(name);
      refuseIfTerminated(r);
      const holdUntil = Math.min(now + holdMs, r.expiresAt ?? Infinity);
      return { ...r, expiresAt: holdUntil, ci: { ...r.ci, holdUntil, exitCode } };
    });
    if (!result) throw notFound(name);
    this.#log.info({ workspace: name, holdUntil: new Date(result.after.ci?.holdUntil ?? now).toISOString(), exitCode }, "CI workspace held after its job failed");
    return result.after;
  }

  /** A CI job ended: its workspace is terminated at once (its agent token's incarnation only). */
  async finishCiWorkspace(name: string, workspaceId: string, why: string): Promise<void> {
    const current = await this.#options.workspaces.getWorkspace(name);
    if (!current || workspaceIdOf(current) !== workspaceId || !current.ci) throw notFound(name);
    await this.#terminate(name, why);
  }

  /** The workspace's variables in plaintext, for its agent only. Never log them. */
  variablesOf(workspace: WorkspaceRecord): VariableRecord[] {
    if (!workspace.sealedVariables) return [];
    return JSON.parse(this.#options.secretBox.open(workspace.sealedVariables, sealContext(workspace.name)).toString("utf8")) as VariableRecord[];
  }

  /**
   * One pass of the clock-driven rules: terminates workspaces whose time to live has passed,
   * completes terminations whose agent did not stop in time, and removes terminated
   * workspaces after their retention. Called every second by the server; tests call it with a
   * fake clock. Never rejects: failures are logged and retried on the next pass.
   */
  async sweep(): Promise<void> {
    const now = this.#now();
    let all: WorkspaceRecord[];
    try {
      all = await this.#options.workspaces.listWorkspaces();
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, "workspace sweep could not list workspaces");
      return;
    }
    for (const w of all) {
      try {
        const { desired, actual } = statesOf(w);
        if (desired !== DesiredState.Terminated && w.expiresAt !== undefined && w.expiresAt <= now) {
          await this.#terminate(w.name, "its time to live passed");
        } else if (desired !== DesiredState.Terminated && this.#ciJobGone(w, now) && !(await this.#options.isConnected(w.name))) {
          await this.#terminate(w.name, "its CI job's agent has been gone too long");
        } else if (actual === ActualState.Terminating && (w.terminatingSince ?? 0) + this.#terminateGraceMs <= now) {
          await this.#finishTermination(w.name, "the agent did not stop its workload in time");
        } else if (actual === ActualState.Terminated && (w.terminatingSince ?? w.createdAt) + (this.#options.terminatedRetentionMs ?? 3_600_000) <= now) {
          if (await this.#options.workspaces.deleteWorkspace(w.name)) this.#log.info({ workspace: w.name }, "terminated workspace removed");
        }
      } catch (err) {
        this.#log.warn({ workspace: w.name, err: (err as Error).message }, "workspace sweep failed for a workspace");
      }
    }
  }

  /**
   * A CI job's workspace whose agent never came or left and has not come back within the
   * grace: the job is over (its runner died, the agent was killed), so nobody can end it but us.
   */
  #ciJobGone(w: WorkspaceRecord, now: number): boolean {
    if (!w.ci) return false;
    const { actual } = statesOf(w);
    if (actual !== ActualState.Unknown && actual !== ActualState.CreationRequested) return false;
    return (w.actualStateAt ?? w.createdAt) + (this.#options.ciAgentGoneGraceMs ?? CI_AGENT_GONE_GRACE_MS) <= now;
  }

  async #terminate(name: string, why: string): Promise<WorkspaceRecord> {
    const now = this.#now();
    const result = await this.#mutate(name, why, (r) => {
      const next = applyAction(statesOf(r), "terminate", name);
      if (sameStates(statesOf(r), next) || statesOf(r).actual === ActualState.Terminated) return r;
      return { ...withStates(r, next, now), terminatingSince: now };
    });
    if (!result) throw notFound(name);
    if (result.before === result.after) return result.after;
    // The token goes at once: no new agent gets in while the connected one stops its workload.
    await this.#options.tokens.deleteToken(result.after.agentTokenId);
    if (!(await this.#options.isConnected(workspaceIdOf(result.after)))) return this.#finishTermination(name, "no agent is connected");
    return result.after;
  }

  async #finishTermination(name: string, why: string): Promise<WorkspaceRecord> {
    const now = this.#now();
    const result = await this.#mutate(name, why, (r) =>
      statesOf(r).actual === ActualState.Terminating ? withStates(r, { desired: DesiredState.Terminated, actual: ActualState.Terminated }, now) : r,
    );
    if (!result) throw notFound(name);
    if (result.before !== result.after) await this.#revoke(result.after, `workspace "${name}" was terminated`);
    return result.after;
  }

  /** Revokes the token and disconnects the workspace incarnation's agents on every server. */
  async #revoke(workspace: WorkspaceRecord, reason: string): Promise<void> {
    await this.#options.tokens.deleteToken(workspace.agentTokenId);
    await this.#options.events.publish({ type: "workspace-revoked", workspace: workspace.name, workspaceId: workspaceIdOf(workspace), reason });
  }

  /**
   * Read, change, compare-and-set, retry on conflict. `change` returns the record itself for
   * "no change". Logs every state transition and tells the cluster the workspace changed.
   */
  async #mutate(
    name: string,
    cause: string,
    change: (record: WorkspaceRecord) => WorkspaceRecord,
    options: { fromAgent?: boolean } = {},
  ): Promise<{ before: WorkspaceRecord; after: WorkspaceRecord } | undefined> {
    const store = this.#options.workspaces;
    for (let attempt = 0; attempt < MUTATE_ATTEMPTS; attempt++) {
      const before = await store.getWorkspace(name);
      if (!before) return undefined;
      const next = change(before);
      if (next === before) return { before, after: before };
      const revision = before.revision ?? 0;
      const after: WorkspaceRecord = { ...next, revision: revision + 1 };
      if (!(await store.updateWorkspaceIf(after, revision))) continue;
      this.#logTransition(before, after, cause, options.fromAgent ?? false);
      await this.#options.events.publish({
        type: "workspace-changed",
        workspace: name,
        workspaceId: workspaceIdOf(after),
        revision: after.revision,
        allowedPorts: dialablePorts(after),
      });
      return { before, after };
    }
    throw new WarrenError(ErrorCode.Aborted, `workspace "${name}" is changing too often to update; try again`);
  }

  /** The one place state transitions are logged (tests read these lines). */
  #logTransition(before: WorkspaceRecord, after: WorkspaceRecord, cause: string, fromAgent: boolean): void {
    const b = statesOf(before);
    const a = statesOf(after);
    if (sameStates(a, b)) return;
    const fields = { workspace: after.name, desiredFrom: b.desired, desiredTo: a.desired, actualFrom: b.actual, actualTo: a.actual, cause };
    this.#log.info(fields, "workspace state changed");
    if (b.actual !== a.actual && !isLegalTransition(b.actual, a.actual)) {
      this.#log.warn(fields, fromAgent ? "agent reported an unexpected workspace state transition" : "unexpected workspace state transition");
    }
  }

  async #ownerFor(principal: Principal, requested: string | undefined): Promise<string | undefined> {
    if (principal.kind === "user") {
      if (requested && requested !== principal.user) {
        throw new WarrenError(ErrorCode.PermissionDenied, "owner: only the admin may create workspaces for someone else");
      }
      return principal.user;
    }
    if (!requested) return undefined;
    if (!(await this.#options.users.getUser(requested))) {
      throw new WarrenError(ErrorCode.InvalidArgument, `owner: no user "${requested.slice(0, 80)}" (create it with UserService/CreateUser)`);
    }
    return requested;
  }

  /** A terminated workspace's name may be used again: the old record goes. */
  async #replaceTerminated(name: string): Promise<void> {
    const existing = await this.#options.workspaces.getWorkspace(name);
    if (existing && statesOf(existing).actual === ActualState.Terminated) await this.#options.workspaces.deleteWorkspace(name);
  }
}

function withStates(record: WorkspaceRecord, states: WorkspaceStates, now: number): WorkspaceRecord {
  const current = statesOf(record);
  if (sameStates(current, states)) return record;
  return {
    ...record,
    desiredState: states.desired,
    actualState: states.actual,
    actualStateAt: states.actual !== current.actual ? now : (record.actualStateAt ?? now),
  };
}

function sameStates(a: WorkspaceStates, b: WorkspaceStates): boolean {
  return a.desired === b.desired && a.actual === b.actual;
}

/** 128 random bits: an incarnation id is never reused, not even by a workspace of the same name. */
function newWorkspaceId(): string {
  return `ws_${randomBytes(16).toString("hex")}`;
}

/** Associated data of a workspace's sealed variables: they open only on their own record. */
function sealContext(name: string): string {
  return `workspace:${name}`;
}

function notFound(name: string): WarrenError {
  return new WarrenError(ErrorCode.NotFound, `workspace "${name}" not found`);
}

function validateName(name: string): void {
  if (!name) throw new WarrenError(ErrorCode.InvalidArgument, "name: required");
  if (!isValidWorkspaceName(name)) {
    throw new WarrenError(
      ErrorCode.InvalidArgument,
      `name: "${name.slice(0, 80)}" is not a valid workspace name (1-63 lowercase letters, digits and hyphens, not starting or ending with a hyphen)`,
    );
  }
}

/** A new workspace's name: capped so that every `{port}-{name}` host label fits DNS's 63 octets. */
function validateNewName(name: string): void {
  validateName(name);
  if (!isValidNewWorkspaceName(name)) {
    throw new WarrenError(
      ErrorCode.InvalidArgument,
      `name: "${name.slice(0, 80)}" is too long (at most ${MAX_NEW_WORKSPACE_NAME_CHARS} characters, so that {port}-{name} fits one 63-character DNS label)`,
    );
  }
}

/** POSIX portable user names (useradd's default rule). */
const SSH_USER = /^[a-z_][a-z0-9_-]{0,31}$/;

function validateSsh(input: CreateWorkspaceInput): { sshPort?: number; sshUser?: string } {
  const out: { sshPort?: number; sshUser?: string } = {};
  if (input.sshPort) {
    if (!Number.isInteger(input.sshPort) || input.sshPort < 1 || input.sshPort > 65535) {
      throw new WarrenError(ErrorCode.InvalidArgument, `sshPort: ${input.sshPort} is not a port number 1-65535`);
    }
    out.sshPort = input.sshPort;
  }
  if (input.sshUser) {
    if (!SSH_USER.test(input.sshUser)) {
      throw new WarrenError(ErrorCode.InvalidArgument, `sshUser: "${input.sshUser.slice(0, 40)}" is not a valid user name (lowercase letters, digits, _ and -, up to 32)`);
    }
    out.sshUser = input.sshUser;
  }
  return out;
}

function validatePort(field: string, port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new WarrenError(ErrorCode.InvalidArgument, `${field}: ${port} is not a port number 1-65535`);
}

function refuseIfTerminated(record: WorkspaceRecord): void {
  if (statesOf(record).desired === DesiredState.Terminated) {
    throw new WarrenError(ErrorCode.FailedPrecondition, `workspace "${record.name}" is terminated; its ports cannot change`);
  }
}

const MAX_DETECTED_PORTS = 1000;

/** Sorted by port, deduplicated, bounded: what the agent says is untrusted input. */
function normalizeDetected(ports: readonly DetectedPortRecord[]): DetectedPortRecord[] {
  const byKey = new Map<string, DetectedPortRecord>();
  for (const p of ports) {
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) continue;
    const address = String(p.address ?? "").slice(0, 64);
    const process = p.process ? String(p.process).slice(0, 64) : undefined;
    byKey.set(`${p.port}/${address}`, { port: p.port, address, ...(process ? { process } : {}) });
  }
  return [...byKey.values()].sort((a, b) => a.port - b.port || a.address.localeCompare(b.address)).slice(0, MAX_DETECTED_PORTS);
}

function validatePorts(ports: readonly PortRecord[]): PortRecord[] {
  if (ports.length > MAX_PORTS) throw new WarrenError(ErrorCode.InvalidArgument, `ports: at most ${MAX_PORTS} ports`);
  const seen = new Set<number>();
  return ports.map((p, i) => {
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) {
      throw new WarrenError(ErrorCode.InvalidArgument, `ports[${i}].port: ${p.port} is not a port number 1-65535`);
    }
    if (seen.has(p.port)) throw new WarrenError(ErrorCode.InvalidArgument, `ports[${i}].port: ${p.port} is listed twice`);
    seen.add(p.port);
    return { port: p.port, public: p.public };
  });
}

/** A lifetime in ms, or undefined for "not set"; out of range is invalid_argument naming the field. */
function validateTtl(field: string, ms: number | undefined): number | undefined {
  if (ms === undefined || ms === 0) return undefined;
  if (!Number.isFinite(ms) || ms < 1000 || ms > MAX_TTL_MS) {
    throw new WarrenError(ErrorCode.InvalidArgument, `${field}: ${Math.round(ms / 1000)} is out of range 1-${MAX_TTL_MS / 1000} seconds`);
  }
  return ms;
}

function validateVariables(variables: readonly VariableRecord[]): VariableRecord[] {
  if (variables.length > MAX_VARIABLES) throw new WarrenError(ErrorCode.InvalidArgument, `variables: at most ${MAX_VARIABLES} variables`);
  const seen = new Set<string>();
  let total = 0;
  return variables.map((v, i) => {
    if (!VARIABLE_NAME_RE.test(v.name)) {
      throw new WarrenError(
        ErrorCode.InvalidArgument,
        `variables[${i}].name: "${v.name.slice(0, 80)}" is not a valid variable name (letters, digits and _, not starting with a digit, at most 128)`,
      );
    }
    if (seen.has(v.name)) throw new WarrenError(ErrorCode.InvalidArgument, `variables[${i}].name: "${v.name}" is listed twice`);
    seen.add(v.name);
    const bytes = Buffer.byteLength(v.value, "utf8");
    if (bytes > MAX_VARIABLE_BYTES) {
      throw new WarrenError(ErrorCode.InvalidArgument, `variables[${i}].value: ${bytes} bytes is over the limit of ${MAX_VARIABLE_BYTES}`);
    }
    if (!v.file && v.value.includes("\0")) {
      throw new WarrenError(ErrorCode.InvalidArgument, `variables[${i}].value: an environment variable cannot hold a NUL character (make it a file variable)`);
    }
    total += bytes;
    if (total > MAX_VARIABLES_BYTES) throw new WarrenError(ErrorCode.InvalidArgument, `variables: more than ${MAX_VARIABLES_BYTES} bytes of values in all`);
    return { name: v.name, value: v.value, file: v.file };
  });
}
