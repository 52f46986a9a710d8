import type { Logger } from "../shared/logger.js";

/** Time as the drain sees it: real by default, virtual in the spec. */
export interface DrainClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const REAL_DRAIN_CLOCK: DrainClock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** What the drain acts on: one role function per step, wired by the composition root. */
export interface DrainParts {
  /** Stops the agent listener and every public listener; resolves when they are closed. */
  stopAccepting(): Promise<unknown>;
  /** Closes kept-alive client connections that have no request in flight. */
  closeIdleConnections(): void;
  /** Asks every agent connected here to reconnect elsewhere; returns how many were asked. */
  handOffAgents(reason: string): number;
  /** Agent connections here that still take new dials. */
  usableAgents(): number;
  /** Cluster mode: the private API other servers forward through. Absent on one server. */
  readonly cluster?: {
    hasLivePeers(): Promise<boolean>;
    stopAccepting(): void;
    /** Resolves when no forwarded dial is in flight here. */
    whenIdle(): Promise<unknown>;
  };
  /** HTTP requests in flight on the public listener. */
  inFlightRequests(): number;
  openWebSockets(): number;
  openSshConnections(): number;
  /** Closes open WebSockets and every client connection (their clients reconnect elsewhere). */
  closeClientConnections(): void;
  /** The last step, whether the drain finished or timed out: close everything and release what is held. */
  closeEverything(): Promise<void>;
}

export interface DrainSettings {
  /** Unready but still serving this long first (load balancers notice). */
  readonly drainDelayMs: number;
  /** What is still open this long after the delay is closed. */
  readonly timeoutMs: number;
}

const HANDOFF_REASON = "server is shutting down; reconnect to another server";
const POLL_MS = 50;
const SWEEP_MS = 200;

/**
 * Graceful stop, in this order: unready for the drain delay while everything still works;
 * stop accepting connections; ask every agent to reconnect to another server (it opens its new
 * connection before it lets this one go); in cluster mode keep serving the other servers'
 * forwards until the agents have moved, then turn those away too; let what is in flight finish
 * within the timeout, closing WebSockets once the HTTP requests are answered (they never end by
 * themselves); then close everything. Never rejects for a connection that would not end: the
 * timeout ends it. Returns whether everything finished before the timeout.
 */
export async function runDrainSequence(parts: DrainParts, settings: DrainSettings, log: Logger, clock: DrainClock = REAL_DRAIN_CLOCK): Promise<boolean> {
  const { drainDelayMs, timeoutMs } = settings;
  log.info({ drainDelayMs, timeoutMs }, "shutting down: unready, still serving for the drain delay");
  if (drainDelayMs > 0) await clock.sleep(drainDelayMs);
  const deadline = clock.now() + timeoutMs;
  const timeLeft = () => Math.max(0, deadline - clock.now());
  const until = async (done: () => boolean, limitMs: number): Promise<boolean> => {
    const end = clock.now() + limitMs;
    while (!done()) {
      if (clock.now() >= end) return false;
      await clock.sleep(POLL_MS);
    }
    return true;
  };

  let listenersClosed = false;
  void parts.stopAccepting().finally(() => (listenersClosed = true));
  // Keep-alive connections become idle as their last request ends: close them as they do.
  let sweeping = true;
  void (async () => {
    while (sweeping) {
      parts.closeIdleConnections();
      await clock.sleep(SWEEP_MS);
    }
  })();
  const agents = parts.handOffAgents(HANDOFF_REASON);
  log.info({ agents }, "shutting down: no new connections; asked the agents to reconnect to another server");

  const cluster = parts.cluster;
  let forwardsIdle = !cluster;
  if (cluster) {
    // Other servers forward here until the agents' new connections are up elsewhere; with no
    // other server alive, there is nowhere to move to and nobody forwarding.
    if (agents > 0 && (await cluster.hasLivePeers())) {
      const moved = await until(() => parts.usableAgents() === 0, timeLeft());
      if (!moved) log.warn({ agents: parts.usableAgents() }, "agents did not reconnect elsewhere in time");
    }
    cluster.stopAccepting();
    void cluster.whenIdle().finally(() => (forwardsIdle = true));
  }

  const requestsAnswered = await until(() => parts.inFlightRequests() === 0, timeLeft());
  if (requestsAnswered) {
    if (parts.openWebSockets() > 0) log.info({ webSockets: parts.openWebSockets() }, "shutting down: requests answered; closing open WebSockets");
    parts.closeClientConnections();
  }
  const finished = requestsAnswered && (await until(() => listenersClosed && forwardsIdle, timeLeft()));
  sweeping = false;
  if (!finished) {
    log.warn(
      { httpRequests: parts.inFlightRequests(), webSockets: parts.openWebSockets(), sshConnections: parts.openSshConnections() },
      "shutdown timeout: closing what is still open",
    );
  }
  await parts.closeEverything();
  log.info("stopped");
  return finished;
}
