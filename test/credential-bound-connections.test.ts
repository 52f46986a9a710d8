import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startApp, type App } from "./harness/apps.js";
import { callApi, createWorkspace, httpRequest, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

/**
 * Every long-lived connection lives only as long as the credential that opened it: revoking
 * the access token, the agent token expiring, or the workspace going closes what is open.
 */
describe("connections bound to their credential", () => {
  let server: ServerHandle;
  let app: App;
  let agent: AgentHandle;

  beforeAll(async () => {
    // /stream answers with one chunk and never finishes: a download in flight.
    app = await startApp(
      (req, res) => {
        if (req.url === "/stream") {
          res.writeHead(200, { "content-type": "text/plain" });
          res.write("first chunk\n");
          return;
        }
        res.end("ok");
      },
      { webSocketEcho: true },
    );
    server = await startServer();
    expect((await callApi(server, "UserService/CreateUser", { name: "alice" })).status).toBe(200);
    const ws = await createWorkspace(server, "bound", [app.port], {}, await accessToken());
    agent = await startAgent(server, ws.agentToken);
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    await app?.close();
  });

  async function accessToken(): Promise<string> {
    const res = await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "alice", ttlSeconds: 3600 });
    expect(res.status).toBe(200);
    return res.body.token;
  }

  async function revoke(token: string): Promise<void> {
    expect((await callApi(server, "UserService/RevokeAccessToken", { token })).status).toBe(200);
  }

  function openWebSocket(host: string, token: string): Promise<{ ws: WebSocket; closed: Promise<void>; echo(text: string): Promise<string> }> {
    const ws = new WebSocket(`ws://127.0.0.1:${server.httpPort}/socket`, { headers: { host, "x-warren-token": token } });
    const messages: string[] = [];
    const waiters: Array<() => void> = [];
    ws.on("message", (data: Buffer) => {
      messages.push(data.toString());
      for (const wake of waiters.splice(0)) wake();
    });
    const closed = new Promise<void>((resolve) => ws.once("close", () => resolve()));
    const next = async (): Promise<string> => {
      while (messages.length === 0) await new Promise<void>((resolve) => waiters.push(resolve));
      return messages.shift()!;
    };
    return new Promise((resolve, reject) => {
      ws.once("error", reject);
      ws.once("open", () =>
        resolve({
          ws,
          closed,
          echo: async (text: string) => {
            ws.send(text);
            return next();
          },
        }),
      );
    }).then(async (opened) => {
      await next(); // the app's greeting
      return opened as { ws: WebSocket; closed: Promise<void>; echo(text: string): Promise<string> };
    });
  }

  it("regression: a WebSocket stays open after the access token that opened it is revoked", async () => {
    const token = await accessToken();
    const other = await accessToken();
    const socket = await openWebSocket(workspaceHost("bound", app.port), token);
    // Another token of the same user going leaves this one alone.
    await revoke(other);
    expect(await socket.echo("still here")).toBe("still here");
    await revoke(token);
    await socket.closed;
    const again = await httpRequest({ port: server.httpPort, host: workspaceHost("bound", app.port), headers: { "x-warren-token": token } });
    expect(again.status).toBe(401);
  });

  it("regression: a spliced connection stays open after the access token that opened it is revoked", async () => {
    const token = await accessToken();
    const { res, closed } = await new Promise<{ res: http.IncomingMessage; closed: Promise<void> }>((resolve, reject) => {
      const req = http.get({ host: "127.0.0.1", port: server.httpPort, path: "/stream", headers: { host: workspaceHost("bound", app.port), "x-warren-token": token } });
      req.on("error", () => {});
      const closed = new Promise<void>((r) => req.once("close", () => r()));
      req.once("response", (res) => {
        res.on("error", () => {});
        resolve({ res, closed });
      });
      req.once("error", reject);
    });
    expect(res.statusCode).toBe(200);
    const first = await new Promise<string>((resolve) => res.once("data", (c: Buffer) => resolve(c.toString())));
    expect(first).toBe("first chunk\n");
    await revoke(token);
    await closed;
    expect(res.complete).toBe(false);
  });

  it("regression: an agent connection outlives its token's expiry", async () => {
    const created = await createWorkspace(server, "brief", [app.port], { agentTokenTtlSeconds: 6 });
    const brief = await startAgent(server, created.agentToken);
    try {
      const res = await httpRequest({ port: server.httpPort, host: workspaceHost("brief", app.port), headers: { "x-warren-token": server.adminToken } });
      expect(res.status).toBe(200);
      await server.proc.waitFor((l) => l.msg === "disconnecting agent" && l["workspace"] === "brief" && l["message"] === "the credential expired", 15_000, "the agent's expiry");
      const after = await httpRequest({ port: server.httpPort, host: workspaceHost("brief", app.port), headers: { "x-warren-token": server.adminToken } });
      expect(after.status).toBe(503);
    } finally {
      await brief.stop();
    }
  });

  it("closes a WebSocket when its workspace is deleted", async () => {
    const token = await accessToken();
    const created = await createWorkspace(server, "gone", [app.port], {}, token);
    const gone = await startAgent(server, created.agentToken);
    try {
      const socket = await openWebSocket(workspaceHost("gone", app.port), token);
      expect((await callApi(server, "WorkspaceService/DeleteWorkspace", { name: "gone" }, token)).status).toBe(200);
      await socket.closed;
    } finally {
      await gone.stop();
    }
  });
});
