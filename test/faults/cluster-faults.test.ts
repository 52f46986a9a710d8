import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LoadSummary } from "../harness/checked-load.js";
import { FaultCluster, type FaultReport, type Footprint } from "../harness/fault-cluster.js";

/**
 * The fault suite (issue 14): two servers, Redis, two workspaces, checked load of every kind
 * (keep-alive, new-connection, upload, download, WebSocket, slow requests; every answer checked
 * for the right app and its bytes) through a load balancer that follows /readyz, while one
 * fault at a time hits the cluster. One cluster for the whole file, faults in sequence, short
 * phases: an app is down for 5 s here (the run used 30 s; the soak bench,
 * `npm run bench -- --only soak`, runs longer).
 */

/** The failures of a window, for a test's message. */
function why(report: FaultReport): string {
  const at = (t: number) => `${t - report.faultAt}ms`;
  return [
    `${report.fault}: ${JSON.stringify(report.all)}`,
    ...report.failures.map((f) => `${at(f.at)} ${f.kind} to ${f.app} via ${f.entry}: ${f.result} after ${f.ms} ms${f.misrouted ? " (misrouted)" : ""}${f.corrupt ? " (corrupt)" : ""}`),
    ...report.warnings,
  ].join("\n");
}

function clean(summary: LoadSummary): Pick<LoadSummary, "failed" | "hung" | "misrouted" | "corrupt"> {
  return { failed: summary.failed, hung: summary.hung, misrouted: summary.misrouted, corrupt: summary.corrupt };
}

const NOTHING_LOST = { failed: {}, hung: 0, misrouted: 0, corrupt: 0 };

/** A WebSocket cannot move off a server that drains: each open one may be closed once (and its client reconnects). */
function withoutWebSocketCloses(summary: LoadSummary, openWebSockets: number): LoadSummary {
  const closes = summary.failed["ws-closed"] ?? 0;
  expect(closes).toBeLessThanOrEqual(openWebSockets);
  const failed = { ...summary.failed };
  delete failed["ws-closed"];
  return { ...summary, failed };
}

describe("checked load through faults (two servers, Redis, two workspaces)", () => {
  let cluster: FaultCluster;
  let baseline: Footprint;

  beforeAll(async () => {
    cluster = await FaultCluster.start({ appDownMs: 5000 });
    cluster.load.start();
    await new Promise((r) => setTimeout(r, 2000));
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it("serves the load without a failure before any fault", () => {
    const outcomes = cluster.load.between(0);
    expect(outcomes.length).toBeGreaterThan(5);
    expect(outcomes.filter((o) => o.result !== "ok" || o.misrouted || o.corrupt)).toEqual([]);
  });

  it("SIGTERM of each server in turn (a rolling restart) loses no request", async () => {
    for (const i of [0, 1]) {
      const report = await cluster.sigterm(i);
      expect(clean(withoutWebSocketCloses(report.all, 2)), why(report)).toEqual(NOTHING_LOST);
      expect(report.all.ok).toBeGreaterThan(20);
    }
  }, 90_000);

  it("kill -9 of the server holding an agent: no misroute, no checksum error, and the load recovers", async () => {
    const report = await cluster.kill9Holder();
    expect({ misrouted: report.all.misrouted, corrupt: report.all.corrupt, hung: report.all.hung }, why(report)).toEqual({ misrouted: 0, corrupt: 0, hung: 0 });
    // Failures (resets of connections to the killed server, 503 until the agent is back) stop
    // within seconds of the server's restart: the agent reconnects to the other server at once.
    expect(report.recoveryMs, why(report)).toBeLessThan(10_000);
    baseline = await cluster.quietFootprint();
  }, 90_000);

  it("Redis stopped (SIGSTOP) for 5 s: no misroute, no hung request, recovery once it answers", async () => {
    const report = await cluster.redisStop(5000);
    expect({ misrouted: report.all.misrouted, corrupt: report.all.corrupt, hung: report.all.hung }, why(report)).toEqual({ misrouted: 0, corrupt: 0, hung: 0 });
    // Only fast answers while Redis is away (503: the cluster state cannot be read), never a reset.
    expect(Object.keys(report.all.failed).filter((k) => k !== "503" && k !== "ws-refused"), why(report)).toEqual([]);
    expect(report.recoveryMs, why(report)).toBeLessThan(3000);
  }, 60_000);

  it("an agent frozen (SIGSTOP) for 10 s: its requests are answered, not hung; the other workspace never notices", async () => {
    const report = await cluster.agentStop(10_000);
    expect(clean(report.bystanders), why(report)).toEqual(NOTHING_LOST);
    expect({ misrouted: report.all.misrouted, corrupt: report.all.corrupt, hung: report.all.hung }, why(report)).toEqual({ misrouted: 0, corrupt: 0, hung: 0 });
    // The stall is seen within the liveness bound (2 s + 2 s by default): requests waiting on
    // the frozen agent are answered then, long before it wakes up (slack for a loaded machine).
    const frozen = cluster.load.between(report.faultAt, report.undoneAt).filter((o) => o.app === cluster.targets[0]!.app);
    expect(Math.max(...frozen.map((o) => o.ms)), why(report)).toBeLessThan(8000);
    expect(frozen.filter((o) => o.result !== "ok").length, why(report)).toBeGreaterThan(0);
    expect(report.recoveryMs, why(report)).toBeLessThan(5000);
  }, 60_000);

  it("an agent killed (kill -9) and started again: the other workspace never notices, its own recovers once it is back", async () => {
    const report = await cluster.agentKill();
    expect(clean(report.bystanders), why(report)).toEqual(NOTHING_LOST);
    expect({ misrouted: report.all.misrouted, corrupt: report.all.corrupt, hung: report.all.hung }, why(report)).toEqual({ misrouted: 0, corrupt: 0, hung: 0 });
    // From the new agent's "ready": presence and the servers' caches of "not connected" follow within seconds.
    expect(report.recoveryMs, why(report)).toBeLessThan(5000);
  }, 60_000);

  it("an app down for 5 s: its requests get 502 at once, the agent stays connected, the other workspace never notices", async () => {
    const report = await cluster.appDown();
    expect(clean(report.bystanders), why(report)).toEqual(NOTHING_LOST);
    expect(report.all.hung, why(report)).toBe(0);
    // 502 for what asks while it is down; an answer the app was sending when it went is cut (a reset).
    expect(Object.keys(report.all.failed).filter((k) => !["502", "ECONNRESET", "ws-closed", "ws-refused"].includes(k)), why(report)).toEqual([]);
    expect(report.agentReconnected).toBe(false);
    expect(report.recoveryMs, why(report)).toBeLessThan(2000);
  }, 60_000);

  it("a burst of 300 one-second requests: every one answered correctly, and the load around it too", async () => {
    const report = await cluster.burst(300);
    expect(clean(report.own!), why(report)).toEqual(NOTHING_LOST);
    expect(report.own!.ok).toBe(300);
    expect(clean(report.all), why(report)).toEqual(NOTHING_LOST);
  }, 60_000);

  it("slow clients (reading stalled for 3 s) get every byte, and hold up nobody else", async () => {
    const report = await cluster.slowClients(10);
    expect(clean(report.own!), why(report)).toEqual(NOTHING_LOST);
    expect(report.own!.ok).toBe(10);
    expect(clean(report.all), why(report)).toEqual(NOTHING_LOST);
  }, 60_000);

  it("descriptors and memory of the servers are back near where they were before the later faults", async () => {
    const after = await cluster.quietFootprint();
    for (const [id, before] of Object.entries(baseline.servers)) {
      const now = after.servers[id]!;
      expect(now.fds, `${id} descriptors: ${before.fds} -> ${now.fds}`).toBeLessThanOrEqual(before.fds + 20);
      // The allocator keeps its high-water mark after the burst: a bound, not an equality.
      expect(now.rssMb, `${id} RSS: ${before.rssMb} -> ${now.rssMb} MiB`).toBeLessThanOrEqual(before.rssMb + 96);
    }
  }, 30_000);
});
