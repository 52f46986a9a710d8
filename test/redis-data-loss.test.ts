import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type App } from "./harness/apps.js";
import { startClusterServer, startRedis, type ClusterServerHandle, type RedisHandle } from "./harness/cluster.js";
import { callApi, createWorkspace, httpRequest, startAgent, workspaceHost, type AgentHandle } from "./harness/warren.js";

/**
 * Redis restarted without persistence comes back empty: every token and workspace is gone.
 * Nothing that was opened with them may go on working.
 */
describe("after Redis loses its data", () => {
  let redis: RedisHandle;
  let server: ClusterServerHandle;
  let app: App;
  let agent: AgentHandle | undefined;

  beforeAll(async () => {
    app = await startApp((_req, res) => res.end("the first workspace's app"));
    redis = await startRedis();
    server = await startClusterServer(redis, "s1");
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    await redis?.stop();
    await app?.close();
  });

  it("regression: agents stay connected on tokens that no longer exist, and a deleted access token keeps working from the cache", async () => {
    expect((await callApi(server, "UserService/CreateUser", { name: "carol" })).status).toBe(200);
    const token = (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "carol", ttlSeconds: 3600 })).body.token;
    const first = await createWorkspace(server, "dev", [app.port], {}, token);
    agent = await startAgent(server, first.agentToken);
    const host = workspaceHost("dev", app.port);
    const before = await httpRequest({ port: server.httpPort, host, headers: { "x-warren-token": token } });
    expect(before.status).toBe(200);

    // Restart Redis on the same port, empty.
    const port = redis.port;
    await redis.stop();
    redis = await startRedis(port);
    await server.proc.waitFor((l) => l.msg === "Redis is reachable", 30_000, "the server to reach Redis again");

    // The token is gone from the store: refused, not served from the cache.
    await eventually(async () => (await httpRequest({ port: server.httpPort, host, headers: { "x-warren-token": token } })).status === 401, "the access token to be refused");
    // The agent's token and workspace are gone: the agent is disconnected, and refused when it comes back.
    const exit = await agent.proc.exited;
    expect(exit.code).toBe(1);
    expect(agent.proc.lines.some((l) => l.msg === "the server refused this agent; exiting")).toBe(true);

    // A workspace created again with the name is a new one: the old agent does not serve it.
    expect((await callApi(server, "UserService/CreateUser", { name: "carol" })).status).toBe(200);
    const newToken = (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "carol", ttlSeconds: 3600 })).body.token;
    await createWorkspace(server, "dev", [app.port], {}, newToken);
    const res = await httpRequest({ port: server.httpPort, host, headers: { "x-warren-token": newToken } });
    expect(res.status).toBe(503);
    expect(res.body.toString()).toMatch(/workspace "dev" is not connected/);
    const got = await callApi<{ workspace: { connected?: boolean } }>(server, "WorkspaceService/GetWorkspace", { name: "dev" }, newToken);
    expect(got.body.workspace.connected ?? false).toBe(false);
  });
});

/** Polls `check` until it holds (a state reached by the server on its own schedule). */
async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
