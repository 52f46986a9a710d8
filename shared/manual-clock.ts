import type { Clock, Timer } from "./clock.js";

interface Scheduled extends Timer {
  readonly fn: () => void;
  due: number;
  /** 0 for a one-shot timer. */
  readonly every: number;
  readonly seq: number;
}

/**
 * A Clock that only moves when told to, for unit specs: `advance(ms)` runs every timer that
 * falls due, in time order, letting promise callbacks settle after each, as real time would.
 */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  readonly #timers = new Set<Scheduled>();

  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    return this.#schedule(fn, ms, 0);
  }

  setInterval(fn: () => void, ms: number): Timer {
    return this.#schedule(fn, ms, Math.max(1, ms));
  }

  clearTimer(timer: Timer | undefined): void {
    if (timer) this.#timers.delete(timer as Scheduled);
  }

  /** Timers not yet run or cancelled. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time forward by `ms`, running what falls due on the way. */
  async advance(ms: number): Promise<void> {
    const until = this.#now + ms;
    for (;;) {
      await settle();
      const next = this.#next(until);
      if (!next) break;
      this.#now = next.due;
      if (next.every > 0) next.due += next.every;
      else this.#timers.delete(next);
      next.fn();
    }
    this.#now = until;
    await settle();
  }

  #schedule(fn: () => void, ms: number, every: number): Timer {
    const timer: Scheduled = { fn, due: this.#now + Math.max(0, ms), every, seq: this.#seq++, unref: () => {} };
    this.#timers.add(timer);
    return timer;
  }

  #next(until: number): Scheduled | undefined {
    let next: Scheduled | undefined;
    for (const t of this.#timers) {
      if (t.due > until) continue;
      if (!next || t.due < next.due || (t.due === next.due && t.seq < next.seq)) next = t;
    }
    return next;
  }
}

/** Lets pending promise callbacks run (a macrotask turn drains every microtask before it). */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
