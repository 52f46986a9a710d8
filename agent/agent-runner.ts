import { randomBytes } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Backoff, DEFAULT_BACKOFF, type BackoffOptions } from "../shared/backoff.js";
import { systemClock, type Clock } from "../shared/clock.js";
import { ControlRequestSchema, type Welcome, type WorkspaceDesiredState } from "../shared/gen/warren/v1/agent_pb.js";
import type { Logger } from "../shared/logger.js";
import type { LivenessSettings } from "../shared/liveness.js";
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
  /** Pings to the server and how long it may stay silent (default: DEFAULT_LIVENESS). */
  readonly liveness?: LivenessSettings;
  readonly log: Logger;
  readonly onReady?: (welcome: Welcome, server: URL) => void;
  readonly onDesiredState?: (state: WorkspaceDesiredState) => void;
  readonly onSession?: (session: AgentSession | undefined) => void;
  /** Picks the first server of the list (tests pass their own). */
  readonly random?: () => number;
  readonly backoff?: BackoffOptions;
  /** Builds each session (tests pass a fake). */
  readonly createSession?: (options: AgentSessionOptions) => AgentSession;
  /**
   * The longest a handed-off session (its server is shutting down) may carry its streams once
   * the new session is up; the server normally closes it sooner.
   */
  readonly handoffTimeoutMs?: number;
  /** Time for the reconnect backoff, the waits for a connection and every session's timers; the system clock by default. */
  readonly clock?: Clock;
}

/**
 * After a server asked the agent to move (it is draining: a restart, a rolling upgrade), the
 * agent expects it or its replacement back within seconds: failed attempts in this window retry
 * every 1 s to 3 s (at random) instead of backing off, so a single server's restart costs its
 * agents at most about 3 s after it listens again, not up to the backoff's longer steps. A
 * refused connect costs the restarting host next to nothing.
 */
const RESTART_WINDOW_MS = 60_000;
const RESTART_RETRY_MIN_MS = 1000;
/** Retries are spread over 1 s to 3 s: thousands of agents of a restarted server do not all arrive in the same second. */
const RESTART_RETRY_SPREAD_MS = 2000;

/** A safety net only: the draining server closes its side once its own shutdown timeout passes. */
const DEFAULT_HANDOFF_TIMEOUT_MS = 10 * 60_000;

/** Exit codes of warren-agent. */
export const AgentExit = {
  Ok: 0,
  /** The server refused the token (invalid, expired, revoked) or the workspace is gone. */
  Rejected: 1,
  /** Bad command line or settings. */
  Usage: 2,
} as const;

/**
 * Keeps the agent connected: one current session, reconnecting with jittered exponential
 * backoff, moving to the next server of the list after a failure, and giving up only when the
 * server refuses the token.
 *
 * When a server shuts down it asks the agent to move, and the agent connects to the next server
 * before it lets the old connection go: the old session is handed off (it keeps carrying its
 * streams in flight, and takes dials until the new session is up), then drained once the new
 * session is welcomed, and closed when its last stream ends or its server closes it.
 */
export class AgentRunner {
  readonly #options: AgentRunnerOptions;
  readonly instanceId = randomBytes(6).toString("hex");
  readonly #backoff: Backoff;
  readonly #clock: Clock;
  #session: AgentSession | undefined;
  /** Handed-off sessions still carrying streams for a server that is shutting down. */
  readonly #retiring = new Set<AgentSession>();
  #stopping = false;
  #stopTimeoutMs = 0;
  /** Until when a server that asked this agent to move is expected back (clock time; 0: not expected). */
  #restartExpectedUntil = 0;
  #wake: (() => void) | undefined;
  /** The workload's latest state, sent again after every reconnect. */
  #workload: WorkloadReportMessage | undefined;
  /** Waiting for a connection; woken with the resend of the workload's state on it. */
  readonly #readyWaiters = new Set<(resent: Promise<boolean>) => void>();

  constructor(options: AgentRunnerOptions) {
    this.#options = options;
    this.#backoff = new Backoff(options.backoff ?? DEFAULT_BACKOFF);
    this.#clock = options.clock ?? systemClock;
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
        ...(this.#options.liveness ? { liveness: this.#options.liveness } : {}),
        log,
        clock: this.#clock,
        onReady: (welcome) => {
          this.#backoff.reset();
          this.#restartExpectedUntil = 0;
          // The new connection is up: the old ones take no new work and close once their streams end.
          for (const old of this.#retiring) void old.drain(this.#options.handoffTimeoutMs ?? DEFAULT_HANDOFF_TIMEOUT_MS);
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
      if (end.kind === "server-draining" && session.handedOff) {
        this.#retiring.add(session);
        void session.whenClosed().then(() => this.#retiring.delete(session));
      }
      if (this.#stopping || end.kind === "closed") break;
      if (end.kind === "rejected") {
        log.error({ server: server.origin, reason: end.message }, "the server refused this agent; exiting");
        return AgentExit.Rejected;
      }
      index++;
      const delay = this.#delayAfter(end, random);
      // A handoff the server asked for is routine (drain, connection age); a lost connection is not.
      log[end.kind === "server-draining" ? "info" : "warn"]({ server: server.origin, reason: end.message, retryInMs: delay }, "disconnected; reconnecting");
      await this.#sleep(delay);
    }
    // Stopping: handed-off sessions get the same time as the current one for their streams.
    await Promise.all([...this.#retiring].map((session) => session.drain(this.#stopTimeoutMs)));
    return AgentExit.Ok;
  }

  /** How long to wait before connecting again after a session ended this way. */
  #delayAfter(end: SessionEnd, random: () => number): number {
    if (end.kind === "server-draining") {
      // A move the server asked for is not a failure: the backoff starts afresh should the window pass.
      this.#backoff.reset();
      this.#restartExpectedUntil = this.#clock.now() + RESTART_WINDOW_MS;
      return Math.floor(random() * 500);
    }
    if (this.#clock.now() < this.#restartExpectedUntil) return Math.round(RESTART_RETRY_MIN_MS + RESTART_RETRY_SPREAD_MS * random());
    return this.#backoff.next();
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
        this.#clock.clearTimer(timer);
        this.#readyWaiters.delete(done);
        resolve(resent);
      };
      const timer = this.#clock.setTimeout(() => done(Promise.resolve(false)), timeoutMs);
      this.#readyWaiters.add(done);
    });
  }

  /** Graceful stop: no new connections, open ones finish within `timeoutMs`. */
  async stop(timeoutMs: number): Promise<void> {
    this.#stopping = true;
    this.#stopTimeoutMs = timeoutMs;
    this.#wake?.();
    for (const wake of [...this.#readyWaiters]) wake(Promise.resolve(false));
    await Promise.all([this.#session, ...this.#retiring].map((session) => session?.drain(timeoutMs)));
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.#clock.clearTimer(timer);
        resolve();
      };
      const timer = this.#clock.setTimeout(done, ms);
      this.#wake = done;
    });
  }
}

function workloadMessage(status: WorkloadReportMessage) {
  return create(ControlRequestSchema, { msg: { case: "workload", value: { ...status } } });
}
