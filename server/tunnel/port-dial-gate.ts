import { ErrorCode, WarrenError } from "../../shared/errors.js";

interface PortDials {
  active: number;
  readonly queue: Array<() => void>;
}

/**
 * Bounds the dials in progress (waiting for a stream or for the agent's answer) to one port
 * of one workspace, so that a flood to one port (a port that never answers ties a stream up
 * for the whole dial timeout) cannot take every tunnel stream of the workspace: the other
 * ports and the agent connection go on. Dials over the limit wait for a slot, up to their
 * own deadline. Never touches the network; the caller releases what it entered.
 */
export class PortDialGate {
  readonly #limit: number;
  readonly #ports = new Map<string, PortDials>();

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new Error(`dials per port: ${limit} is not a positive integer`);
    this.#limit = limit;
  }

  /**
   * Resolves with a release function once the dial may go on; waits up to `waitMs` for a slot.
   * Rejects with unavailable when none frees in time, canceled when `signal` aborts.
   */
  enter(workspace: string, port: number, waitMs: number, signal?: AbortSignal): Promise<() => void> {
    const key = `${port}-${workspace}`;
    let dials = this.#ports.get(key);
    if (!dials) {
      dials = { active: 0, queue: [] };
      this.#ports.set(key, dials);
    }
    const d = dials;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      d.active--;
      const next = d.queue.shift();
      if (next) next();
      else if (d.active === 0) this.#ports.delete(key);
    };
    if (d.active < this.#limit) {
      d.active++;
      return Promise.resolve(release);
    }
    if (signal?.aborted) return Promise.reject(new WarrenError(ErrorCode.Canceled, "request canceled"));
    return new Promise((resolve, reject) => {
      const done = (err?: WarrenError) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        const i = d.queue.indexOf(grant);
        if (i >= 0) d.queue.splice(i, 1);
        if (err) reject(err);
      };
      const grant = () => {
        done();
        d.active++;
        resolve(release);
      };
      const onAbort = () => done(new WarrenError(ErrorCode.Canceled, "request canceled"));
      const timer = setTimeout(
        () => done(new WarrenError(ErrorCode.Unavailable, `too many connections are being opened to port ${port} of workspace "${workspace}" (${this.#limit} at once); try again`)),
        waitMs,
      );
      signal?.addEventListener("abort", onAbort, { once: true });
      d.queue.push(grant);
    });
  }

  /** Dials in progress to one port (for tests). */
  activeOn(workspace: string, port: number): number {
    return this.#ports.get(`${port}-${workspace}`)?.active ?? 0;
  }
}
