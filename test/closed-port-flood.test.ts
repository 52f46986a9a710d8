import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { freePort, startApp, type App } from "./harness/apps.js";
import { createWorkspace, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

/**
 * Regression (issue 14, "refused connections to one port kill the whole agent connection"):
 * after about 1,000 dials refused inside the workspace, then about 33 a second, node's HTTP/2
 * rapid-reset defence tore down the agent's session (GOAWAY): every port answered 503 and
 * open WebSockets were cut. A refused dial must be an answer, not a stream reset.
 */
describe("a flood of requests to a closed port", () => {
  let server: ServerHandle;
  let agent: AgentHandle;
  let app: App;
  let closedPort: number;

  beforeAll(async () => {
    app = await startApp((_req, res) => res.end("open port"), { webSocketEcho: true });
    closedPort = await freePort();
    server = await startServer();
    const ws = await createWorkspace(server, "flooded", [app.port, closedPort]);
    agent = await startAgent(server, ws.agentToken);
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    await app?.close();
  });

  function get(port: number, keepAlive: http.Agent): Promise<number> {
    return new Promise((resolve) => {
      const req = http.request(
        { host: "127.0.0.1", port: server.httpPort, path: "/", agent: keepAlive, headers: { host: workspaceHost("flooded", port), "x-warren-token": server.adminToken } },
        (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        },
      );
      req.on("error", () => resolve(-1));
      req.end();
    });
  }

  it("refused connections to one port kill the whole agent connection: no longer; the other port and an open WebSocket keep working, no GOAWAY", async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.httpPort}/`, { headers: { host: workspaceHost("flooded", app.port), "x-warren-token": server.adminToken } });
    const wsMessages: string[] = [];
    let wsClosed = false;
    ws.on("message", (d: Buffer) => wsMessages.push(d.toString()));
    ws.on("close", () => (wsClosed = true));
    await new Promise<void>((resolve, reject) => {
      ws.once("message", () => resolve());
      ws.once("error", reject);
    });

    // One keep-alive pool per port: the front door closes a kept-alive connection whose next
    // request names another target, which node's client reports as "socket hang up".
    const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 64 });
    const openKeepAlive = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const closedStatuses = new Map<number, number>();
    const openStatuses = new Map<number, number>();
    const count = (m: Map<number, number>, s: number) => m.set(s, (m.get(s) ?? 0) + 1);
    // 3,000 refused dials as fast as 64 connections send them (well past the 1,000 burst and
    // the 33/s rate), with requests to the open port and WebSocket messages in between.
    const total = 3000;
    let sent = 0;
    const flood = async () => {
      while (sent < total) {
        const n = ++sent;
        count(closedStatuses, await get(closedPort, keepAlive));
        if (n % 50 === 0) {
          count(openStatuses, await get(app.port, openKeepAlive));
          ws.send(`ping ${n}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 64 }, flood));
    // And after the flood.
    for (let i = 0; i < 10; i++) count(openStatuses, await get(app.port, openKeepAlive));
    ws.send("after");
    await new Promise<void>((resolve) => {
      const check = () => (wsMessages.includes("after") || wsClosed ? resolve() : setTimeout(check, 20));
      check();
    });
    keepAlive.destroy();
    openKeepAlive.destroy();

    expect(Object.fromEntries(closedStatuses)).toEqual({ 502: total });
    expect(Object.fromEntries(openStatuses)).toEqual({ 200: [...openStatuses.values()].reduce((a, b) => a + b, 0) });
    expect(wsClosed).toBe(false);
    expect(wsMessages.filter((m) => m.startsWith("ping")).length).toBe(Math.floor(total / 50));
    expect(wsMessages).toContain("after");
    ws.close();
    // The agent kept its one connection: no GOAWAY, no reconnect.
    expect(agent.proc.lines.filter((l) => l.msg === "server sent GOAWAY" || /control stream closed/.test(String(l["reason"] ?? l.msg)))).toEqual([]);
    expect(agent.proc.lines.filter((l) => l["event"] === "ready").length).toBe(1);
  });
});
