import { describe, expect, it } from "vitest";
import { LoginRateLimiter } from "./login-rate-limiter.js";

describe("LoginRateLimiter", () => {
  const clock = () => {
    let t = 1_000_000;
    return { now: () => t, advance: (ms: number) => (t += ms) };
  };

  it("blocks a key after maxFailures within the window, and lets it go once they age out", () => {
    const c = clock();
    const limiter = new LoginRateLimiter({ maxFailures: 3, windowMs: 60_000, now: c.now });
    for (let i = 0; i < 3; i++) {
      expect(limiter.blocked("addr:10.0.0.1")).toBe(false);
      limiter.fail("addr:10.0.0.1");
      c.advance(1000);
    }
    expect(limiter.blocked("addr:10.0.0.1")).toBe(true);
    expect(limiter.retryAfterMs("addr:10.0.0.1")).toBe(57_000);
    expect(limiter.blocked("addr:10.0.0.2")).toBe(false);
    c.advance(57_000);
    expect(limiter.blocked("addr:10.0.0.1")).toBe(false);
  });

  it("keeps memory bounded by count", () => {
    const c = clock();
    const limiter = new LoginRateLimiter({ maxFailures: 5, windowMs: 10_000, maxKeys: 100, now: c.now });
    for (let i = 0; i < 1000; i++) limiter.fail(`addr:${i}`);
    expect(limiter.size).toBe(100);
  });

  it("rate-limiter map pruned by time, not only on lookup: keys whose failures aged out are dropped without being looked up", () => {
    const c = clock();
    const limiter = new LoginRateLimiter({ maxFailures: 5, windowMs: 10_000, now: c.now });
    for (let i = 0; i < 1000; i++) {
      limiter.fail(`addr:${i}`);
      c.advance(5);
    }
    expect(limiter.size).toBe(1000);
    // Half of them aged out: the next failure of anyone drops them.
    c.advance(10_000 - 2500);
    limiter.fail("addr:new");
    expect(limiter.size).toBeLessThan(502);
    expect(limiter.size).toBeGreaterThan(490);
    // And a timer's prune() drops the rest, with no lookup and no new failure.
    c.advance(10_001);
    limiter.prune();
    expect(limiter.size).toBe(0);
  });

  it("keeps a key that failed again at the end of the order, so pruning stops at the first live key", () => {
    const c = clock();
    const limiter = new LoginRateLimiter({ maxFailures: 5, windowMs: 10_000, now: c.now });
    limiter.fail("addr:a");
    c.advance(1000);
    limiter.fail("addr:b");
    c.advance(8000);
    limiter.fail("addr:a");
    c.advance(2500); // b's only failure is now 10.5 s old, a's newest 2.5 s
    limiter.prune();
    expect(limiter.size).toBe(1);
    expect(limiter.retryAfterMs("addr:a")).toBe(0);
  });
});
