import { describe, expect, it } from "vitest";
import { createLogger } from "../shared/logger.js";
import { runDrainSequence, type DrainClock, type DrainParts } from "./drain-sequence.js";

/** Virtual time: sleeps fire in time order, one at a time, with a turn of the event loop between. */
class ManualClock implements DrainClock {
  #now = 0;
  readonly #timers: Array<{ at: number; resolve: () => void }> = [];
  now(): number {
    return this.#now;
  }
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.#timers.push({ at: this.#now + ms, resolve }));
  }
  /** Runs the timers until `work` settles. */
  async run<T>(work: Promise<T>): Promise<T> {
    let done = false;
    void work.finally(() => (done = true));
    while (!done) {
      await new Promise((r) => setImmediate(r));
      if (done) break;
      this.#timers.sort((a, b) => a.at - b.at);
      const next = this.#timers.shift();
      if (!next) continue;
      this.#now = Math.max(this.#now, next.at);
      next.resolve();
    }
    return work;
  }
}

/** A server's parts as plain state: what the drain did, and when (virtual ms). */
function fakeServer(clock: ManualClock, setup: { agents?: number; peers?: boolean; requests?: number; webSockets?: number } = {}) {
  const steps: string[] = [];
  const at = (step: string) => steps.push(`${clock.now()} ${step}`);
  const state = { usableAgents: setup.agents ?? 0, requests: setup.requests ?? 0, webSockets: setup.webSockets ?? 0, idleSweeps: 0 };
  const parts: DrainParts = {
    stopAccepting: async () => at("stop accepting"),
    closeIdleConnections: () => state.idleSweeps++,
    handOffAgents: () => {
      at(`hand off ${state.usableAgents} agents`);
      return state.usableAgents;
    },
    usableAgents: () => state.usableAgents,
    ...(setup.peers !== undefined
      ? {
          cluster: {
            hasLivePeers: async () => setup.peers!,
            stopAccepting: () => at("private API stops accepting"),
            whenIdle: async () => undefined,
          },
        }
      : {}),
    inFlightRequests: () => state.requests,
    openWebSockets: () => state.webSockets,
    openSshConnections: () => 0,
    closeClientConnections: () => {
      at(`close ${state.webSockets} WebSockets and client connections`);
      state.webSockets = 0;
    },
    closeEverything: async () => {
      at("close everything");
    },
  };
  return { parts, steps, state };
}

const log = createLogger({ name: "drain-spec", level: "silent" });

describe("drain sequence (graceful stop)", () => {
  it("stays ready for the drain delay, then stops accepting, hands agents off and closes WebSockets once requests are answered", async () => {
    const clock = new ManualClock();
    const { parts, steps, state } = fakeServer(clock, { agents: 2, requests: 3, webSockets: 1 });
    // The requests in flight finish 700 ms after the delay.
    void clock.sleep(5_700).then(() => (state.requests = 0));
    const finished = await clock.run(runDrainSequence(parts, { drainDelayMs: 5_000, timeoutMs: 25_000 }, log, clock));
    expect(finished).toBe(true);
    expect(steps).toEqual(["5000 stop accepting", "5000 hand off 2 agents", "5700 close 1 WebSockets and client connections", "5700 close everything"]);
    expect(state.idleSweeps).toBeGreaterThan(1);
  });

  it("in a cluster, keeps serving forwards until the agents have moved, then turns the private API away", async () => {
    const clock = new ManualClock();
    const { parts, steps, state } = fakeServer(clock, { agents: 1, peers: true });
    void clock.sleep(1_300).then(() => (state.usableAgents = 0));
    expect(await clock.run(runDrainSequence(parts, { drainDelayMs: 1_000, timeoutMs: 10_000 }, log, clock))).toBe(true);
    expect(steps).toEqual(["1000 stop accepting", "1000 hand off 1 agents", "1300 private API stops accepting", "1300 close 0 WebSockets and client connections", "1300 close everything"]);
  });

  it("with no other server alive, does not wait for agents to move (there is nowhere to go)", async () => {
    const clock = new ManualClock();
    const { parts, steps } = fakeServer(clock, { agents: 1, peers: false });
    expect(await clock.run(runDrainSequence(parts, { drainDelayMs: 0, timeoutMs: 10_000 }, log, clock))).toBe(true);
    expect(steps[2]).toBe("0 private API stops accepting");
  });

  it("a request that never ends is cut at the timeout, and everything is closed all the same", async () => {
    const clock = new ManualClock();
    const { parts, steps } = fakeServer(clock, { requests: 1, webSockets: 2 });
    expect(await clock.run(runDrainSequence(parts, { drainDelayMs: 0, timeoutMs: 25_000 }, log, clock))).toBe(false);
    // WebSockets are not closed early while a request is still in flight: they go with everything at the timeout.
    expect(steps).toEqual(["0 stop accepting", "0 hand off 0 agents", "25000 close everything"]);
  });
});
