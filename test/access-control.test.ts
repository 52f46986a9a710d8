import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startApp, type App } from "./harness/apps.js";
import { callApi, httpRequest, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

/** Users, access tokens and who reaches which workspace, by API, HTTP and WebSocket. */
describe("users and access control", () => {
  let server: ServerHandle;
  let app: App;
  let publicApp: App;
  let aliceToken: string;
  let bobToken: string;
  const agents: AgentHandle[] = [];

  beforeAll(async () => {
    app = await startApp((req, res) => res.end(JSON.stringify({ who: "private", url: req.url })), { webSocketEcho: true });
    publicApp = await startApp((_req, res) => res.end("public hello"));
    server = await startServer();
    for (const name of ["alice", "bob"]) {
      const created = await callApi<{ user: { name: string } }>(server, "UserService/CreateUser", { name });
      expect(created.status).toBe(200);
      expect(created.body.user.name).toBe(name);
    }
    const token = async (user: string) => {
      const res = await callApi<{ token: string; id: string; expireTime: string }>(server, "UserService/CreateAccessToken", { user, ttlSeconds: 3600 });
      expect(res.status).toBe(200);
      expect(res.body.token).toMatch(/^wut_[0-9a-f]{16}[A-Za-z0-9_-]{43}$/);
      expect(res.body.token.slice(4, 20)).toBe(res.body.id);
      return res.body.token;
    };
    aliceToken = await token("alice");
    bobToken = await token("bob");
    // Each user creates a workspace with their own token and so owns it.
    for (const [name, tok] of [["alice-ws", aliceToken], ["bob-ws", bobToken]] as const) {
      const res = await callApi<{ workspace: { owner: string }; agentToken: string }>(
        server,
        "WorkspaceService/CreateWorkspace",
        { name, ports: [{ port: app.port }, { port: publicApp.port, public: true }] },
        tok,
      );
      expect(res.status).toBe(200);
      expect(res.body.workspace.owner).toBe(name.split("-")[0]);
      agents.push(await startAgent(server, res.body.agentToken));
    }
  });

  afterAll(async () => {
    for (const a of agents) await a.stop();
    await server?.stop();
    await app?.close();
    await publicApp?.close();
  });

  it("lists users for the admin only", async () => {
    const list = await callApi<{ users: Array<{ name: string }> }>(server, "UserService/ListUsers", {});
    expect(list.body.users.map((u) => u.name)).toEqual(["alice", "bob"]);
    const denied = await callApi<{ code: string }>(server, "UserService/ListUsers", {}, aliceToken);
    expect(denied.status).toBe(403);
    expect(denied.body.code).toBe("permission_denied");
    const dup = await callApi<{ code: string }>(server, "UserService/CreateUser", { name: "alice" });
    expect(dup.body.code).toBe("already_exists");
  });

  it("answers another user's workspace by API exactly like a missing one", async () => {
    const mine = await callApi<{ workspace: { name: string } }>(server, "WorkspaceService/GetWorkspace", { name: "alice-ws" }, aliceToken);
    expect(mine.status).toBe(200);
    const list = await callApi<{ workspaces: Array<{ name: string }> }>(server, "WorkspaceService/ListWorkspaces", {}, aliceToken);
    expect(list.body.workspaces.map((w) => w.name)).toEqual(["alice-ws"]);
    for (const method of ["GetWorkspace", "StopWorkspace", "StartWorkspace", "RestartWorkspace", "TerminateWorkspace", "DeleteWorkspace", "RotateAgentToken"]) {
      const theirs = await callApi<{ code: string; message: string }>(server, `WorkspaceService/${method}`, { name: "bob-ws" }, aliceToken);
      const missing = await callApi<{ code: string; message: string }>(server, `WorkspaceService/${method}`, { name: "no-ws" }, aliceToken);
      expect(theirs.status, method).toBe(404);
      expect(theirs.body).toEqual({ code: "not_found", message: 'workspace "bob-ws" not found' });
      expect(missing.body).toEqual({ code: "not_found", message: 'workspace "no-ws" not found' });
    }
    // The admin sees both.
    const all = await callApi<{ workspaces: Array<{ name: string }> }>(server, "WorkspaceService/ListWorkspaces", {});
    expect(all.body.workspaces.map((w) => w.name)).toEqual(["alice-ws", "bob-ws"]);
  });

  it("answers another user's workspace by HTTP exactly like a missing one", async () => {
    const get = (workspace: string, headers: Record<string, string>) => httpRequest({ port: server.httpPort, host: workspaceHost(workspace, app.port), headers });
    const own = await get("alice-ws", { "x-warren-token": aliceToken });
    expect(own.status).toBe(200);
    expect(JSON.parse(own.body.toString()).who).toBe("private");
    const theirs = await get("bob-ws", { "x-warren-token": aliceToken });
    const missing = await get("no-ws", { "x-warren-token": aliceToken });
    expect(theirs.status).toBe(404);
    expect(theirs.body.toString()).toBe('workspace "bob-ws" not found\n');
    expect(missing.status).toBe(404);
    expect(missing.body.toString()).toBe('workspace "no-ws" not found\n');
    // Without credentials, existing and missing workspaces look the same too.
    expect((await get("bob-ws", {})).status).toBe(401);
    expect((await get("no-ws", {})).status).toBe(401);
    // The admin reaches every workspace.
    expect((await get("bob-ws", { "x-warren-token": server.adminToken })).status).toBe(200);
  });

  it("answers another user's workspace by WebSocket with 404 and lets the owner in", async () => {
    const upgrade = (workspace: string, token: string) =>
      new Promise<{ status: number; first?: string }>((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${server.httpPort}/`, { headers: { host: workspaceHost(workspace, app.port), "x-warren-token": token } });
        ws.on("unexpected-response", (_req, res) => {
          resolve({ status: res.statusCode ?? 0 });
          ws.terminate();
        });
        ws.on("message", (data: Buffer) => {
          resolve({ status: 101, first: data.toString() });
          ws.close();
        });
        ws.on("error", () => resolve({ status: -1 }));
      });
    expect((await upgrade("bob-ws", aliceToken)).status).toBe(404);
    expect((await upgrade("no-ws", aliceToken)).status).toBe(404);
    const own = await upgrade("alice-ws", aliceToken);
    expect(own.status).toBe(101);
    expect(JSON.parse(own.first!)).toEqual({ hello: workspaceHost("alice-ws", app.port) });
  });

  it("lets everyone reach a public port without login", async () => {
    for (const workspace of ["alice-ws", "bob-ws"]) {
      const res = await httpRequest({ port: server.httpPort, host: workspaceHost(workspace, publicApp.port), headers: { accept: "text/html" } });
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe("public hello");
    }
  });

  it("lets the admin create a workspace for a user, and no user for another", async () => {
    const forBob = await callApi<{ workspace: { owner: string } }>(server, "WorkspaceService/CreateWorkspace", { name: "made-for-bob", ports: [], owner: "bob" });
    expect(forBob.body.workspace.owner).toBe("bob");
    const bobSees = await callApi(server, "WorkspaceService/GetWorkspace", { name: "made-for-bob" }, bobToken);
    expect(bobSees.status).toBe(200);
    const sneaky = await callApi<{ code: string; message: string }>(server, "WorkspaceService/CreateWorkspace", { name: "sneaky", ports: [], owner: "bob" }, aliceToken);
    expect(sneaky.status).toBe(403);
    expect(sneaky.body.message).toMatch(/^owner:/);
  });

  it("validates user input, naming the field", async () => {
    const cases: Array<[string, unknown, number, string, RegExp]> = [
      ["CreateUser", { name: "Bad Name" }, 400, "invalid_argument", /^name: "Bad Name" is not a valid user name/],
      ["CreateUser", { name: "" }, 400, "invalid_argument", /^name: required/],
      ["CreateUser", { name: "carol", colour: "red" }, 400, "invalid_argument", /colour/],
      ["CreateUser", { name: "x".repeat(100_000) }, 400, "invalid_argument", /^name: "x{80}" is not a valid user name/],
      ["CreateAccessToken", { user: "nobody", ttlSeconds: 60 }, 404, "not_found", /^user "nobody" not found/],
      ["CreateAccessToken", { user: "alice", ttlSeconds: 999_999_999 }, 400, "invalid_argument", /^ttlSeconds: 999999999 is out of range/],
      ["CreateAccessToken", { user: "alice", ttlSeconds: -5 }, 400, "invalid_argument", /ttl_seconds/],
      ["RevokeAccessToken", {}, 400, "invalid_argument", /^id: required/],
      ["RevokeAccessToken", { id: "xyz" }, 400, "invalid_argument", /^id: "xyz" is not a token id/],
      ["RevokeAccessToken", { id: "0123456789abcdef" }, 404, "not_found", /access token "0123456789abcdef" not found/],
    ];
    for (const [method, body, status, code, message] of cases) {
      const res = await callApi<{ code: string; message: string }>(server, `UserService/${method}`, body);
      expect(res.status, `${method} ${JSON.stringify(body).slice(0, 80)}`).toBe(status);
      expect(res.body.code).toBe(code);
      expect(res.body.message).toMatch(message);
    }
  });

  it("an access token stops working when it expires, by API and by HTTP", async () => {
    const created = await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "bob", ttlSeconds: 1 });
    const token = created.body.token;
    expect((await callApi(server, "WorkspaceService/ListWorkspaces", {}, token)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1300));
    const api = await callApi<{ code: string }>(server, "WorkspaceService/ListWorkspaces", {}, token);
    expect(api.status).toBe(401);
    expect(api.body.code).toBe("unauthenticated");
    const http = await httpRequest({ port: server.httpPort, host: workspaceHost("bob-ws", app.port), headers: { "x-warren-token": token } });
    expect(http.status).toBe(401);
  });

  it("revoking an access token locks its user out at once", async () => {
    const created = await callApi<{ token: string; id: string }>(server, "UserService/CreateAccessToken", { user: "bob", ttlSeconds: 600 });
    const token = created.body.token;
    expect((await callApi(server, "WorkspaceService/ListWorkspaces", {}, token)).status).toBe(200);
    expect((await callApi(server, "UserService/RevokeAccessToken", { id: created.body.id })).status).toBe(200);
    expect((await callApi(server, "WorkspaceService/ListWorkspaces", {}, token)).status).toBe(401);
    const http = await httpRequest({ port: server.httpPort, host: workspaceHost("bob-ws", app.port), headers: { "x-warren-token": token } });
    expect(http.status).toBe(401);
    // By the token itself, too.
    const other = await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "bob" });
    expect((await callApi(server, "UserService/RevokeAccessToken", { token: other.body.token })).status).toBe(200);
    expect((await callApi(server, "WorkspaceService/ListWorkspaces", {}, other.body.token)).status).toBe(401);
  });
});
