import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startApp, type App } from "./harness/apps.js";
import { agentServerList, startCluster, startRedis, type ClusterServerHandle, type RedisHandle } from "./harness/cluster.js";
import { createWorkspace, eventually, httpRequest, startAgent, workspaceHost, type AgentHandle, type HttpResult } from "./harness/warren.js";

/** Bound for "never hangs": far above any answer Warren should give, far below a hang. */
const HANG_MS = 10_000;

interface Timed {
  readonly status: number;
  readonly body: string;
  readonly ms: number;
}

async function timedGet(server: ClusterServerHandle, workspace: string, port: number): Promise<Timed> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const res = await Promise.race<HttpResult | "hang">([
    httpRequest({ port: server.httpPort, host: workspaceHost(workspace, port), headers: { "x-warren-token": server.adminToken } }).catch(
      (err: Error): HttpResult => ({ status: 0, headers: {}, body: Buffer.from(err.message) }),
    ),
    new Promise<"hang">((resolve) => (timer = setTimeout(() => resolve("hang"), HANG_MS))),
  ]);
  clearTimeout(timer);
  if (res === "hang") return { status: -1, body: "hung", ms: Date.now() - started };
  return { status: res.status, body: res.body.toString(), ms: Date.now() - started };
}

/** Opens a WebSocket (a fresh dial every time) and resolves with the HTTP status of the answer. */
function webSocketStatus(server: ClusterServerHandle, workspace: string, port: number): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.httpPort}/`, { headers: { host: workspaceHost(workspace, port), "x-warren-token": server.adminToken } });
    const timer = setTimeout(() => {
      ws.terminate();
      resolve(-1);
    }, HANG_MS);
    ws.on("open", () => {
      clearTimeout(timer);
      ws.close();
      resolve(101);
    });
    ws.on("unexpected-response", (_req, res) => {
      clearTimeout(timer);
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    ws.on("error", () => {
      clearTimeout(timer);
      resolve(0);
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("cluster failures: a Redis outage, a killed server", () => {
  let redis: RedisHandle;
  let servers: ClusterServerHandle[];
  let stayApp: App;
  let moverApp: App;
  const agents: AgentHandle[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    servers = await startCluster(redis, ["s1", "s2", "s3"]);
    stayApp = await startApp((_req, res) => res.end(JSON.stringify({ workspace: "stay" })), { webSocketEcho: true });
    moverApp = await startApp((_req, res) => res.end(JSON.stringify({ workspace: "mover" })));
    const stay = await createWorkspace(servers[0]!, "stay", [stayApp.port]);
    const mover = await createWorkspace(servers[0]!, "mover", [moverApp.port]);
    // "stay" knows s1 only; "mover" knows every server and picks one at random.
    agents.push(await startAgent(servers[0]!, stay.agentToken));
    agents.push(await startAgent({ agentUrl: agentServerList(servers) }, mover.agentToken));
  });

  afterAll(async () => {
    redis?.resume();
    await Promise.all(agents.map((a) => a.stop()));
    await Promise.all((servers ?? []).map((s) => s.stop()));
    await stayApp?.close();
    await moverApp?.close();
    await redis?.stop();
  });

  it("Redis stopped for 10 s: same-server requests work, cross-server ones fail fast with 503, all recovers", async () => {
    const [s1, s2] = servers as [ClusterServerHandle, ClusterServerHandle];
    await eventually(async () => (await timedGet(s2, "stay", stayApp.port)).status === 200, 5000, "stay through s2");

    redis.pause();
    const pausedAt = Date.now();
    try {
      // Phase 1: requests to the agent s1 holds keep working from s1's cached workspace record.
      // (s2 is left alone meanwhile, so that its kept-alive forwarded connection idles out.)
      while (Date.now() - pausedAt < 5000) {
        const r = await timedGet(s1, "stay", stayApp.port);
        expect(r.status, r.body).toBe(200);
        expect(JSON.parse(r.body)).toEqual({ workspace: "stay" });
        await sleep(250);
      }
      // Phase 2: s2 cannot know where "stay" is: a fast 503 with a clear message, never a hang.
      let crossTries = 0;
      while (Date.now() - pausedAt < 9500) {
        const cross = await timedGet(s2, "stay", stayApp.port);
        expect(cross.status, cross.body).toBe(503);
        expect(cross.body).toMatch(/workspace "stay" is not connected to this server.*cannot be read now/);
        expect(cross.ms).toBeLessThan(3000);
        expect(await webSocketStatus(s2, "stay", stayApp.port)).toBe(503);
        const same = await timedGet(s1, "stay", stayApp.port);
        expect(same.status, same.body).toBe(200);
        crossTries++;
        await sleep(250);
      }
      expect(crossTries).toBeGreaterThan(2);
      // Readiness does not follow Redis (a load balancer must not drain every server at once).
      const ready = await httpRequest({ port: s1.observabilityPort, host: "127.0.0.1", path: "/readyz" });
      expect(ready.status).toBe(200);
      const m = (await httpRequest({ port: s2.observabilityPort, host: "127.0.0.1", path: "/metrics" })).body.toString();
      expect(m).toMatch(/^warren_redis_up 0$/m);
      expect(m).toMatch(/^warren_redis_errors_total\{operation="[A-Za-z ]+"\} [1-9]/m);
    } finally {
      redis.resume();
    }
    // Back without restarting anything: forwarding, writes and new agents work again.
    await eventually(async () => (await timedGet(s2, "stay", stayApp.port)).status === 200, 10_000, "stay through s2 after Redis returned");
    await eventually(async () => (await webSocketStatus(servers[2]!, "stay", stayApp.port)) === 101, 10_000, "WebSocket through s3 after Redis returned");
    const fresh = await createWorkspace(s2, "after-outage", [stayApp.port]);
    agents.push(await startAgent(servers[2]!, fresh.agentToken));
    await eventually(async () => (await timedGet(s1, "after-outage", stayApp.port)).status === 200, 5000, "new workspace through s1");
    const m = (await httpRequest({ port: s2.observabilityPort, host: "127.0.0.1", path: "/metrics" })).body.toString();
    expect(m).toMatch(/^warren_redis_up 1$/m);
  });

  it("kill -9 of the server holding an agent: it moves to another, requests fail fast meanwhile and recover", async () => {
    const mover = agents[1]!;
    const first = await mover.proc.waitFor((l) => l["event"] === "ready");
    const holder = servers.find((s) => s.id === first["serverId"])!;
    const survivors = servers.filter((s) => s !== holder);
    for (const s of survivors) {
      await eventually(async () => (await timedGet(s, "mover", moverApp.port)).status === 200, 5000, `mover through ${s.id}`);
    }
    const readyLines = mover.proc.lines.filter((l) => l["event"] === "ready").length;

    holder.proc.kill("SIGKILL");
    const killedAt = Date.now();
    const results: Array<Timed & { via: string; at: number }> = [];
    const recoveredAt = new Map<string, number>();
    await Promise.all(
      survivors.map(async (s) => {
        let streak = 0;
        while (Date.now() - killedAt < 25_000) {
          const r = await timedGet(s, "mover", moverApp.port);
          results.push({ ...r, via: s.id, at: Date.now() - killedAt });
          streak = r.status === 200 ? streak + 1 : 0;
          if (streak === 3) {
            recoveredAt.set(s.id, Date.now() - killedAt);
            return;
          }
          await sleep(100);
        }
      }),
    );
    for (const r of results) {
      expect(r.status, `${r.via} at ${r.at} ms: ${r.status} ${r.body}`).not.toBe(-1);
      expect([200, 502, 503], `${r.via} at ${r.at} ms: ${r.status} ${r.body}`).toContain(r.status);
      if (r.status === 200) expect(JSON.parse(r.body)).toEqual({ workspace: "mover" });
      expect(r.ms).toBeLessThan(HANG_MS);
    }
    // Recovered within a few seconds on every surviving server.
    for (const s of survivors) expect(recoveredAt.get(s.id), `${s.id} never recovered: ${JSON.stringify(results.slice(-5))}`).toBeLessThan(15_000);
    // The agent moved to another server of its list.
    const again = await mover.proc.waitFor((l) => l["event"] === "ready" && mover.proc.lines.filter((x) => x["event"] === "ready").indexOf(l) >= readyLines);
    expect(again["serverId"]).not.toBe(holder.id);
  });
});
