import { EventEmitter } from "node:events";
import type { ServerHttp2Session, ServerHttp2Stream } from "node:http2";
import { describe, expect, it } from "vitest";
import { fromBinary } from "@bufbuild/protobuf";
import { ControlResponseSchema, DisconnectReason, type ControlResponse } from "../../shared/gen/warren/v1/agent_pb.js";
import { pino } from "pino";
import type { Logger } from "../../shared/logger.js";
import { ManualClock } from "../../shared/manual-clock.js";
import type { WarrenError } from "../../shared/errors.js";
import { AgentConnection, AgentConnectionState, mayTransition } from "./agent-connection.js";

/** A server stream without a socket: remembers what was written and how it ended. */
class FakeStream extends EventEmitter {
  destroyed = false;
  closed = false;
  writableEnded = false;
  readonly written: Buffer[] = [];
  warrenStatus?: WarrenError;
  write(chunk: Buffer): boolean {
    this.written.push(chunk);
    return true;
  }
  end(): void {
    this.writableEnded = true;
  }
  /** The peer (or the session) closed the stream. */
  close(): void {
    this.closed = true;
    this.emit("close");
  }
  /** Control messages written, decoded (one gRPC message per write). */
  messages(): ControlResponse[] {
    return this.written.map((b) => fromBinary(ControlResponseSchema, b.subarray(5)));
  }
}

class FakeSession extends EventEmitter {
  closed = false;
  destroyed = false;
  close(): void {
    this.closed = true;
  }
  destroy(): void {
    this.destroyed = true;
    this.emit("close");
  }
}

/** Keeps the lines written so that specs can read the state changes. */
function memoryLog(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) };
  return { log: pino({ level: "debug", formatters: { level: (label) => ({ level: label }) } }, stream), lines };
}

function connection(maxStreams = 4) {
  const clock = new ManualClock();
  const session = new FakeSession();
  const control = new FakeStream();
  const { log, lines } = memoryLog();
  const c = new AgentConnection({
    id: "conn-1",
    workspace: "dev",
    workspaceId: "ws_1",
    tokenId: "tok",
    session: session as unknown as ServerHttp2Session,
    control: control as unknown as ServerHttp2Stream,
    agentVersion: "test",
    instanceId: "agent-1",
    maxStreams,
    log,
    clock,
  });
  const park = () => {
    const stream = new FakeStream();
    expect(c.admitStream(stream as unknown as ServerHttp2Stream)).toBe(true);
    c.park(stream as unknown as ServerHttp2Stream);
    return stream;
  };
  const changes = () => lines.filter((l) => l["msg"] === "agent connection state").map((l) => [l["from"], l["to"]]);
  return { c, clock, session, control, lines, park, changes };
}

const { Open, HandoffRequested, Draining, Closed } = AgentConnectionState;

describe("AgentConnection state machine", () => {
  it("allows only forward transitions, and nothing out of Closed", () => {
    expect(mayTransition(Open, HandoffRequested)).toBe(true);
    expect(mayTransition(Open, Draining)).toBe(true);
    expect(mayTransition(HandoffRequested, Draining)).toBe(true);
    expect(mayTransition(Draining, Closed)).toBe(true);
    expect(mayTransition(Draining, Open)).toBe(false);
    expect(mayTransition(Draining, HandoffRequested)).toBe(false);
    expect(mayTransition(HandoffRequested, HandoffRequested)).toBe(false);
    for (const to of [Open, HandoffRequested, Draining, Closed]) expect(mayTransition(Closed, to)).toBe(false);
  });

  it("starts open and usable, and hands out its parked streams newest first", () => {
    const { c, park } = connection();
    expect(c.state).toBe(Open);
    expect(c.usable).toBe(true);
    const first = park();
    const second = park();
    expect(c.idleCount).toBe(2);
    expect(c.takeIdle()).toBe(second);
    expect(c.takeIdle()).toBe(first);
    expect(c.takeIdle()).toBeUndefined();
  });

  it("a handoff request keeps it usable, is sent once, and logs the change with the connection id and reason", () => {
    const { c, control, lines, changes } = connection();
    expect(c.requestHandoff("server is shutting down")).toBe(true);
    expect(c.state).toBe(HandoffRequested);
    expect(c.usable).toBe(true);
    expect(c.requestHandoff("again")).toBe(false);
    expect(control.messages().map((m) => m.msg.case)).toEqual(["disconnect"]);
    expect(changes()).toEqual([["open", "handoff-requested"]]);
    const line = lines.find((l) => l["msg"] === "agent connection state")!;
    expect(line).toMatchObject({ level: "debug", agentConnection: "conn-1", workspace: "dev" });
    expect(String(line["why"])).toMatch(/server is shutting down/);
  });

  it("draining ends its idle streams, refuses new ones, runs its drain handlers once, and keeps the session open", () => {
    const { c, session, park, changes } = connection();
    const idle = park();
    let drained = 0;
    c.onDraining(() => drained++);
    c.markDraining();
    c.markDraining();
    expect(c.state).toBe(Draining);
    expect(c.usable).toBe(false);
    expect(c.closed).toBe(false);
    expect(drained).toBe(1);
    expect(idle.writableEnded).toBe(true);
    expect(idle.warrenStatus?.message).toBe("agent is draining");
    const late = new FakeStream();
    c.park(late as unknown as ServerHttp2Stream);
    expect(late.warrenStatus?.code).toBe("unavailable");
    expect(c.takeIdle()).toBeUndefined();
    expect(c.requestHandoff("too late")).toBe(false);
    expect(session.closed).toBe(false);
    expect(changes()).toEqual([["open", "draining"]]);
  });

  it("closes when its control stream closes: idle streams ended, session closed, close handlers run once", async () => {
    const { c, control, session, park, changes } = connection();
    const idle = park();
    let closes = 0;
    c.onClose(() => closes++);
    control.close();
    session.emit("close");
    expect(c.state).toBe(Closed);
    expect(c.closed).toBe(true);
    expect(session.closed).toBe(true);
    expect(idle.warrenStatus?.message).toBe("agent connection closed: control stream closed");
    expect(closes).toBe(1);
    // A handler added late still runs, once.
    await new Promise<void>((resolve) => c.onClose(resolve));
    expect(changes()).toEqual([["open", "closed"]]);
  });

  it("refuses to leave Closed: no draining, no handoff, no streams", () => {
    const { c, control, changes } = connection();
    let drained = 0;
    c.onDraining(() => drained++);
    c.drop("network lost");
    c.markDraining();
    expect(c.requestHandoff("x")).toBe(false);
    expect(c.admitStream(new FakeStream() as unknown as ServerHttp2Stream)).toBe(false);
    expect(c.state).toBe(Closed);
    expect(drained).toBe(0);
    expect(control.messages()).toEqual([]);
    expect(changes()).toEqual([["open", "closed"]]);
  });

  it("disconnect tells the agent why, then destroys the session after the grace, on the injected clock", async () => {
    const { c, control, session, clock, changes } = connection();
    c.markDraining();
    c.disconnect(DisconnectReason.REVOKED, "token revoked", 1000);
    expect(c.state).toBe(Closed);
    const [message] = control.messages();
    expect(message?.msg.case).toBe("disconnect");
    expect(message?.msg.value).toMatchObject({ reason: DisconnectReason.REVOKED, message: "token revoked" });
    expect(control.warrenStatus?.code).toBe("unauthenticated");
    expect(session.closed).toBe(true);
    await clock.advance(999);
    expect(session.destroyed).toBe(false);
    await clock.advance(1);
    expect(session.destroyed).toBe(true);
    c.disconnect(DisconnectReason.REVOKED, "again");
    expect(control.messages()).toHaveLength(1);
    expect(changes()).toEqual([
      ["open", "draining"],
      ["draining", "closed"],
    ]);
  });

  it("a byte on a parked stream is a protocol violation that drops the connection at once", () => {
    const { c, session, control, park } = connection();
    const idle = park();
    idle.emit("data", Buffer.from("x"));
    expect(c.state).toBe(Closed);
    expect(session.destroyed).toBe(true);
    expect(control.warrenStatus?.code).toBe("invalid_argument");
  });

  it("admits streams up to its limit", () => {
    const { c } = connection(1);
    expect(c.admitStream(new FakeStream() as unknown as ServerHttp2Stream)).toBe(true);
    expect(c.admitStream(new FakeStream() as unknown as ServerHttp2Stream)).toBe(false);
    expect(c.streamCount).toBe(1);
  });
});
