import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listen, startApp, type App } from "./harness/apps.js";
import { createWorkspace, httpRequest, startAgent, startServer, workspaceHost, type ServerHandle } from "./harness/warren.js";

/** Regressions found while stopping and starting workloads (issue 5). */
describe("tunnel reuse regressions", () => {
  let server: ServerHandle;

  beforeAll(async () => {
    server = await startServer();
  });

  afterAll(async () => {
    await server?.stop();
  });

  it("answers the first request after the app restarted under a kept-alive connection (it used to hang)", async () => {
    let app: App = await startApp((_req, res) => res.end("first"));
    const port = app.port;
    const ws = await createWorkspace(server, "restarts", [port]);
    const agent = await startAgent(server, ws.agentToken);
    const get = () => httpRequest({ port: server.httpPort, host: workspaceHost("restarts", port), headers: { "x-warren-token": server.adminToken } });
    try {
      expect((await get()).body.toString()).toBe("first");
      // The app goes away (closing the kept-alive connection Warren holds) and comes back.
      await app.close();
      const second = http.createServer((_req, res) => res.end("second"));
      await listen(second, port);
      app = { ...app, server: second, close: () => new Promise<void>((r) => { second.close(() => r()); second.closeAllConnections(); }) };
      await new Promise((r) => setTimeout(r, 200));
      const started = Date.now();
      const res = await Promise.race([get(), new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the request hung")), 5000))]);
      expect(res.body.toString()).toBe("second");
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      await agent.stop();
      await app.close();
    }
  });

  it("keeps the agent connected when it retires surplus idle streams (it used to be dropped for a protocol violation)", async () => {
    const app = await startApp((_req, res) => res.end("ok"));
    const ws = await createWorkspace(server, "retires", [app.port]);
    // One claimed stream makes the agent open a burst of 10; the surplus is retired after 1 s idle.
    const agent = await startAgent(server, ws.agentToken, { env: { WARREN_POOL_MIN_IDLE: "1", WARREN_POOL_IDLE_TIMEOUT: "1s" } });
    const get = () => httpRequest({ port: server.httpPort, host: workspaceHost("retires", app.port), headers: { "x-warren-token": server.adminToken } });
    try {
      expect((await get()).status).toBe(200);
      // The agent checks for streams to retire every 5 s.
      await new Promise((r) => setTimeout(r, 6500));
      expect((await get()).status).toBe(200);
      expect(agent.proc.lines.filter((l) => l["event"] === "ready")).toHaveLength(1);
      expect(server.proc.lines.some((l) => /protocol violation/.test(String(l.msg)) && l["workspace"] === "retires")).toBe(false);
    } finally {
      await agent.stop();
      await app.close();
    }
  });
});
