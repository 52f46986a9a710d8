import { describe, expect, it } from "vitest";
import { createLogger } from "../shared/logger.js";
import { ServerLifecycle, ServerPhase } from "./server-phase.js";

describe("ServerLifecycle", () => {
  const log = createLogger({ name: "spec", level: "silent" });

  it("answers readiness by phase: starting, waiting for Redis, ready, shutting down", () => {
    const lifecycle = new ServerLifecycle(log);
    expect(lifecycle.notReadyReason()).toBe("starting");
    expect(lifecycle.transition(ServerPhase.WaitingForRedis)).toBe(true);
    expect(lifecycle.notReadyReason()).toBe("waiting for Redis");
    expect(lifecycle.transition(ServerPhase.Starting)).toBe(true);
    expect(lifecycle.transition(ServerPhase.Ready)).toBe(true);
    expect(lifecycle.notReadyReason()).toBeUndefined();
    expect(lifecycle.draining).toBe(false);
    expect(lifecycle.transition(ServerPhase.Draining)).toBe(true);
    expect(lifecycle.notReadyReason()).toBe("shutting down");
  });

  it("stays draining: a second shutdown and a start that goes on after shutdown began are refused", () => {
    const lifecycle = new ServerLifecycle(log);
    lifecycle.transition(ServerPhase.WaitingForRedis);
    expect(lifecycle.transition(ServerPhase.Draining)).toBe(true);
    expect(lifecycle.transition(ServerPhase.Starting)).toBe(false);
    expect(lifecycle.transition(ServerPhase.Ready)).toBe(false);
    expect(lifecycle.transition(ServerPhase.Draining)).toBe(false);
    expect(lifecycle.phase).toBe(ServerPhase.Draining);
  });
});
