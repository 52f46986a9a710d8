import { describe, expect, it } from "vitest";
import { Backoff } from "./backoff.js";

describe("Backoff", () => {
  it("grows by the factor up to the cap, with jitter inside its bounds", () => {
    const mid = new Backoff({ initialMs: 1000, maxMs: 20_000, factor: 1.6, jitter: 0.2, random: () => 0.5 });
    expect([mid.next(), mid.next(), mid.next()]).toEqual([1000, 1600, 2560]);
    for (let i = 0; i < 20; i++) mid.next();
    expect(mid.next()).toBe(20_000);
    const low = new Backoff({ initialMs: 1000, maxMs: 20_000, factor: 1.6, jitter: 0.2, random: () => 0 });
    expect(low.next()).toBe(800);
    const high = new Backoff({ initialMs: 1000, maxMs: 20_000, factor: 1.6, jitter: 0.2, random: () => 0.9999 });
    expect(high.next()).toBeLessThanOrEqual(1200);
    mid.reset();
    expect(mid.next()).toBe(1000);
  });
});
