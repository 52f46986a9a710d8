import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startApp, type App } from "./harness/apps.js";
import { cliHome, runCli } from "./harness/cli.js";
import { startCluster, startRedis, type ClusterServerHandle, type RedisHandle } from "./harness/cluster.js";
import { callApi, createWorkspace, httpRequest, startAgent, workspaceHost, type AgentHandle } from "./harness/warren.js";

/** Opens a WebSocket to the echo app through a server; resolves once the app said hello. */
function openSocket(server: ClusterServerHandle, host: string, token: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.httpPort}/`, { headers: { host, "x-warren-token": token } });
    ws.once("message", () => resolve(ws));
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

function closed(ws: WebSocket): Promise<number> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve(-1);
  return new Promise((resolve) => ws.once("close", (code) => resolve(code)));
}

/** Item 1 of issue 17: ports exposed and unexposed while the workspace runs, on both servers of a cluster. */
describe("runtime ports: ExposePort and UnexposePort", () => {
  let redis: RedisHandle;
  let servers: ClusterServerHandle[];
  let app: App;
  let agent: AgentHandle;
  let alice: string;
  let bob: string;
  let home: string;
  const name = "runtime";

  beforeAll(async () => {
    redis = await startRedis();
    servers = await startCluster(redis, ["p1", "p2"]);
    const [s1] = servers as [ClusterServerHandle, ClusterServerHandle];
    for (const user of ["alice", "bob"]) await callApi(s1, "UserService/CreateUser", { name: user });
    alice = (await callApi<{ token: string }>(s1, "UserService/CreateAccessToken", { user: "alice" })).body.token;
    bob = (await callApi<{ token: string }>(s1, "UserService/CreateAccessToken", { user: "bob" })).body.token;
    app = await startApp((req, res) => res.end(`app ${req.url}`), { webSocketEcho: true });
    const ws = await createWorkspace(s1, name, [], { owner: "alice" });
    // The agent holds its connection on the second server; the API is called on both.
    agent = await startAgent(servers[1]!, ws.agentToken, { env: { WARREN_PORT_DISCOVERY_INTERVAL: "0" } });
    home = cliHome();
  });

  afterAll(async () => {
    await agent?.stop();
    await Promise.all((servers ?? []).map((s) => s.stop()));
    await app?.close();
    await redis?.stop();
  });

  const get = (server: ClusterServerHandle, path = "/") =>
    httpRequest({ port: server.httpPort, host: workspaceHost(name, app.port), path, headers: { "x-warren-token": alice } });
  const cli = (server: ClusterServerHandle, args: string[]) =>
    runCli(home, [...args, "--server", `http://127.0.0.1:${server.httpPort}`, "--token", alice]);

  it("a port exposed with `warren workspace expose` is reachable at once through both servers, and unexposing closes its open connections", async () => {
    const [s1, s2] = servers as [ClusterServerHandle, ClusterServerHandle];
    expect((await get(s1)).status).toBe(403);

    const exposed = await cli(s1, ["workspace", "expose", name, String(app.port)]);
    expect(exposed.stderr).toBe("");
    expect(exposed.code).toBe(0);
    expect(exposed.stdout).toContain(`port ${app.port} of ${name} is exposed: http://${app.port}-${name}.warren.localhost:`);
    // No waiting: the next request, on either server, goes through.
    for (const server of [s1, s2]) {
      const res = await get(server, `/via-${server.id}`);
      expect(res.status, res.body.toString()).toBe(200);
      expect(res.body.toString()).toBe(`app /via-${server.id}`);
    }
    const detail = await callApi<{ workspace: { ports: Array<{ port: number }> } }>(s2, "WorkspaceService/GetWorkspace", { name }, alice);
    expect(detail.body.workspace.ports).toEqual([{ port: app.port }]);

    // Long-lived connections through each server: both are closed when the port goes.
    const sockets = [await openSocket(s1, workspaceHost(name, app.port), alice), await openSocket(s2, workspaceHost(name, app.port), alice)];
    const closes = sockets.map(closed);
    const unexposed = await cli(s2, ["workspace", "unexpose", name, String(app.port)]);
    expect(unexposed.code).toBe(0);
    expect(unexposed.stdout).toContain(`port ${app.port} of ${name} is no longer exposed`);
    await Promise.all(closes);
    for (const server of [s1, s2]) {
      const res = await get(server);
      expect(res.status).toBe(403);
      expect(res.body.toString()).toContain(`port ${app.port} is not exposed by workspace "${name}"`);
    }
  });

  it("--public exposes a port to everyone; exposing again as private takes that back", async () => {
    const [s1, s2] = servers as [ClusterServerHandle, ClusterServerHandle];
    const anonymous = (server: ClusterServerHandle) => httpRequest({ port: server.httpPort, host: workspaceHost(name, app.port) });
    expect((await cli(s1, ["workspace", "expose", name, String(app.port), "--public"])).code).toBe(0);
    expect((await anonymous(s2)).status).toBe(200);
    expect((await cli(s2, ["workspace", "expose", name, String(app.port), "--json"])).code).toBe(0);
    expect((await anonymous(s1)).status).toBe(401);
    expect((await get(s1)).status).toBe(200);
    expect((await cli(s1, ["workspace", "unexpose", name, String(app.port)])).code).toBe(0);
  });

  it("another user's ExposePort is answered exactly like a workspace that does not exist", async () => {
    const [s1] = servers as [ClusterServerHandle];
    const theirs = await callApi(s1, "WorkspaceService/ExposePort", { name, port: app.port }, bob);
    const missing = await callApi(s1, "WorkspaceService/ExposePort", { name: "no-such-workspace", port: app.port }, bob);
    expect(theirs.status).toBe(404);
    expect(theirs.body).toEqual({ code: "not_found", message: `workspace "${name}" not found` });
    expect(missing.body).toEqual({ code: "not_found", message: `workspace "no-such-workspace" not found` });
    const unexpose = await callApi(s1, "WorkspaceService/UnexposePort", { name, port: app.port }, bob);
    expect(unexpose.body).toEqual(theirs.body);
    expect((await get(s1)).status).toBe(403);
  });

  it("bad input gets a clear error: port 0, port 70000, unexposing a port that is not exposed, a missing port argument", async () => {
    const [s1] = servers as [ClusterServerHandle];
    const zero = await callApi(s1, "WorkspaceService/ExposePort", { name, port: 0 }, alice);
    expect(zero.body).toEqual({ code: "invalid_argument", message: "port: 0 is not a port number 1-65535" });
    const high = await callApi(s1, "WorkspaceService/ExposePort", { name, port: 70000 }, alice);
    expect(high.body).toEqual({ code: "invalid_argument", message: "port: 70000 is not a port number 1-65535" });
    const notExposed = await callApi(s1, "WorkspaceService/UnexposePort", { name, port: 4321 }, alice);
    expect(notExposed.body).toMatchObject({ code: "not_found", message: expect.stringContaining(`port 4321 is not exposed by workspace "${name}"`) });
    const noPort = await cli(s1, ["workspace", "expose", name]);
    expect(noPort.code).toBe(2);
    expect(noPort.stderr).toBe(`warren: workspace expose needs a port: warren workspace expose ${name} PORT\n`);
  });
});
