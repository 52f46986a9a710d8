import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { AgentSession } from "./agent-session.js";

describe("AgentSession", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("a ping due after its connection was destroyed, before node reported the close, is skipped rather than thrown", async () => {
    // A bare HTTP/2 server: the session pings as soon as it connects, before any welcome.
    const server = http2.createServer();
    server.on("stream", (stream) => stream.respond({ ":status": 200, "content-type": "application/grpc" }));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    // Only the session's own timers are faked; node's HTTP/2 internals keep theirs.
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "setTimeout", "clearTimeout"] });
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
    });
    const ended = session.run();
    await up;
    await new Promise((r) => setImmediate(r));
    // close() destroys the connection one second later, from a timer; node emits 'close' only
    // on a later turn of the loop, so the ping interval (20 s) may fire on a destroyed session.
    session.close();
    expect(() => vi.advanceTimersByTime(60_000)).not.toThrow();
    vi.useRealTimers();
    expect((await ended).kind).toBe("closed");
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});
