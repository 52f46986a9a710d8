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
      expect(limiter.blocked(["addr:10.0.0.1"])).toBe(false);
      limiter.fail(["addr:10.0.0.1"]);
      c.advance(1000);
    }
    expect(limiter.blocked(["addr:10.0.0.1"])).toBe(true);
    expect(limiter.retryAfterMs(["addr:10.0.0.1"])).toBe(57_000);
    c.advance(57_000);
    expect(limiter.blocked(["addr:10.0.0.1"])).toBe(false);
  });

  it("counts each key on its own and blocks when any of the keys is blocked", () => {
    const c = clock();
    const limiter = new LoginRateLimiter({ maxFailures: 2, windowMs: 10_000, now: c.now });
    limiter.fail(["addr:a", "user:ws"]);
    limiter.fail(["addr:b", "user:ws"]);
    expect(limiter.blocked(["addr:a"])).toBe(false);
    expect(limiter.blocked(["addr:b"])).toBe(false);
    expect(limiter.blocked(["user:ws"])).toBe(true);
    expect(limiter.blocked(["addr:c", "user:ws"])).toBe(true);
    expect(limiter.blocked(["addr:c", "user:other"])).toBe(false);
  });

  it("keeps memory bounded", () => {
    const c = clock();
    const limiter = new LoginRateLimiter({ maxFailures: 5, windowMs: 10_000, maxKeys: 100, now: c.now });
    for (let i = 0; i < 1000; i++) limiter.fail([`addr:${i}`]);
    expect(limiter.size).toBe(100);
    c.advance(10_001);
    expect(limiter.blocked(["addr:999"])).toBe(false);
    expect(limiter.size).toBe(99);
  });
});
