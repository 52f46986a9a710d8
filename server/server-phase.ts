import type { Logger } from "../shared/logger.js";

/** Where the server is in its life: what readiness answers and the warren_draining gauge read. */
export enum ServerPhase {
  Starting = "starting",
  /** Cluster mode: a server that never saw the cluster state cannot authenticate anyone. */
  WaitingForRedis = "waiting for Redis",
  Ready = "ready",
  Draining = "draining",
}

const ALLOWED: Readonly<Record<ServerPhase, readonly ServerPhase[]>> = {
  [ServerPhase.Starting]: [ServerPhase.WaitingForRedis, ServerPhase.Ready, ServerPhase.Draining],
  [ServerPhase.WaitingForRedis]: [ServerPhase.Starting, ServerPhase.Draining],
  [ServerPhase.Ready]: [ServerPhase.Draining],
  [ServerPhase.Draining]: [],
};

export function mayTransition(from: ServerPhase, to: ServerPhase): boolean {
  return ALLOWED[from].includes(to);
}

/** The server's phase, changed only through `transition`, which checks the table and logs every change. */
export class ServerLifecycle {
  readonly #log: Logger;
  #phase = ServerPhase.Starting;

  constructor(log: Logger) {
    this.#log = log;
  }

  get phase(): ServerPhase {
    return this.#phase;
  }

  get draining(): boolean {
    return this.#phase === ServerPhase.Draining;
  }

  /** Why a load balancer should not send traffic here now; undefined when ready. */
  notReadyReason(): string | undefined {
    switch (this.#phase) {
      case ServerPhase.Ready:
        return undefined;
      case ServerPhase.Draining:
        return "shutting down";
      default:
        return this.#phase;
    }
  }

  /** Refuses (false) what the table does not allow, staying put: a start that goes on after shutdown began stays draining. */
  transition(to: ServerPhase): boolean {
    const from = this.#phase;
    if (!mayTransition(from, to)) return false;
    this.#phase = to;
    this.#log.debug({ from, to }, "server phase");
    return true;
  }
}
