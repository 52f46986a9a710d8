import { randomBytes } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Backoff, DEFAULT_BACKOFF, type BackoffOptions } from "../shared/backoff.js";
import { ControlRequestSchema, type Welcome, type WorkspaceDesiredState } from "../shared/gen/warren/v1/agent_pb.js";
import type { Logger } from "../shared/logger.js";
import { AgentSession, type AgentSessionOptions, type SessionEnd } from "./agent-session.js";
import type { PoolSettings } from "./tunnel-pool.js";
import type { WorkloadReportMessage } from "./desired-state-reconciler.js";

export interface AgentRunnerOptions {
  readonly servers: readonly URL[];
  /** Read at every connect, so a token file can be rotated under a running agent. */
  readonly token: () => string;
  readonly ca?: Buffer;
  readonly pool: PoolSettings;
  readonly dialTimeoutMs: number;
  readonly log: Logger;
  readonly onReady?: (welcome: Welcome, server: URL) => void;
  readonly onDesiredState?: (state: WorkspaceDesiredState) => void;
  readonly onSession?: (session: AgentSession | undefined) => void;
  /** Picks the first server of the list (tests pass their own). */
  readonly random?: () => number;
  readonly backoff?: BackoffOptions;
  /** Builds each session (tests pass a fake). */
  readonly createSession?: (options: AgentSessionOptions) => AgentSession;
}

/** Exit codes of warren-agent. */
export const AgentExit = {
  Ok: 0,
  /** The server refused the token (invalid, expired, revoked) or the workspace is gone. */
  Rejected: 1,
  /** Bad command line or settings. */
  Usage: 2,
} as const;

/**
 * Keeps the agent connected: one session at a time, reconnecting with jittered exponential
 * backoff, moving to the next server of the list after a failure, and giving up only when the
 * server refuses the token.
 */
export class AgentRunner {
  readonly #options: AgentRunnerOptions;
  readonly instanceId = randomBytes(6).toString("hex");
  readonly #backoff: Backoff;
  #session: AgentSession | undefined;
  #stopping = false;
  #wake: (() => void) | undefined;
  /** The workload's latest state, sent again after every reconnect. */
  #workload: WorkloadReportMessage | undefined;
  /** Waiting for a connection; woken with the resend of the workload's state on it. */
  readonly #readyWaiters = new Set<(resent: Promise<boolean>) => void>();

  constructor(options: AgentRunnerOptions) {
    this.#options = options;
    this.#backoff = new Backoff(options.backoff ?? DEFAULT_BACKOFF);
  }

  get session(): AgentSession | undefined {
    return this.#session;
  }

  /** Runs until stopped or refused; resolves with the process exit code. */
  async run(): Promise<number> {
    const { servers, log } = this.#options;
    // A random start spreads the agents of a cluster over its servers.
    const random = this.#options.random ?? Math.random;
    let index = Math.floor(random() * servers.length);
    while (!this.#stopping) {
      const server = servers[index % servers.length]!;
      const createSession = this.#options.createSession ?? ((o: AgentSessionOptions) => new AgentSession(o));
      const session = createSession({
        server,
        token: this.#options.token(),
        ca: this.#options.ca,
        instanceId: this.instanceId,
        pool: this.#options.pool,
        dialTimeoutMs: this.#options.dialTimeoutMs,
        log,
        onReady: (welcome) => {
          this.#backoff.reset();
          this.#options.onReady?.(welcome, server);
          const resent = this.#workload ? session.send(workloadMessage(this.#workload)) : Promise.resolve(false);
          for (const wake of [...this.#readyWaiters]) wake(resent);
        },
        onDesiredState: this.#options.onDesiredState,
      });
      this.#session = session;
      this.#options.onSession?.(session);
      const end: SessionEnd = await session.run();
      this.#session = undefined;
      this.#options.onSession?.(undefined);
      if (this.#stopping || end.kind === "closed") break;
      if (end.kind === "rejected") {
        log.error({ server: server.origin, reason: end.message }, "the server refused this agent; exiting");
        return AgentExit.Rejected;
      }
      index++;
      const delay = end.kind === "server-draining" ? Math.floor(random() * 500) : this.#backoff.next();
      log.warn({ server: server.origin, reason: end.message, retryInMs: delay }, "disconnected; reconnecting");
      await this.#sleep(delay);
    }
    return AgentExit.Ok;
  }

  /**
   * Reports the workload's state to the server now when connected, and after every reconnect.
   * Resolves true once it is written to a connected server; with `waitMs`, waits that long for
   * a connection first (the final report of a workload that ended). Never rejects.
   */
  async reportWorkload(status: WorkloadReportMessage, waitMs = 0): Promise<boolean> {
    this.#workload = status;
    const session = this.#session;
    if (session?.welcome) return session.send(workloadMessage(status));
    if (waitMs <= 0 || this.#stopping) return false;
    // A new connection sends the latest state as soon as it is welcomed.
    return this.#whenReady(waitMs);
  }

  #whenReady(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (resent: Promise<boolean>) => {
        clearTimeout(timer);
        this.#readyWaiters.delete(done);
        resolve(resent);
      };
      const timer = setTimeout(() => done(Promise.resolve(false)), timeoutMs);
      this.#readyWaiters.add(done);
    });
  }

  /** Graceful stop: no new connections, open ones finish within `timeoutMs`. */
  async stop(timeoutMs: number): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    for (const wake of [...this.#readyWaiters]) wake(Promise.resolve(false));
    await this.#session?.drain(timeoutMs);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }
}

function workloadMessage(status: WorkloadReportMessage) {
  return create(ControlRequestSchema, { msg: { case: "workload", value: { ...status } } });
}
