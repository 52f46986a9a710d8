export interface LoginRateLimiterOptions {
  /** Failed attempts allowed per key within the window; the next attempt is refused. */
  readonly maxFailures: number;
  readonly windowMs: number;
  /** Most keys tracked; the oldest are dropped beyond it (bounds memory under a spray). */
  readonly maxKeys?: number;
  readonly now?: () => number;
}

/**
 * Counts failed logins per key in a sliding window. Callers ask `blocked(key)` before checking
 * credentials and report each failure with `fail(key)`; a blocked key is refused without
 * looking at the credentials, so a good guess cannot be confirmed while blocked.
 *
 * The key must be something an attacker cannot choose for someone else: the SSH front door
 * uses the source address only (see loginSourceOf). Counting per workspace name or per user,
 * as it once did, let anyone lock the owner out by failing on purpose.
 *
 * Memory stays bounded by time as well as by count: entries are kept in the order of their
 * last failure, so every call drops the ones whose failures all aged out (oldest first, no
 * scan), and `prune()` does the same for a caller's timer. In memory: each server of a
 * cluster counts on its own.
 */
export class LoginRateLimiter {
  readonly #options: Required<Omit<LoginRateLimiterOptions, "now">> & { now: () => number };
  /** key -> times of its recent failures, oldest first; Map order = order of last failure. */
  readonly #failures = new Map<string, number[]>();

  constructor(options: LoginRateLimiterOptions) {
    if (!(options.maxFailures >= 1) || !(options.windowMs > 0)) throw new Error("LoginRateLimiter: maxFailures >= 1 and windowMs > 0 required");
    this.#options = { maxKeys: 100_000, now: Date.now, ...options };
  }

  get windowMs(): number {
    return this.#options.windowMs;
  }

  /** Whether the key has used up its failures. */
  blocked(key: string): boolean {
    return this.#recent(key, this.prune()).length >= this.#options.maxFailures;
  }

  /** Milliseconds until the key may try again (0 when it is not blocked). */
  retryAfterMs(key: string): number {
    const now = this.prune();
    const recent = this.#recent(key, now);
    if (recent.length < this.#options.maxFailures) return 0;
    return recent[recent.length - this.#options.maxFailures]! + this.#options.windowMs - now;
  }

  fail(key: string): void {
    const now = this.prune();
    const recent = this.#recent(key, now);
    recent.push(now);
    // Only the newest maxFailures matter for the decision.
    if (recent.length > this.#options.maxFailures) recent.splice(0, recent.length - this.#options.maxFailures);
    this.#failures.delete(key);
    this.#failures.set(key, recent);
    while (this.#failures.size > this.#options.maxKeys) {
      this.#failures.delete(this.#failures.keys().next().value as string);
    }
  }

  /** Drops every key whose failures all left the window; returns the time it used. Never throws. */
  prune(): number {
    const now = this.#options.now();
    const horizon = now - this.#options.windowMs;
    for (const [key, times] of this.#failures) {
      // Ordered by last failure: the first key still in the window ends the sweep.
      if (times[times.length - 1]! > horizon) break;
      this.#failures.delete(key);
    }
    return now;
  }

  /** Number of keys tracked (for tests and metrics). */
  get size(): number {
    return this.#failures.size;
  }

  #recent(key: string, now: number): number[] {
    const all = this.#failures.get(key);
    if (!all) return [];
    const recent = all.filter((t) => t > now - this.#options.windowMs);
    if (recent.length !== all.length) this.#failures.set(key, recent);
    return recent;
  }
}
