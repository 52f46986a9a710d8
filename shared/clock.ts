/**
 * Time as a dependency: modules that wait (linger, batching, refresh) take a Clock, so that a
 * unit spec can drive them with a ManualClock (`shared/manual-clock.ts`) instead of sleeping.
 */
export interface Clock {
  /** Milliseconds since the epoch, like Date.now(). */
  now(): number;
  /** Runs `fn` once after `ms`; like Node's, the timer keeps the process alive until unref(). */
  setTimeout(fn: () => void, ms: number): Timer;
  /** Runs `fn` every `ms`; like Node's, the timer keeps the process alive until unref(). */
  setInterval(fn: () => void, ms: number): Timer;
  /** Cancels a timer of this clock (either kind); undefined is ignored. */
  clearTimer(timer: Timer | undefined): void;
}

/** A handle of a timer; only the clock that made it can cancel it. */
export interface Timer {
  /** Lets the process exit while the timer is pending (Node's Timeout.unref). */
  unref(): void;
}

/** The process's clock and Node's timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearTimer(timer) {
    // clearTimeout and clearInterval are interchangeable in Node.
    if (timer !== undefined) clearTimeout(timer as NodeJS.Timeout);
  },
};
