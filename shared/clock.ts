/**
 * Time as a dependency: modules that wait (linger, batching, refresh) take a Clock, so that a
 * unit spec can drive them with a ManualClock (`shared/manual-clock.ts`) instead of sleeping.
 */
export interface Clock {
  /** Milliseconds since the epoch, like Date.now(). */
  now(): number;
  /** Runs `fn` once after `ms`; the timer does not keep the process alive. */
  setTimeout(fn: () => void, ms: number): Timer;
  /** Runs `fn` every `ms`; the timer does not keep the process alive. */
  setInterval(fn: () => void, ms: number): Timer;
  /** Cancels a timer of this clock (either kind); undefined is ignored. */
  clearTimer(timer: Timer | undefined): void;
}

/** An opaque handle of a timer; only the clock that made it can cancel it. */
export interface Timer {
  readonly __timer?: never;
}

/** The process's clock and timers (unref'd: a pending timer never holds the process open). */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    return setTimeout(fn, ms).unref() as Timer;
  },
  setInterval(fn, ms) {
    return setInterval(fn, ms).unref() as Timer;
  },
  clearTimer(timer) {
    // clearTimeout and clearInterval are interchangeable in Node.
    if (timer !== undefined) clearTimeout(timer as NodeJS.Timeout);
  },
};
