import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startApp, type App } from "./harness/apps.js";
import { startCluster, startRedis, type ClusterServerHandle, type RedisHandle } from "./harness/cluster.js";
import { RawAgent } from "./harness/raw-agent.js";
import { callApi, createWorkspace, httpRequest, startAgent, workspaceHost, type AgentHandle } from "./harness/warren.js";

/** Revocations reach every server: what one server revokes closes what another holds. */
describe("cluster: connections bound to their credential on every server", () => {
  let redis: RedisHandle;
  let s1: ClusterServerHandle;
  let s2: ClusterServerHandle;
  let app: App;
  const agents: AgentHandle[] = [];

  beforeAll(async () => {
    app = await startApp((_req, res) => res.end("far app"), { webSocketEcho: true });
    redis = await startRedis();
    [s1, s2] = (await startCluster(redis, ["s1", "s2"])) as [ClusterServerHandle, ClusterServerHandle];
    for (const user of ["frank", "gina"]) expect((await callApi(s1, "UserService/CreateUser", { name: user })).status).toBe(200);
  });

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await Promise.all([s1, s2].filter(Boolean).map((s) => s.stop()));
    await redis?.stop();
    await app?.close();
  });

  async function accessToken(user: string): Promise<string> {
    const res = await callApi<{ token: string }>(s1, "UserService/CreateAccessToken", { user, ttlSeconds: 3600 });
    expect(res.status).toBe(200);
    return res.body.token;
  }

  it("a WebSocket forwarded through another server closes when its token is revoked", async () => {
    const token = await accessToken("frank");
    const created = await createWorkspace(s1, "far", [app.port], {}, token);
    agents.push(await startAgent(s1, created.agentToken));
    // The client talks to s2; the agent is on s1.
    const ws = new WebSocket(`ws://127.0.0.1:${s2.httpPort}/`, { headers: { host: workspaceHost("far", app.port), "x-warren-token": token } });
    const closed = new Promise<void>((resolve) => ws.once("close", () => resolve()));
    await new Promise<void>((resolve, reject) => {
      ws.once("message", () => resolve());
      ws.once("error", reject);
    });
    expect((await callApi(s1, "UserService/RevokeAccessToken", { token })).status).toBe(200);
    await closed;
    const again = await httpRequest({ port: s2.httpPort, host: workspaceHost("far", app.port), headers: { "x-warren-token": token } });
    expect(again.status).toBe(401);
  });

  it("an agent of a workspace deleted on one server cannot say hello on another and take over the new workspace of the name", async () => {
    const frank = await accessToken("frank");
    const gina = await accessToken("gina");
    const his = await createWorkspace(s1, "dev", [app.port], {}, frank);
    const stale = new RawAgent(s2.agentUrl, his.agentToken);
    try {
      await stale.openControl();
      expect((await callApi(s1, "WorkspaceService/DeleteWorkspace", { name: "dev" }, frank)).status).toBe(200);
      await createWorkspace(s1, "dev", [app.port], {}, gina);
      stale.sendHello();
      expect(await stale.welcome()).toBeUndefined();
      expect((await stale.controlEnd()).status).toBe("16");
      for (const server of [s1, s2]) {
        const res = await httpRequest({ port: server.httpPort, host: workspaceHost("dev", app.port), headers: { "x-warren-token": gina } });
        expect(res.status).toBe(503);
      }
    } finally {
      stale.destroy();
    }
  });

  it("rotating an agent token on one server disconnects the agent held by another", async () => {
    const created = await createWorkspace(s2, "turn", [app.port]);
    const agent = await startAgent(s1, created.agentToken);
    agents.push(agent);
    expect((await callApi(s2, "WorkspaceService/RotateAgentToken", { name: "turn" })).status).toBe(200);
    const exit = await agent.proc.exited;
    expect(exit.code).toBe(1);
    expect(agent.proc.lines.some((l) => l.msg === "the server refused this agent; exiting")).toBe(true);
  });
});
