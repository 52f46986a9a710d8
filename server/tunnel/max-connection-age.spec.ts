import { afterEach, describe, expect, it, vi } from "vitest";
import { limitConnectionAge } from "./max-connection-age.js";

function fakeConnection() {
  const closers: Array<() => void> = [];
  return {
    handoffs: [] as string[],
    requestHandoff(message: string) {
      this.handoffs.push(message);
      return true;
    },
    onClose(handler: () => void) {
      closers.push(handler);
    },
    close: () => closers.forEach((c) => c()),
  };
}

describe("limitConnectionAge", () => {
  afterEach(() => vi.useRealTimers());

  it("asks for a handoff within ±10 % of the age, naming the setting", () => {
    vi.useFakeTimers();
    for (const [random, earliest] of [[0, 54_000], [1, 66_000]] as const) {
      const c = fakeConnection();
      limitConnectionAge(c, 60_000, () => random);
      vi.advanceTimersByTime(earliest - 1);
      expect(c.handoffs).toEqual([]);
      vi.advanceTimersByTime(1);
      expect(c.handoffs).toHaveLength(1);
      expect(c.handoffs[0]).toMatch(/WARREN_AGENT_MAX_CONNECTION_AGE/);
    }
  });

  it("does nothing with 0, and nothing after the connection closed", () => {
    vi.useFakeTimers();
    const never = fakeConnection();
    limitConnectionAge(never, 0);
    const closed = fakeConnection();
    limitConnectionAge(closed, 1000, () => 0.5);
    closed.close();
    vi.advanceTimersByTime(10_000);
    expect(never.handoffs).toEqual([]);
    expect(closed.handoffs).toEqual([]);
  });
});
