import { describe, expect, it } from "vitest";
import { ServerMetrics } from "./metrics.js";

/** The value of one sample line (`name{labels} value`) in the text exposition. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("ServerMetrics", () => {
  it("reads the gauges from the sources it was given, at scrape time", async () => {
    const metrics = new ServerMetrics();
    let inFlight = 2;
    metrics.observe({
      tunnelStats: () => ({ agents: 3, idleStreams: 5, streams: 7 }),
      tunnelBytes: () => ({ in: 100, out: 40 }),
      sshConnections: () => 4,
      sshSessions: () => 1,
      httpInFlight: () => inFlight,
      webSocketsOpen: () => 6,
      draining: () => true,
      redisAvailable: () => false,
    });
    let text = await metrics.registry.metrics();
    expect(sample(text, "warren_agents_connected")).toBe(3);
    expect(sample(text, 'warren_tunnel_streams{state="idle"}')).toBe(5);
    expect(sample(text, 'warren_tunnel_streams{state="busy"}')).toBe(2);
    expect(sample(text, 'warren_tunnel_bytes_total{direction="in"}')).toBe(100);
    expect(sample(text, 'warren_tunnel_bytes_total{direction="out"}')).toBe(40);
    expect(sample(text, "warren_ssh_connections")).toBe(4);
    expect(sample(text, "warren_ssh_sessions")).toBe(1);
    expect(sample(text, "warren_http_requests_in_flight")).toBe(2);
    expect(sample(text, "warren_websockets_open")).toBe(6);
    expect(sample(text, "warren_draining")).toBe(1);
    expect(sample(text, "warren_redis_up")).toBe(0);
    inFlight = 9;
    text = await metrics.registry.metrics();
    expect(sample(text, "warren_http_requests_in_flight")).toBe(9);
  });

  it("counts from construction, before the gauges' sources exist; one server has no warren_redis_up", async () => {
    const metrics = new ServerMetrics();
    metrics.dialOutcome("ok");
    metrics.sshLogins.inc({ outcome: "denied" });
    metrics.observe({ tunnelStats: () => ({ agents: 0, idleStreams: 0, streams: 0 }) });
    const text = await metrics.registry.metrics();
    expect(sample(text, 'warren_dials_total{outcome="ok"}')).toBe(1);
    expect(sample(text, 'warren_ssh_login_attempts_total{outcome="denied"}')).toBe(1);
    expect(sample(text, "warren_ssh_connections")).toBe(0);
    expect(text).not.toContain("warren_redis_up");
  });

  it("refuses a second set of sources with an error that names the call", () => {
    const metrics = new ServerMetrics();
    const sources = { tunnelStats: () => ({ agents: 0, idleStreams: 0, streams: 0 }) };
    metrics.observe(sources);
    expect(() => metrics.observe(sources)).toThrow(/given twice \(ServerMetrics\.observe\)/);
  });
});
