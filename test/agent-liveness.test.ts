import http from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { startApp, type App } from "./harness/apps.js";
import { createWorkspace, eventually, httpRequest, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

/**
 * Regression (issue 14, "a stalled agent is not noticed"): agents were pinged every 15 s and an
 * agent frozen for 20 s was never declared gone; requests to it hung up to the 60 s upstream
 * timeout. Now both sides ping with a short timeout (WARREN_AGENT_PING_INTERVAL and
 * WARREN_AGENT_PING_TIMEOUT, 2 s each by default): a stalled agent is dropped and its
 * requests answered 503, and an agent whose server goes silent connects again by itself.
 */
describe("liveness of agent connections", () => {
  let server: ServerHandle | undefined;
  let agent: AgentHandle | undefined;
  let app: App | undefined;
  const held: http.ServerResponse[] = [];

  afterEach(async () => {
    agent?.proc.kill("SIGCONT");
    server?.proc.kill("SIGCONT");
    for (const res of held.splice(0)) res.end();
    await agent?.stop();
    await server?.stop();
    await app?.close();
  });

  async function setUp(): Promise<{ server: ServerHandle; agent: AgentHandle; app: App; host: string }> {
    app = await startApp((req, res) => {
      if (req.url === "/hold") held.push(res);
      else res.end("alive");
    });
    // The upstream and dial timeouts stay at their (long) defaults: only liveness may answer.
    server = await startServer();
    const ws = await createWorkspace(server, "frozen", [app.port]);
    agent = await startAgent(server, ws.agentToken);
    return { server, agent, app, host: workspaceHost("frozen", app.port) };
  }

  it("a stalled agent is not noticed: no longer; a SIGSTOPped agent is dropped, its requests answered 503, and it serves again once resumed", async () => {
    const { server, agent, host } = await setUp();
    const get = (path = "/") => httpRequest({ port: server.httpPort, host, path, headers: { "x-warren-token": server.adminToken } });
    expect((await get()).status).toBe(200);
    // A request in flight when the agent freezes.
    const inFlight = get("/hold");
    await eventually(() => held.length === 1, 10_000, "the app to hold the request");

    agent.proc.kill("SIGSTOP");
    // A request sent to the frozen agent: answered by the server once it gives the agent up
    // (not after the 60 s upstream timeout, which would fail this test by its own timeout).
    const during = await get();
    expect(during.status).toBe(503);
    expect(during.body.toString()).toMatch(/workspace "frozen" is not connected/);
    expect([502, 503]).toContain((await inFlight).status);
    await server.proc.waitFor((l) => l.msg === "dropping agent connection" && /stopped answering pings/.test(String(l["why"])), 10_000, "the drop");

    agent.proc.kill("SIGCONT");
    await eventually(async () => (await get()).status === 200, 30_000, "the agent to serve again");
    expect(agent.proc.lines.filter((l) => l["event"] === "ready").length).toBe(2);
  });

  it("an agent whose server goes silent (SIGSTOP) gives the connection up by itself and connects again", async () => {
    const { server, agent, host } = await setUp();
    server.proc.kill("SIGSTOP");
    await agent.proc.waitFor((l) => l.msg === "server stopped answering pings; connecting again", 20_000, "the agent to notice");
    server.proc.kill("SIGCONT");
    await agent.proc.waitFor((l) => l["event"] === "ready" && agent.proc.lines.filter((m) => m["event"] === "ready").length === 2, 30_000, "a new connection");
    await eventually(
      async () => (await httpRequest({ port: server.httpPort, host, headers: { "x-warren-token": server.adminToken } })).status === 200,
      30_000,
      "requests to work again",
    );
  });
});
