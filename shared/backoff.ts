export interface BackoffOptions {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor: number;
  /** Fraction of the delay added or removed at random, 0..1. */
  readonly jitter: number;
  readonly random?: () => number;
}

/** KAS's reconnect shape: 1 s to 20 s, factor 1.6, jitter 0.2. */
export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 1000, maxMs: 20_000, factor: 1.6, jitter: 0.2 };

/** Jittered exponential backoff. next() returns the delay before the next attempt. */
export class Backoff {
  readonly #options: BackoffOptions;
  #attempt = 0;

  constructor(options: BackoffOptions = DEFAULT_BACKOFF) {
    if (options.initialMs <= 0 || options.maxMs < options.initialMs || options.factor < 1) {
      throw new RangeError("backoff: need 0 < initialMs <= maxMs and factor >= 1");
    }
    this.#options = options;
  }

  next(): number {
    const { initialMs, maxMs, factor, jitter } = this.#options;
    const random = this.#options.random ?? Math.random;
    const base = Math.min(maxMs, initialMs * factor ** this.#attempt);
    this.#attempt++;
    const spread = base * jitter * (random() * 2 - 1);
    return Math.max(0, Math.round(Math.min(maxMs * (1 + jitter), base + spread)));
  }

  reset(): void {
    this.#attempt = 0;
  }
}
