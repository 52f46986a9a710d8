import { create } from "@bufbuild/protobuf";
import { constants as h2constants } from "node:http2";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { TunnelResponseSchema } from "../shared/gen/warren/v1/agent_pb.js";
import { AGENT_TUNNEL_PATH } from "../shared/dial-protocol.js";
import type { Logger } from "../shared/logger.js";
import { ManualClock } from "../shared/manual-clock.js";
import { FakeHttp2Session, type FakeClientStream } from "./fake-http2.js";
import type { LocalDialOptions } from "./local-dial.js";
import { mayTransition, REFUSAL_COOLDOWN_MS, RETIRE_CHECK_MS, TunnelPool, TunnelPoolState, type PoolSettings } from "./tunnel-pool.js";

const S = TunnelPoolState;

/** Keeps the lines written so that specs can read the state changes. */
function memoryLog(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) };
  return { log: pino({ level: "debug" }, stream), lines };
}

/** Lets node's next-tick events (stream 'close') and the promise callbacks after them run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** A dial the pool handed over; it stays open until the spec ends it. */
interface OpenDial {
  readonly options: LocalDialOptions;
  end(): void;
}

function pool(settings: Partial<PoolSettings> = {}) {
  const clock = new ManualClock();
  const session = new FakeHttp2Session();
  const { log, lines } = memoryLog();
  const dials: OpenDial[] = [];
  const p = new TunnelPool({
    session: session.asSession(),
    headers: { authorization: "Bearer wat_test" },
    settings: { minIdle: 2, maxStreams: 6, burst: 2, idleTimeoutMs: 60_000, ...settings },
    allowedPorts: new Set([8080]),
    dialTimeoutMs: 1000,
    log,
    clock,
    handleDial: (options) =>
      new Promise<void>((resolve) => {
        dials.push({ options, end: resolve });
      }),
  });
  const tunnels = () => session.streamsOn(AGENT_TUNNEL_PATH);
  /** The server claims an idle stream with a dial. */
  const claim = (stream: FakeClientStream, port = 8080) =>
    stream.receive(TunnelResponseSchema, create(TunnelResponseSchema, { msg: { case: "dial", value: { port, connectionId: "c1" } } }));
  const changes = () => lines.filter((l) => l["msg"] === "tunnel pool state").map((l) => [l["from"], l["to"]]);
  return { pool: p, clock, session, tunnels, claim, dials, changes };
}

describe("TunnelPool", () => {
  it("allows only the changes of its life cycle", () => {
    expect(mayTransition(S.Open, S.CoolingDown)).toBe(true);
    expect(mayTransition(S.CoolingDown, S.Open)).toBe(true);
    expect(mayTransition(S.Open, S.Draining)).toBe(true);
    expect(mayTransition(S.CoolingDown, S.Draining)).toBe(true);
    expect(mayTransition(S.Draining, S.Closed)).toBe(true);
    expect(mayTransition(S.Open, S.Closed)).toBe(true);
    // A draining pool never takes dials again, and closed is final.
    expect(mayTransition(S.Draining, S.Open)).toBe(false);
    expect(mayTransition(S.Draining, S.CoolingDown)).toBe(false);
    for (const to of Object.values(S)) expect(mayTransition(S.Closed, to)).toBe(false);
    expect(mayTransition(S.Open, S.Open)).toBe(false);
  });

  it("fills to the minimum with tunnel streams that carry the agent's headers", () => {
    const { pool: p, tunnels } = pool({ minIdle: 3 });
    p.fill();
    expect(tunnels()).toHaveLength(3);
    expect(tunnels()[0]!.headers).toMatchObject({ ":method": "POST", ":path": AGENT_TUNNEL_PATH, authorization: "Bearer wat_test" });
    expect(p.idleCount).toBe(3);
    p.fill();
    expect(tunnels()).toHaveLength(3);
  });

  it("replaces a claimed stream, hands the dial over, and never opens more than maxStreams", async () => {
    const { pool: p, tunnels, claim, dials } = pool({ minIdle: 2, burst: 3, maxStreams: 5 });
    p.fill();
    claim(tunnels()[0]!);
    await settle();
    expect(dials).toHaveLength(1);
    expect(dials[0]!.options.dial.port).toBe(8080);
    expect(dials[0]!.options.draining).toBe(false);
    // Idle fell below the minimum: a burst of 3 opens (2 + 3 = 5 streams, the limit).
    expect(p.busyCount).toBe(1);
    expect(tunnels()).toHaveLength(5);
    p.openMore(10);
    expect(tunnels()).toHaveLength(5);
    // The dial ends, the stream closes: room for one more.
    dials[0]!.end();
    tunnels()[0]!.finish();
    await settle();
    expect(p.busyCount).toBe(0);
    p.openMore(10);
    expect(tunnels()).toHaveLength(6);
  });

  it("retires streams idle beyond the minimum for longer than idleTimeoutMs, by ending them (not RST_STREAM)", async () => {
    const { pool: p, tunnels, clock } = pool({ minIdle: 1, idleTimeoutMs: 10_000 });
    p.fill();
    p.openMore(3);
    expect(tunnels()).toHaveLength(4);
    await clock.advance(RETIRE_CHECK_MS);
    expect(tunnels().filter((s) => s.writableEnded)).toHaveLength(0);
    await clock.advance(10_000);
    // Three beyond the minimum, ended on the agent's side; none reset.
    expect(tunnels().filter((s) => s.writableEnded)).toHaveLength(3);
    expect(tunnels().some((s) => s.closed)).toBe(false);
    // The server answers each; the pool keeps its minimum and opens nothing new.
    for (const s of tunnels().filter((s) => s.writableEnded)) s.finish();
    await settle();
    expect(p.idleCount).toBe(1);
    expect(tunnels()).toHaveLength(4);
  });

  it("after a refused stream cools down for a second, then opens what was asked meanwhile", async () => {
    const { pool: p, tunnels, clock, changes } = pool({ minIdle: 2, maxStreams: 10 });
    p.fill();
    const [refused] = tunnels();
    refused!.respond({ ":status": 200, "grpc-status": "8", "grpc-message": "too many streams" });
    refused!.finish();
    await settle();
    expect(p.state).toBe(S.CoolingDown);
    // Neither the refilling of the refused stream nor the server's request opens anything yet.
    p.openMore(4);
    expect(tunnels()).toHaveLength(2);
    await clock.advance(REFUSAL_COOLDOWN_MS - 1);
    expect(tunnels()).toHaveLength(2);
    await clock.advance(1);
    expect(p.state).toBe(S.Open);
    // The 4 the server asked for (more than the 1 the minimum lacks) are not forgotten.
    expect(tunnels()).toHaveLength(6);
    expect(changes()).toEqual([
      [S.Open, S.CoolingDown],
      [S.CoolingDown, S.Open],
    ]);
  });

  it("a second refusal during the cooldown moves its end on", async () => {
    const { pool: p, tunnels, clock } = pool({ minIdle: 2 });
    p.fill();
    tunnels()[0]!.respond({ ":status": 200, "grpc-status": "8" });
    await clock.advance(600);
    tunnels()[1]!.respond({ ":status": 200, "grpc-status": "8" });
    p.openMore(1);
    await clock.advance(REFUSAL_COOLDOWN_MS - 600);
    expect(p.state).toBe(S.CoolingDown);
    expect(tunnels()).toHaveLength(2);
    await clock.advance(600);
    expect(p.state).toBe(S.Open);
    expect(tunnels()).toHaveLength(3);
  });

  it("drains: idle streams end, busy ones go on, dials on a draining stream are refused as draining, whenIdle waits for the busy", async () => {
    const { pool: p, tunnels, claim, dials, clock } = pool({ minIdle: 2, burst: 1 });
    p.fill();
    claim(tunnels()[0]!);
    await settle();
    expect(tunnels()).toHaveLength(3);
    p.drain();
    expect(p.state).toBe(S.Draining);
    expect(tunnels().map((s) => s.writableEnded)).toEqual([false, true, true]);
    // A dial that crossed the drain on the wire is answered "draining" by the dial handler.
    claim(tunnels()[1]!);
    await settle();
    expect(dials[1]!.options.draining).toBe(true);
    dials[1]!.end();
    // Idle streams that close are not replaced; nothing opens on request either.
    tunnels()[2]!.finish();
    await settle();
    p.openMore(3);
    p.fill();
    expect(tunnels()).toHaveLength(3);
    let idle = false;
    void p.whenIdle().then(() => (idle = true));
    await clock.advance(60_000);
    expect(idle).toBe(false);
    dials[0]!.end();
    await settle();
    expect(idle).toBe(true);
    // Drain again: nothing changes.
    p.drain();
    expect(p.state).toBe(S.Draining);
  });

  it("close resets every stream, or only lets go of them when the session is going away; a closed pool stays closed", async () => {
    const reset = pool({ minIdle: 2 });
    reset.pool.fill();
    reset.pool.close();
    await settle();
    expect(reset.tunnels().map((s) => s.rstCode)).toEqual([h2constants.NGHTTP2_CANCEL, h2constants.NGHTTP2_CANCEL]);
    expect(reset.pool.state).toBe(S.Closed);
    // Nothing opens after close, and the retire timer is gone.
    reset.pool.openMore(2);
    reset.pool.fill();
    expect(reset.tunnels()).toHaveLength(2);
    expect(reset.clock.pending).toBe(0);

    const letGo = pool({ minIdle: 2 });
    letGo.pool.fill();
    letGo.pool.close({ resetStreams: false });
    await settle();
    expect(letGo.tunnels().some((s) => s.closed)).toBe(false);
    expect(letGo.changes()).toEqual([[S.Open, S.Closed]]);
    letGo.pool.close();
    letGo.pool.drain();
    await settle();
    expect(letGo.tunnels().some((s) => s.closed)).toBe(false);
    expect(letGo.changes()).toEqual([[S.Open, S.Closed]]);
  });

  it("refills an idle stream the server closed, and opens nothing on a closed session", async () => {
    const { pool: p, tunnels, session } = pool({ minIdle: 2 });
    p.fill();
    tunnels()[0]!.finish();
    await settle();
    expect(tunnels()).toHaveLength(3);
    expect(p.idleCount).toBe(2);
    session.close();
    tunnels()[1]!.finish();
    await settle();
    expect(tunnels()).toHaveLength(3);
  });
});
