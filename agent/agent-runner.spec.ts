import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it, vi } from "vitest";
import type { Welcome } from "../shared/gen/warren/v1/agent_pb.js";
import { ManualClock } from "../shared/manual-clock.js";
import { AgentExit, AgentRunner } from "./agent-runner.js";
import type { AgentSession, AgentSessionOptions, SessionEnd } from "./agent-session.js";

/** How each fake session ends, in order; "ready" sessions say welcome first. */
type Script = Array<SessionEnd & { ready?: boolean }>;

function harness(script: Script, random: number[], clock?: ManualClock) {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino(
    { level: "debug" },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        cb();
      },
    }),
  );
  const servers = ["http://s1:8150", "http://s2:8150", "http://s3:8150"].map((s) => new URL(s));
  const tried: string[] = [];
  let step = 0;
  let r = 0;
  const runner = new AgentRunner({
    servers,
    token: () => "t",
    pool: { minIdle: 1, maxStreams: 1, burst: 1, idleTimeoutMs: 1000 },
    dialTimeoutMs: 100,
    log,
    random: () => random[Math.min(r++, random.length - 1)]!,
    backoff: { initialMs: 10, maxMs: 40, factor: 2, jitter: 0 },
    ...(clock ? { clock } : {}),
    createSession: (options: AgentSessionOptions) => {
      tried.push(options.server.host);
      const end = script[Math.min(step++, script.length - 1)]!;
      return {
        run: async () => {
          if (end.ready) options.onReady?.({ serverId: options.server.host } as Welcome);
          return end;
        },
        drain: async () => {},
      } as unknown as AgentSession;
    },
  });
  const delays = () => lines.filter((l) => l["msg"] === "disconnected; reconnecting").map((l) => l["retryInMs"]);
  return { runner, tried, delays };
}

describe("AgentRunner with several servers", () => {
  it("starts at a random server, moves to the next after each disconnect, with growing backoff reset by a welcome", async () => {
    const lost = (ready = false) => ({ kind: "lost" as const, message: "connection refused", ready });
    const { runner, tried, delays } = harness(
      [lost(), lost(), lost(), lost(true), lost(), { kind: "server-draining", message: "server is shutting down" }, { kind: "rejected", message: "revoked" }],
      [0.7, 0.01],
    );
    expect(await runner.run()).toBe(AgentExit.Rejected);
    // 0.7 of three servers: the third first, then round the list.
    expect(tried).toEqual(["s3:8150", "s1:8150", "s2:8150", "s3:8150", "s1:8150", "s2:8150", "s3:8150"]);
    // 10, 20, 40 (capped); a welcome resets it; a draining server: a short random pause.
    expect(delays()).toEqual([10, 20, 40, 10, 20, 5]);
  });

  it("waits out each backoff delay on its clock before it connects again, and stop() cuts the wait short", async () => {
    const clock = new ManualClock();
    const lost = { kind: "lost" as const, message: "connection refused" };
    const { runner, tried } = harness([lost, lost, lost], [0], clock);
    const done = runner.run();
    await clock.advance(0);
    expect(tried).toHaveLength(1);
    await clock.advance(9);
    expect(tried).toHaveLength(1);
    await clock.advance(1);
    expect(tried).toHaveLength(2);
    await clock.advance(19);
    expect(tried).toHaveLength(2);
    await clock.advance(1);
    expect(tried).toHaveLength(3);
    // Waiting 40 ms for the next try: stopping does not wait for it.
    await runner.stop(100);
    expect(await done).toBe(AgentExit.Ok);
    expect(tried).toHaveLength(3);
  });

  it("retries every 1-3 s while a server that asked it to move restarts, backing off again after a minute or a welcome", async () => {
    const clock = new ManualClock();
    const refused = { kind: "lost" as const, message: "connection refused" };
    const draining = { kind: "server-draining" as const, message: "server is shutting down" };
    // Moved, refused for a while, welcomed, lost, then moved again and refused for over a minute.
    const { runner, delays } = harness([draining, refused, refused, { ...refused, ready: true }, refused, draining, refused], [0.5], clock);
    const done = runner.run();
    for (let t = 0; t < 75_000; t += 250) await clock.advance(250);
    await runner.stop(100);
    expect(await done).toBe(AgentExit.Ok);
    const seen = delays() as number[];
    // Moved: a short random pause, then 1-3 s per refused try (2 s at random 0.5; not 10, 20, 40 ms...).
    expect(seen.slice(0, 3)).toEqual([250, 2000, 2000]);
    // Welcomed, then lost twice (not moved): the usual backoff from its start.
    expect(seen.slice(3, 5)).toEqual([10, 20]);
    // Moved again: 1-3 s per try until the minute is out, then the backoff.
    expect(seen[5]).toBe(250);
    const afterMove = seen.slice(6);
    const flat = afterMove.findIndex((d) => d !== 2000);
    expect(flat).toBeGreaterThanOrEqual(29);
    expect(flat).toBeLessThanOrEqual(31);
    expect(afterMove.slice(flat, flat + 3)).toEqual([10, 20, 40]);
  });

  it("spreads its first server over the whole list", async () => {
    const starts = new Set<string>();
    for (const r of [0, 0.34, 0.99]) {
      const { runner, tried } = harness([{ kind: "closed" }], [r]);
      await runner.run();
      starts.add(tried[0]!);
    }
    expect([...starts].sort()).toEqual(["s1:8150", "s2:8150", "s3:8150"]);
  });
});

describe("AgentRunner when its server shuts down", () => {
  it("connects to the next server before it lets the old connection go, and drains it once the new one is up", async () => {
    const events: string[] = [];
    let closeOld!: () => void;
    let endNew!: (end: SessionEnd) => void;
    const runner = new AgentRunner({
      servers: ["http://s1:8150", "http://s2:8150"].map((s) => new URL(s)),
      token: () => "t",
      pool: { minIdle: 1, maxStreams: 1, burst: 1, idleTimeoutMs: 1000 },
      dialTimeoutMs: 100,
      log: pino({ level: "silent" }),
      random: () => 0,
      createSession: (options: AgentSessionOptions) => {
        const host = options.server.host;
        events.push(`connect ${host}`);
        if (host === "s1:8150") {
          const closed = new Promise<void>((resolve) => (closeOld = resolve));
          let handedOff = false;
          return {
            get handedOff() {
              return handedOff;
            },
            whenClosed: () => closed,
            run: async () => {
              options.onReady?.({ serverId: "s1" } as Welcome);
              // The server asks the agent to move; the session stays open for its streams.
              handedOff = true;
              return { kind: "server-draining", message: "server is shutting down" } as SessionEnd;
            },
            drain: async () => {
              events.push("drain s1");
              closeOld();
            },
          } as unknown as AgentSession;
        }
        return {
          handedOff: false,
          run: async () => {
            events.push("welcome s2");
            options.onReady?.({ serverId: "s2" } as Welcome);
            return new Promise<SessionEnd>((resolve) => (endNew = resolve));
          },
          drain: async () => events.push("drain s2"),
        } as unknown as AgentSession;
      },
    });
    const done = runner.run();
    await vi.waitFor(() => expect(events).toContain("drain s1"));
    // Never a moment without a connection: s1 is let go only once s2 said welcome.
    expect(events).toEqual(["connect s1:8150", "connect s2:8150", "welcome s2", "drain s1"]);
    await runner.stop(100);
    endNew({ kind: "closed" });
    expect(await done).toBe(AgentExit.Ok);
  });
});
