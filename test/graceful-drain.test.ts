import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startApp, type App } from "./harness/apps.js";
import { CheckedLoad, startCheckedApp, summarize, type CheckedApp } from "./harness/checked-load.js";
import { agentServerList, CLUSTER_SECRET, startCluster, startClusterServer, startRedis, type ClusterServerHandle, type RedisHandle } from "./harness/cluster.js";
import { createWorkspace, eventually, httpRequest, startAgent, startServer, workspaceHost, type AgentHandle, type HttpResult, type ServerHandle } from "./harness/warren.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An app whose /slow answers after `SLOW_MS`; everything else at once. */
const SLOW_MS = 1500;
async function slowApp(): Promise<App> {
  return startApp((req, res) => {
    if (req.url?.startsWith("/slow")) {
      setTimeout(() => res.end("slow done"), SLOW_MS);
      return;
    }
    res.end("ok");
  });
}

function get(server: ServerHandle, workspace: string, port: number, path = "/"): Promise<HttpResult> {
  return httpRequest({ port: server.httpPort, host: workspaceHost(workspace, port), path, headers: { "x-warren-token": server.adminToken } });
}

function readyz(server: { observabilityPort: number }): Promise<number> {
  return httpRequest({ port: server.observabilityPort, host: "127.0.0.1", path: "/readyz" }).then(
    (r) => r.status,
    () => 0,
  );
}

describe("graceful drain of one server", () => {
  let app: App;
  let server: ServerHandle;
  let agent: AgentHandle;

  beforeAll(async () => {
    app = await slowApp();
    server = await startServer({ WARREN_DRAIN_DELAY: "700ms", WARREN_SHUTDOWN_TIMEOUT: "10s" });
    const ws = await createWorkspace(server, "drain-one", [app.port]);
    agent = await startAgent(server, ws.agentToken);
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    await app?.close();
  });

  it("on SIGTERM turns unready first while still serving, lets a slow request finish, and exits 0", async () => {
    const slow = get(server, "drain-one", app.port, "/slow");
    // The request is in flight once the agent dialed the app.
    await eventually(() => app.connections > 0, 5000, "the slow request to reach the app");
    const signalledAt = Date.now();
    server.proc.kill("SIGTERM");
    await eventually(async () => (await readyz(server)) === 503, 2000, "/readyz to turn unready");
    // Within the drain delay everything still works: load balancers are noticing.
    expect(Date.now() - signalledAt).toBeLessThan(700);
    const during = await get(server, "drain-one", app.port);
    expect(during.status).toBe(200);
    const res = await slow;
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("slow done");
    const exit = await server.proc.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    const lines = server.proc.lines;
    const step = (msg: string) => lines.findIndex((l) => String(l.msg).startsWith(msg));
    expect(step("shutting down: unready")).toBeGreaterThanOrEqual(0);
    expect(step("shutting down: no new connections")).toBeGreaterThan(step("shutting down: unready"));
    expect(step("stopped")).toBeGreaterThan(step("shutting down: no new connections"));
    // The server asked its agent to reconnect elsewhere; the agent kept the slow request going
    // on its old connection, and lives on (reconnecting) without its server.
    expect(
      agent.proc.lines.some((l) => String(l.msg).startsWith("the server asked this agent to move: connecting again") && /shutting down/.test(String(l["reason"]))),
    ).toBe(true);
    expect(agent.proc.child.exitCode).toBeNull();
  });
});

describe("graceful drain of a cluster's only server", () => {
  it("does not wait for its agents to move when no other server is alive", async () => {
    const redis = await startRedis();
    const app = await slowApp();
    const server = await startClusterServer(redis, "alone", { WARREN_SHUTDOWN_TIMEOUT: "20s" });
    const ws = await createWorkspace(server, "alone", [app.port]);
    const agent = await startAgent(server, ws.agentToken);
    try {
      const started = Date.now();
      server.proc.kill("SIGTERM");
      expect(await server.proc.exited).toEqual({ code: 0, signal: null });
      expect(Date.now() - started).toBeLessThan(5000);
      expect(server.proc.lines.some((l) => l.msg === "agents did not reconnect elsewhere in time")).toBe(false);
    } finally {
      await agent.stop();
      await server.stop();
      await app.close();
      await redis.stop();
    }
  });
});

/**
 * The reproduction: clients keep their connections on the server that stays up, which
 * forwards to the server that holds the agent; that one drains. Its GOAWAY (sent once its
 * agents have reconnected elsewhere) tells the forwarding server to send the next request of
 * each kept-alive connection to the agent's new connection; requests in flight finish.
 */
describe("drain of the server that holds the agent, with clients only on the other one", () => {
  let redis: RedisHandle;
  let app: CheckedApp;
  let servers: ClusterServerHandle[];
  let agent: AgentHandle;

  beforeAll(async () => {
    redis = await startRedis();
    app = await startCheckedApp("moving-app");
    // The settings: a 1 s drain delay and a 5 s shutdown timeout.
    servers = await startCluster(redis, ["hold", "stay"], { WARREN_DRAIN_DELAY: "1s", WARREN_SHUTDOWN_TIMEOUT: "5s", WARREN_SSH_ADDR: "off", WARREN_LOG_LEVEL: "info" });
    const ws = await createWorkspace(servers[0]!, "moving", [app.port]);
    agent = await startAgent({ agentUrl: agentServerList(servers) }, ws.agentToken, { env: { WARREN_LOG_LEVEL: "info" } });
  });

  afterAll(async () => {
    await agent?.stop();
    await Promise.all((servers ?? []).map((s) => s.stop()));
    await app?.close();
    await redis?.stop();
  });

  it("answers every request of 4 keep-alive workers correctly through the SIGTERM, and the drain ends without waiting out its timeout", async () => {
    const readyOn = () => String([...agent.proc.lines].reverse().find((l) => l["event"] === "ready")?.["serverId"]);
    const holder = servers.find((s) => s.id === readyOn())!;
    const survivor = servers.find((s) => s !== holder)!;
    await eventually(async () => (await get(survivor, "moving", app.port, "/data?seed=x&bytes=1")).status === 200, 5000, "the other server to reach the workspace");
    const load = new CheckedLoad({
      entries: () => [{ httpPort: survivor.httpPort, token: survivor.adminToken }],
      targets: [{ workspace: "moving", port: app.port, app: app.name }],
      workers: { keepalive: 4, upload: 1, download: 1, slow: 1, websocket: 2 },
      hostOf: (t) => workspaceHost(t.workspace, t.port),
      slowMs: 1500,
    });
    load.start();
    await sleep(1000);
    const signalledAt = Date.now();
    holder.proc.kill("SIGTERM");
    expect(await holder.proc.exited).toEqual({ code: 0, signal: null });
    const exitedAt = Date.now();
    await sleep(1500);
    await load.stop();

    // Every HTTP request through the surviving server was answered by the right app with the right bytes.
    const http = summarize(load.outcomes.filter((o) => o.kind !== "websocket"));
    expect({ failed: http.failed, hung: http.hung, misrouted: http.misrouted, corrupt: http.corrupt, retried: http.retried }).toEqual({
      failed: {},
      hung: 0,
      misrouted: 0,
      corrupt: 0,
      retried: 0,
    });
    // Load the whole time: before, during and after the drain.
    for (const [from, to] of [[0, signalledAt], [signalledAt, exitedAt], [exitedAt, Infinity]] as const) {
      expect(summarize(load.between(from, to).filter((o) => o.kind === "keepalive")).ok).toBeGreaterThan(4);
    }
    // Nothing was held until the shutdown timeout and cut.
    expect(holder.proc.lines.some((l) => l.msg === "shutdown timeout: closing what is still open")).toBe(false);
    // The agent moved to the surviving server at once and never exited.
    expect(readyOn()).toBe(survivor.id);
    expect(agent.proc.child.exitCode).toBeNull();
    // A WebSocket cannot move: one through the surviving server is closed once the agent has
    // moved (at most once per socket, the message in flight then is lost), and the client's
    // new one reaches the agent's new connection.
    const ws = summarize(load.outcomes.filter((o) => o.kind === "websocket"));
    expect({ misrouted: ws.misrouted, corrupt: ws.corrupt, hung: ws.hung }).toEqual({ misrouted: 0, corrupt: 0, hung: 0 });
    expect(Object.keys(ws.failed).filter((k) => k !== "ws-closed")).toEqual([]);
    expect(ws.failed["ws-closed"] ?? 0).toBeLessThanOrEqual(2);
    expect(summarize(load.between(exitedAt).filter((o) => o.kind === "websocket")).ok).toBeGreaterThan(0);
  });
});

interface Ports {
  readonly http: number;
  readonly agent: number;
  readonly observability: number;
  readonly private: number;
}

/**
 * A rolling restart of a two-server cluster under steady load, with a load balancer that, like
 * Kubernetes endpoints, sends only to servers whose /readyz says ready.
 */
describe("rolling restart of a two-server cluster", () => {
  let redis: RedisHandle;
  let app: App;
  const ids = ["roll-a", "roll-b"];
  const ports: Ports[] = [];
  const servers: ServerHandle[] = [];
  let agent: AgentHandle;

  const start = (i: number) =>
    startServer({
      WARREN_REDIS_URL: redis.url,
      WARREN_CLUSTER_SECRET: CLUSTER_SECRET,
      WARREN_SERVER_ID: ids[i],
      WARREN_HTTP_ADDR: `127.0.0.1:${ports[i]!.http}`,
      WARREN_AGENT_ADDR: `127.0.0.1:${ports[i]!.agent}`,
      WARREN_OBSERVABILITY_ADDR: `127.0.0.1:${ports[i]!.observability}`,
      WARREN_PRIVATE_ADDR: `127.0.0.1:${ports[i]!.private}`,
      WARREN_SSH_ADDR: "off",
      WARREN_LOG_LEVEL: "info",
      WARREN_DRAIN_DELAY: "800ms",
      WARREN_SHUTDOWN_TIMEOUT: "10s",
    });

  let workspaceId = "";

  beforeAll(async () => {
    redis = await startRedis();
    app = await slowApp();
    for (let i = 0; i < 2; i++) {
      ports.push({ http: await freePort(), agent: await freePort(), observability: await freePort(), private: await freePort() });
    }
    servers.push(...(await Promise.all([start(0), start(1)])));
    const ws = await createWorkspace(servers[0]!, "rolling", [app.port]);
    workspaceId = ws.id;
    agent = await startAgent({ agentUrl: servers.map((s) => s.agentUrl).join(",") }, ws.agentToken, { env: { WARREN_LOG_LEVEL: "info" } });
    // The agent's server records it in Redis just after its welcome: then both servers reach it.
    await eventually(async () => (await Promise.all(servers.map((s) => get(s, "rolling", app.port)))).every((r) => r.status === 200), 5000, "both servers to reach the workspace");
  });

  afterAll(async () => {
    await agent?.stop();
    await Promise.all(servers.map((s) => s.stop()));
    await app?.close();
    await redis?.stop();
  });

  it("loses no request, and the agent moves without ever exiting", async () => {
    // The load balancer: polls /readyz every 100 ms, sends round-robin to ready servers only.
    const ready = [true, true];
    let running = true;
    const poller = (async () => {
      while (running) {
        const states = await Promise.all(ports.map((p) => readyz({ observabilityPort: p.observability })));
        for (let i = 0; i < 2; i++) ready[i] = states[i] === 200;
        await sleep(100);
      }
    })();
    const results: Array<{ server: number; status: number; error?: string; at: number }> = [];
    let next = 0;
    const worker = async () => {
      while (running) {
        const candidates = [0, 1].filter((i) => ready[i]);
        if (candidates.length === 0) {
          await sleep(20);
          continue;
        }
        const i = candidates[next++ % candidates.length]!;
        try {
          const res = await get(servers[i]!, "rolling", app.port);
          results.push({ server: i, status: res.status, at: Date.now(), ...(res.status === 200 ? {} : { error: res.body.toString() }) });
        } catch (err) {
          results.push({ server: i, status: 0, error: (err as Error).message, at: Date.now() });
        }
        await sleep(20);
      }
    };
    const workers = [worker(), worker()];

    const slowOnes: Array<Promise<HttpResult>> = [];
    const serverLines: Array<[string, readonly Record<string, unknown>[]]> = [];
    const holder = () => {
      const line = [...agent.proc.lines].reverse().find((l) => l["event"] === "ready");
      return ids.indexOf(String(line?.["serverId"]));
    };
    for (const i of [0, 1]) {
      await sleep(700);
      const other = 1 - i;
      // Slow requests in flight as server i goes: one straight to it, one through the other
      // server (forwarded to i when i holds the agent).
      slowOnes.push(get(servers[i]!, "rolling", app.port, "/slow"), get(servers[other]!, "rolling", app.port, "/slow"));
      await sleep(100);
      const held = holder() === i;
      expect(redis.cli("HKEYS", "warren:servers").split("\n")).toContain(ids[i]);
      servers[i]!.proc.kill("SIGTERM");
      expect(await servers[i]!.proc.exited).toEqual({ code: 0, signal: null });
      if (held) expect(holder()).toBe(other);
      // It removed its presence: no server record, no claim on the workspace.
      expect(redis.cli("HKEYS", "warren:servers").split("\n")).not.toContain(ids[i]);
      expect(redis.cli("HKEYS", `warren:presence:${workspaceId}`).split("\n")).not.toContain(ids[i]);
      serverLines.push([`${ids[i]}-old`, servers[i]!.proc.lines]);
      servers[i] = await start(i);
      await eventually(() => ready[i] === true, 5000, `server ${ids[i]} back in the load balancer`);
    }
    await sleep(700);
    serverLines.push([ids[0]!, servers[0]!.proc.lines], [ids[1]!, servers[1]!.proc.lines]);
    running = false;
    await Promise.all([...workers, poller]);

    for (const slow of await Promise.all(slowOnes)) expect({ status: slow.status, body: slow.body.toString() }).toEqual({ status: 200, body: "slow done" });
    const failures = results.filter((r) => r.status !== 200);
    // On failure, the log lines around the first one say what happened.
    const t0 = failures[0]?.at ?? 0;
    const near = (who: string, lines: readonly Record<string, unknown>[]) =>
      lines.filter((l) => Math.abs(Date.parse(String(l["time"])) - t0) < 1000).map((l) => `${Date.parse(String(l["time"])) - t0}ms ${who}: ${l["msg"]}`);
    const context = failures.length === 0 ? "" : [...near("agent", agent.proc.lines), ...serverLines.flatMap(([who, lines]) => near(who, lines))].sort((a, b) => parseInt(a) - parseInt(b)).join("\n");
    expect(failures, `${JSON.stringify(failures.slice(0, 5))}\n${context}`).toEqual([]);
    // Steady load the whole time, through both servers.
    expect(results.length).toBeGreaterThan(100);
    expect(new Set(results.map((r) => r.server)).size).toBe(2);
    // Both servers were restarted, so the agent moved at least once; it never exited.
    expect(agent.proc.lines.filter((l) => l["event"] === "ready").length).toBeGreaterThanOrEqual(2);
    expect(agent.proc.child.exitCode).toBeNull();
  });
});

describe("agent connections older than WARREN_AGENT_MAX_CONNECTION_AGE", () => {
  let app: App;
  let server: ServerHandle;
  let agent: AgentHandle;

  beforeAll(async () => {
    app = await slowApp();
    server = await startServer({ WARREN_AGENT_MAX_CONNECTION_AGE: "2s" });
    const ws = await createWorkspace(server, "aging", [app.port]);
    agent = await startAgent(server, ws.agentToken);
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    await app?.close();
  });

  it("are moved by the agent's handoff: a new connection first, requests in flight finish, none fails", async () => {
    const connected = () => server.proc.lines.filter((l) => l.msg === "agent connected").length;
    expect(connected()).toBe(1);
    // Requests all along, one of them in flight across the handoff (at 1.8-2.2 s).
    const slow = get(server, "aging", app.port, "/slow");
    const statuses: number[] = [];
    const until = Date.now() + 3000;
    while (Date.now() < until) {
      statuses.push((await get(server, "aging", app.port)).status);
      await sleep(50);
    }
    expect((await slow).body.toString()).toBe("slow done");
    expect(statuses.every((s) => s === 200), statuses.join(",")).toBe(true);
    expect(connected()).toBeGreaterThanOrEqual(2);
    const moved = agent.proc.lines.find((l) => String(l.msg).startsWith("the server asked this agent to move"));
    expect(String(moved?.["reason"])).toMatch(/WARREN_AGENT_MAX_CONNECTION_AGE/);
    // Routine, not a warning.
    expect(agent.proc.lines.filter((l) => l.level === "warn" || l.level === "error").map((l) => l.msg)).toEqual([]);
    expect(agent.proc.child.exitCode).toBeNull();
  });
});
