import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startApp, type App } from "./harness/apps.js";
import { startCluster, startRedis, type ClusterServerHandle, type RedisHandle } from "./harness/cluster.js";
import { clientOptions, ensureTestUsers, IS_ROOT, passwordOptions, run, SSH_EMPTY_PASSWORD_USER, startSshd, type Sshd } from "./harness/sshd.js";
import { callApi, createWorkspace, eventually, httpRequest, startAgent, workspaceHost, type AgentHandle } from "./harness/warren.js";

/** Every series a server exports (cluster mode), by name: the contract operators build dashboards on. */
const SERIES = [
  "warren_agents_connected",
  "warren_agent_connections_total",
  "warren_tunnel_streams",
  "warren_dials_total",
  "warren_tunnel_bytes_total",
  "warren_http_requests_total",
  "warren_http_request_duration_seconds",
  "warren_http_requests_in_flight",
  "warren_websocket_upgrades_total",
  "warren_websockets_open",
  "warren_ssh_connections",
  "warren_ssh_sessions",
  "warren_ssh_login_attempts_total",
  "warren_forwards_total",
  "warren_forwarded_dials_total",
  "warren_redis_up",
  "warren_redis_errors_total",
  "warren_redis_operation_duration_seconds",
  "warren_draining",
  "warren_build_info",
  // Default process metrics.
  "process_cpu_user_seconds_total",
  "process_resident_memory_bytes",
  "nodejs_eventloop_lag_seconds",
];

const WS = "metrics-ws";
const BODY = "x".repeat(200_000);

async function scrape(server: ClusterServerHandle): Promise<string> {
  return (await httpRequest({ port: server.observabilityPort, host: "127.0.0.1", path: "/metrics" })).body.toString();
}

/** The value of one series (labels in the order the exporter writes them), 0 when absent. */
function value(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

describe("metrics", () => {
  let redis: RedisHandle;
  let servers: ClusterServerHandle[];
  let app: App;
  let agent: AgentHandle;
  let sshd: Sshd | undefined;

  beforeAll(async () => {
    redis = await startRedis();
    servers = await startCluster(redis, ["m1", "m2"]);
    app = await startApp((_req, res) => res.end(BODY), { webSocketEcho: true });
    if (IS_ROOT) {
      ensureTestUsers();
      sshd = await startSshd();
    }
    const ws = await createWorkspace(servers[0]!, WS, [app.port], sshd ? { sshPort: sshd.port, sshUser: SSH_EMPTY_PASSWORD_USER } : {});
    // The agent holds on to m1: everything through m2 is a cluster forward.
    agent = await startAgent(servers[0]!, ws.agentToken);
    await eventually(
      async () => (await httpRequest({ port: servers[1]!.httpPort, host: workspaceHost(WS, app.port), headers: { "x-warren-token": servers[1]!.adminToken } })).status === 200,
      5000,
      "m2 to reach the workspace",
    );
  });

  afterAll(async () => {
    await agent?.stop();
    await Promise.all((servers ?? []).map((s) => s.stop()));
    await sshd?.stop();
    await app?.close();
    await redis?.stop();
  });

  it("exposes every named series, with bounded labels", async () => {
    for (const server of servers) {
      const text = await scrape(server);
      for (const name of SERIES) expect(text, name).toMatch(new RegExp(`^# TYPE ${name} `, "m"));
      // Never a workspace (or user) name as a label value.
      expect(text).not.toContain(WS);
      for (const line of text.split("\n").filter((l) => l.startsWith("warren_"))) {
        for (const [, label] of line.matchAll(/([a-z_]+)="/g)) expect(["outcome", "state", "direction", "code_class", "target", "operation", "le", "version", "node"]).toContain(label);
      }
    }
  });

  it("names the build in warren_build_info: the server's version and its Node.js", async () => {
    const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
    const text = await scrape(servers[0]!);
    expect(text).toContain(`warren_build_info{version="${version}",node="${process.version}"} 1\n`);
  });

  it("moves with HTTP, WebSocket and cluster-forwarded traffic", async () => {
    const [m1, m2] = servers as [ClusterServerHandle, ClusterServerHandle];
    const before1 = await scrape(m1);
    const before2 = await scrape(m2);
    const headers = { "x-warren-token": m2.adminToken };
    for (let i = 0; i < 3; i++) {
      const res = await httpRequest({ port: m2.httpPort, host: workspaceHost(WS, app.port), headers });
      expect(res.body.length).toBe(BODY.length);
    }
    expect((await httpRequest({ port: m2.httpPort, host: workspaceHost(WS, app.port) })).status).toBe(401);
    expect((await callApi(m2, "WorkspaceService/GetWorkspace", { name: WS })).status).toBe(200);

    const ws = new WebSocket(`ws://127.0.0.1:${m2.httpPort}/`, { headers: { host: workspaceHost(WS, app.port), ...headers } });
    await new Promise<void>((resolve, reject) => {
      ws.once("message", () => resolve());
      ws.once("error", reject);
    });
    const during = await scrape(m2);
    expect(value(during, "warren_websockets_open")).toBe(1);
    ws.close();
    await eventually(async () => value(await scrape(m2), "warren_websockets_open") === 0, 5000, "the WebSocket to close");

    const after1 = await scrape(m1);
    const after2 = await scrape(m2);
    const delta = (before: string, after: string, series: string) => value(after, series) - value(before, series);
    // m2, where the traffic came in.
    expect(delta(before2, after2, 'warren_http_requests_total{code_class="2xx",target="workspace"}')).toBe(3);
    expect(delta(before2, after2, 'warren_http_requests_total{code_class="4xx",target="workspace"}')).toBe(1);
    expect(delta(before2, after2, 'warren_http_requests_total{code_class="2xx",target="root"}')).toBeGreaterThanOrEqual(1);
    expect(delta(before2, after2, 'warren_http_request_duration_seconds_count{target="workspace"}')).toBe(4);
    expect(delta(before2, after2, 'warren_websocket_upgrades_total{outcome="ok"}')).toBe(1);
    // Kept-alive HTTP connections to the app are reused: the WebSocket needs a dial of its own.
    expect(delta(before2, after2, 'warren_forwards_total{outcome="ok"}')).toBeGreaterThanOrEqual(1);
    expect(delta(before2, after2, 'warren_tunnel_bytes_total{direction="in"}')).toBeGreaterThanOrEqual(3 * BODY.length);
    expect(delta(before2, after2, 'warren_tunnel_bytes_total{direction="out"}')).toBeGreaterThan(0);
    expect(value(after2, "warren_redis_up")).toBe(1);
    expect(value(after2, "warren_draining")).toBe(0);
    // m1, which holds the agent and dialed for m2.
    expect(delta(before1, after1, 'warren_forwarded_dials_total{outcome="ok"}')).toBeGreaterThanOrEqual(1);
    expect(delta(before1, after1, 'warren_dials_total{outcome="ok"}')).toBeGreaterThanOrEqual(1);
    expect(value(after1, "warren_agents_connected")).toBe(1);
    expect(value(after1, 'warren_tunnel_streams{state="idle"}')).toBeGreaterThanOrEqual(1);
    expect(value(after1, "warren_agent_connections_total")).toBeGreaterThanOrEqual(1);
    // Redis latency is recorded per operation (presence refreshes run every 5 s, lookups on forwards).
    expect(after2).toMatch(/^warren_redis_operation_duration_seconds_count\{operation="[a-zA-Z ]+"\} [1-9]/m);
  });

  it.skipIf(!IS_ROOT)("moves with SSH sessions forwarded to the agent's server", async () => {
    const m2 = servers[1]!;
    const before = await scrape(m2);
    const session = run("sshpass", ["-p", m2.adminToken, "ssh", ...clientOptions(), ...passwordOptions(), "-p", String(m2.sshPort), `${WS}@127.0.0.1`, "sleep 1; echo done"]);
    await eventually(async () => value(await scrape(m2), "warren_ssh_sessions") === 1, 5000, "the SSH session to show");
    const r = await session;
    expect(r.stdout, r.stderr).toBe("done\n");
    const after = await scrape(m2);
    expect(value(after, 'warren_ssh_login_attempts_total{outcome="ok"}') - value(before, 'warren_ssh_login_attempts_total{outcome="ok"}')).toBe(1);
    expect(value(after, 'warren_tunnel_bytes_total{direction="out"}')).toBeGreaterThan(value(before, 'warren_tunnel_bytes_total{direction="out"}'));
    await eventually(async () => value(await scrape(m2), "warren_ssh_sessions") === 0, 5000, "the SSH session to end");
  });
});
