import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startApp, type App } from "./harness/apps.js";
import { createWorkspace, httpRequest, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

/**
 * Regressions (issue 14, item 6): "the pool grows too slowly for a burst of slow requests"
 * (500 one-second requests at once: 7 % got 503 "no free tunnel stream" after the 3 s wait,
 * with 68 streams open), and "a single server with an open WebSocket refuses new connections
 * for 25 s of its shutdown".
 */
describe("the tunnel pool follows demand", () => {
  let server: ServerHandle;
  let agent: AgentHandle;
  let app: App;

  beforeAll(async () => {
    app = await startApp((req, res) => {
      if (req.url === "/slow") setTimeout(() => res.end("slow done"), 1000);
      else res.end("ok");
    });
    // Default pool and server settings.
    server = await startServer();
    const ws = await createWorkspace(server, "bursty", [app.port]);
    agent = await startAgent(server, ws.agentToken);
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    await app?.close();
  });

  it("the pool grows too slowly for a burst of slow requests: no longer; 500 concurrent one-second requests all succeed", async () => {
    const host = workspaceHost("bursty", app.port);
    const statuses = new Map<string, number>();
    await Promise.all(
      Array.from({ length: 500 }, async () => {
        const res = await httpRequest({ port: server.httpPort, host, path: "/slow", headers: { "x-warren-token": server.adminToken } }).catch((e: Error) => ({
          status: -1,
          body: Buffer.from(e.message),
        }));
        const key = `${res.status} ${res.status === 200 ? res.body.toString() : res.body.toString().slice(0, 80)}`;
        statuses.set(key, (statuses.get(key) ?? 0) + 1);
      }),
    );
    expect(Object.fromEntries(statuses)).toEqual({ "200 slow done": 500 });
  });
});

describe("a single server's shutdown with an open WebSocket", () => {
  it("refuses new connections for 25 s of its shutdown: no longer; once requests are answered it closes the WebSocket and stops", async () => {
    let arrived!: () => void;
    const slowArrived = new Promise<void>((resolve) => (arrived = resolve));
    const app = await startApp((req, res) => {
      if (req.url === "/slow") {
        arrived();
        setTimeout(() => res.end("slow done"), 1000);
      } else res.end("ok");
    }, { webSocketEcho: true });
    const server = await startServer();
    const created = await createWorkspace(server, "socketed", [app.port]);
    const agent = await startAgent(server, created.agentToken);
    try {
      const host = workspaceHost("socketed", app.port);
      const ws = new WebSocket(`ws://127.0.0.1:${server.httpPort}/`, { headers: { host, "x-warren-token": server.adminToken } });
      await new Promise<void>((resolve, reject) => {
        ws.once("message", () => resolve());
        ws.once("error", reject);
      });
      const closed = new Promise<void>((resolve) => ws.once("close", () => resolve()));
      const slow = httpRequest({ port: server.httpPort, host, path: "/slow", headers: { "x-warren-token": server.adminToken } });
      await slowArrived;
      server.proc.kill("SIGTERM");
      // The request in flight is answered; then the WebSocket is closed and the server exits,
      // without waiting out the 30 s shutdown timeout.
      const res = await slow;
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe("slow done");
      await closed;
      expect((await server.proc.exited).code).toBe(0);
      expect(server.proc.lines.some((l) => l.msg === "shutting down: requests answered; closing open WebSockets")).toBe(true);
      expect(server.proc.lines.some((l) => l.msg === "shutdown timeout: closing what is still open")).toBe(false);
    } finally {
      await agent.stop();
      await server.stop();
      await app.close();
    }
  });
});
