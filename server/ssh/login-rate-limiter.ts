export interface LoginRateLimiterOptions {
  /** Failed attempts allowed per key within the window; the next attempt is refused. */
  readonly maxFailures: number;
  readonly windowMs: number;
  /** Most keys tracked; the oldest are dropped beyond it (bounds memory under a spray). */
  readonly maxKeys?: number;
  readonly now?: () => number;
}

/**
 * Counts failed logins per key (a source address, a user name) in a sliding window. Callers
 * ask `blocked(keys)` before checking credentials and report each failure with `fail(keys)`;
 * a blocked key is refused without looking at the credentials, so a good guess cannot be
 * confirmed while blocked. In memory: each server of a cluster counts on its own.
 */
export class LoginRateLimiter {
  readonly #options: Required<Omit<LoginRateLimiterOptions, "now">> & { now: () => number };
  readonly #failures = new Map<string, number[]>();

  constructor(options: LoginRateLimiterOptions) {
    if (!(options.maxFailures >= 1) || !(options.windowMs > 0)) throw new Error("LoginRateLimiter: maxFailures >= 1 and windowMs > 0 required");
    this.#options = { maxKeys: 100_000, now: Date.now, ...options };
  }

  /** Whether any of the keys has used up its failures. */
  blocked(keys: readonly string[]): boolean {
    const now = this.#options.now();
    return keys.some((key) => this.#recent(key, now).length >= this.#options.maxFailures);
  }

  /** Milliseconds until every one of the keys may try again (0 when none is blocked). */
  retryAfterMs(keys: readonly string[]): number {
    const now = this.#options.now();
    let wait = 0;
    for (const key of keys) {
      const recent = this.#recent(key, now);
      if (recent.length >= this.#options.maxFailures) {
        wait = Math.max(wait, recent[recent.length - this.#options.maxFailures]! + this.#options.windowMs - now);
      }
    }
    return wait;
  }

  fail(keys: readonly string[]): void {
    const now = this.#options.now();
    for (const key of keys) {
      const recent = this.#recent(key, now);
      recent.push(now);
      // Only the newest maxFailures matter for the decision.
      if (recent.length > this.#options.maxFailures) recent.splice(0, recent.length - this.#options.maxFailures);
      this.#failures.delete(key);
      this.#failures.set(key, recent);
    }
    while (this.#failures.size > this.#options.maxKeys) {
      this.#failures.delete(this.#failures.keys().next().value as string);
    }
  }

  /** Number of keys tracked (for tests and metrics). */
  get size(): number {
    return this.#failures.size;
  }

  #recent(key: string, now: number): number[] {
    const all = this.#failures.get(key);
    if (!all) return [];
    const recent = all.filter((t) => t > now - this.#options.windowMs);
    if (recent.length === 0) this.#failures.delete(key);
    else if (recent.length !== all.length) this.#failures.set(key, recent);
    return recent;
  }
}
