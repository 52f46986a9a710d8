import http2 from "node:http2";
import net, { type AddressInfo } from "node:net";
import { create, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { ControlRequestSchema, ControlResponseSchema, DisconnectReason, TunnelResponseSchema, type ControlRequest } from "../shared/gen/warren/v1/agent_pb.js";
import { AGENT_CONTROL_PATH, AGENT_TUNNEL_PATH } from "../shared/dial-protocol.js";
import type { Logger } from "../shared/logger.js";
import { ManualClock } from "../shared/manual-clock.js";
import { AgentSession, AgentSessionState, mayTransition, WELCOME_TIMEOUT_MS, type SessionEnd } from "./agent-session.js";
import { FakeHttp2Session } from "./fake-http2.js";

const S = AgentSessionState;

/** Keeps the lines written so that specs can read the state changes. */
function memoryLog(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) };
  return { log: pino({ level: "debug" }, stream), lines };
}

function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** An agent session on a fake HTTP/2 connection; the spec plays the server. */
function started(liveness = { intervalMs: 2000, timeoutMs: 2000 }) {
  const clock = new ManualClock();
  const http2Session = new FakeHttp2Session();
  const { log, lines } = memoryLog();
  const session = new AgentSession({
    server: new URL("https://warren.test"),
    token: "wat_test",
    instanceId: "agent-1",
    pool: { minIdle: 2, maxStreams: 8, burst: 2, idleTimeoutMs: 60_000 },
    dialTimeoutMs: 1000,
    liveness,
    log,
    clock,
    connect: (_server, _ca, outcome) => outcome.connected(http2Session.asSession()),
  });
  let end: SessionEnd | undefined;
  const ended = session.run().then((e) => (end = e));
  // node: 'connect' once the session is set up, then the server's SETTINGS.
  http2Session.emit("connect");
  const control = http2Session.streamsOn(AGENT_CONTROL_PATH)[0]!;
  const serverSpeaksHttp2 = () => http2Session.emit("remoteSettings", {});
  const send = (msg: MessageInitShape<typeof ControlResponseSchema>["msg"]) => control.receive(ControlResponseSchema, create(ControlResponseSchema, { msg }));
  const welcome = () => {
    serverSpeaksHttp2();
    control.respond({ ":status": 200, "content-type": "application/grpc" });
    send({ case: "welcome", value: { serverVersion: "test", maxStreams: 8, allowedPorts: [8080] } });
  };
  /** What the agent wrote on its control stream, decoded (one gRPC message per write). */
  const sent = (): ControlRequest[] => control.written.map((b) => fromBinary(ControlRequestSchema, b.subarray(5)));
  const changes = () => lines.filter((l) => l["msg"] === "agent session state").map((l) => [l["from"], l["to"]]);
  return { session, clock, http2Session, control, welcome, serverSpeaksHttp2, send, sent, changes, ended, end: () => end };
}

describe("AgentSession", () => {
  it("allows only the changes of its life cycle", () => {
    const path = [S.New, S.Connecting, S.Handshaking, S.AwaitingWelcome, S.Ready, S.HandedOff, S.Draining, S.Closed];
    for (let i = 0; i + 1 < path.length; i++) expect(mayTransition(path[i]!, path[i + 1]!)).toBe(true);
    for (const from of path.slice(0, -1)) expect(mayTransition(from, S.Closed)).toBe(true);
    // A server that never said a word of HTTP/2 cannot welcome; a session handed off or
    // draining is never welcomed (or ready) again; closed is final.
    expect(mayTransition(S.Handshaking, S.Ready)).toBe(false);
    expect(mayTransition(S.HandedOff, S.Ready)).toBe(false);
    expect(mayTransition(S.Draining, S.Ready)).toBe(false);
    expect(mayTransition(S.Draining, S.HandedOff)).toBe(false);
    expect(mayTransition(S.Connecting, S.Draining)).toBe(false);
    for (const to of path) expect(mayTransition(S.Closed, to)).toBe(false);
  });

  it("says hello, is welcomed once, fills its pool and logs each change of state", async () => {
    const t = started();
    expect(t.session.state).toBe(S.Handshaking);
    t.welcome();
    expect(t.session.state).toBe(S.Ready);
    expect(t.sent()[0]!.msg).toMatchObject({ case: "hello", value: { instanceId: "agent-1", minIdle: 2, maxStreams: 8 } });
    expect(t.http2Session.streamsOn(AGENT_TUNNEL_PATH)).toHaveLength(2);
    // A second welcome is refused by the table: no second pool.
    t.send({ case: "welcome", value: { serverVersion: "test", maxStreams: 8 } });
    expect(t.http2Session.streamsOn(AGENT_TUNNEL_PATH)).toHaveLength(2);
    expect(t.changes()).toEqual([
      [S.New, S.Connecting],
      [S.Connecting, S.Handshaking],
      [S.Handshaking, S.AwaitingWelcome],
      [S.AwaitingWelcome, S.Ready],
    ]);
    t.session.close();
    expect(await t.ended).toEqual({ kind: "closed" });
  });

  it("ends as lost when the server stays silent for interval + timeout, and destroys the connection", async () => {
    const t = started({ intervalMs: 2000, timeoutMs: 2000 });
    t.welcome();
    t.http2Session.answersPings = false;
    await t.clock.advance(3500);
    expect(t.end()).toBeUndefined();
    expect(t.http2Session.pings).toBeGreaterThanOrEqual(1);
    await t.clock.advance(500);
    expect(t.end()).toEqual({ kind: "lost", message: "server stopped answering pings (nothing received for 4000 ms)" });
    expect(t.session.state).toBe(S.Closed);
    expect(t.http2Session.destroyed).toBe(true);
  });

  it("regression (reconnect storm): before the welcome a silent server gets the welcome timeout, not the ping bound", async () => {
    const t = started({ intervalMs: 2000, timeoutMs: 2000 });
    // Connected, SETTINGS seen, then nothing: a server busy admitting thousands of agents.
    t.serverSpeaksHttp2();
    t.http2Session.answersPings = false;
    await t.clock.advance(10_000);
    expect(t.end()).toBeUndefined();
    expect(t.http2Session.pings).toBe(0);
    await t.clock.advance(5_000);
    expect(t.end()).toEqual({ kind: "lost", message: "server sent no welcome in time" });
  });

  it("stays up while the server answers pings or sends anything at all", async () => {
    const t = started({ intervalMs: 1000, timeoutMs: 500 });
    t.welcome();
    // Pings answered: a minute goes by.
    await t.clock.advance(60_000);
    expect(t.end()).toBeUndefined();
    // Pings unanswered, but bytes of a transfer keep coming.
    t.http2Session.answersPings = false;
    for (let i = 0; i < 20; i++) {
      t.http2Session.heard();
      await t.clock.advance(1000);
    }
    expect(t.end()).toBeUndefined();
    expect(t.session.state).toBe(S.Ready);
    t.session.close();
  });

  it("ends as lost when the server sends no welcome in time", async () => {
    const t = started();
    t.serverSpeaksHttp2();
    t.control.respond({ ":status": 200, "content-type": "application/grpc" });
    await t.clock.advance(WELCOME_TIMEOUT_MS - 1);
    expect(t.session.state).toBe(S.AwaitingWelcome);
    await t.clock.advance(1);
    expect(t.end()).toEqual({ kind: "lost", message: "server sent no welcome in time" });
  });

  it("a control stream closed before the server spoke HTTP/2 says the server is not a Warren server", async () => {
    const t = started();
    t.control.close();
    await settle();
    expect(t.end()).toMatchObject({ kind: "lost", message: expect.stringContaining("does not answer as a Warren server (no HTTP/2)") });
  });

  it("a SERVER_DRAINING disconnect hands the session off: run() answers, the streams stay until drain()", async () => {
    const t = started();
    t.welcome();
    t.send({ case: "disconnect", value: { reason: DisconnectReason.SERVER_DRAINING, message: "server shutting down" } });
    await settle();
    expect(t.end()).toEqual({ kind: "server-draining", message: "server shutting down" });
    expect(t.session.state).toBe(S.HandedOff);
    expect(t.session.handedOff).toBe(true);
    expect(t.http2Session.closed).toBe(false);
    // Still takes what the server sends: more streams when asked.
    t.send({ case: "openStreams", value: { count: 3 } });
    const tunnels = t.http2Session.streamsOn(AGENT_TUNNEL_PATH);
    expect(tunnels).toHaveLength(5);
    // The new session is up: the runner drains this one.
    let closed = false;
    void t.session.whenClosed().then(() => (closed = true));
    await t.session.drain(10_000);
    expect(t.sent().at(-1)!.msg.case).toBe("draining");
    expect(tunnels.every((s) => s.writableEnded)).toBe(true);
    await settle();
    expect(closed).toBe(true);
    expect(t.session.state).toBe(S.Closed);
    expect(t.session.handedOff).toBe(false);
    expect(t.http2Session.closed).toBe(true);
    await t.clock.advance(1000);
    expect(t.http2Session.destroyed).toBe(true);
    expect(t.changes().slice(-3)).toEqual([
      [S.Ready, S.HandedOff],
      [S.HandedOff, S.Draining],
      [S.Draining, S.Closed],
    ]);
  });

  it("a GOAWAY after the welcome hands off too; a REVOKED disconnect rejects", async () => {
    const goaway = started();
    goaway.welcome();
    goaway.http2Session.emit("goaway", 0);
    await settle();
    expect(goaway.end()).toEqual({ kind: "server-draining", message: "server closed the connection (GOAWAY, code 0)" });
    expect(goaway.session.handedOff).toBe(true);
    goaway.session.close();

    const revoked = started();
    revoked.welcome();
    revoked.send({ case: "disconnect", value: { reason: DisconnectReason.REVOKED, message: "token revoked" } });
    expect(await revoked.ended).toEqual({ kind: "rejected", message: "token revoked" });
    expect(revoked.session.handedOff).toBe(false);
  });

  it("an agent stopping when its server asks it to move stays draining, and run() still hears the hand-off", async () => {
    const t = started();
    t.welcome();
    const drained = t.session.drain(5000);
    t.send({ case: "disconnect", value: { reason: DisconnectReason.SERVER_DRAINING, message: "server shutting down" } });
    expect(t.session.state).toBe(S.Draining);
    expect(t.session.handedOff).toBe(true);
    await drained;
    expect(await t.ended).toEqual({ kind: "server-draining", message: "server shutting down" });
    expect(t.session.state).toBe(S.Closed);
  });

  it("drain lets a busy connection finish for at most its timeout, then closes", async () => {
    // The workspace's app: a listener that keeps the one connection open.
    const app = net.createServer(() => {});
    await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
    const appPort = (app.address() as AddressInfo).port;
    const t = started();
    t.serverSpeaksHttp2();
    t.control.respond({ ":status": 200, "content-type": "application/grpc" });
    t.send({ case: "welcome", value: { serverVersion: "test", maxStreams: 8, allowedPorts: [appPort] } });
    const [claimed] = t.http2Session.streamsOn(AGENT_TUNNEL_PATH);
    claimed!.receive(TunnelResponseSchema, create(TunnelResponseSchema, { msg: { case: "dial", value: { port: appPort, connectionId: "c1" } } }));
    expect(t.session.busyCount).toBe(1);
    let done = false;
    const drained = t.session.drain(3000).then(() => (done = true));
    await t.clock.advance(2999);
    expect(done).toBe(false);
    expect(t.session.state).toBe(S.Draining);
    await t.clock.advance(1);
    await drained;
    expect(t.session.state).toBe(S.Closed);
    expect(t.end()).toEqual({ kind: "closed" });
    await new Promise<void>((resolve) => app.close(() => resolve()));
  });

  it("a ping due after its connection was destroyed, before node reported the close, is skipped rather than thrown", async () => {
    // A real HTTP/2 server: node's own session, whose socket is gone once destroyed.
    const server = http2.createServer();
    server.on("stream", (stream) => stream.respond({ ":status": 200, "content-type": "application/grpc" }));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const clock = new ManualClock();
    let connected!: () => void;
    const up = new Promise<void>((resolve) => (connected = resolve));
    server.once("session", () => connected());
    const session = new AgentSession({
      server: new URL(`http://127.0.0.1:${port}`),
      token: "wat_test",
      instanceId: "test",
      pool: { minIdle: 1, maxStreams: 1, burst: 1, idleTimeoutMs: 60_000 },
      dialTimeoutMs: 1000,
      log: pino({ level: "silent" }),
      clock,
    });
    const ended = session.run();
    await up;
    await settle();
    // close() destroys the connection one second later, from a timer; node emits 'close' only
    // on a later turn of the loop, so the ping interval may fire on a destroyed session.
    session.close();
    await clock.advance(60_000);
    expect((await ended).kind).toBe("closed");
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});
