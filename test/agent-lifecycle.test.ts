import { writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listen, startApp, type App } from "./harness/apps.js";
import { callApi, createWorkspace, eventually, httpRequest, startAgent, startServer, workspaceHost, type ServerHandle } from "./harness/warren.js";
import { tempDir } from "./harness/temp-dirs.js";

describe("agent lifecycle", () => {
  let server: ServerHandle;
  let app: App;
  const held: Array<() => void> = [];

  beforeAll(async () => {
    app = await startApp((req, res) => {
      if (req.url === "/hold") {
        // Answers when the test says so.
        held.push(() => res.end("released"));
        return;
      }
      if (req.url?.startsWith("/slow")) {
        setTimeout(() => res.end("slow done"), 1500);
        return;
      }
      res.end("ok");
    });
    server = await startServer({ WARREN_STREAM_WAIT_TIMEOUT: "700ms" });
  });

  afterAll(async () => {
    await server?.stop();
    await app?.close();
  });

  const get = (workspace: string, path = "/") =>
    httpRequest({ port: server.httpPort, host: workspaceHost(workspace, app.port), path, headers: { "x-warren-token": server.adminToken } });

  it("refuses an agent with a bad token, which exits non-zero and says why", async () => {
    await createWorkspace(server, "badtoken", [app.port]);
    for (const token of ["wat_0123456789abcdefAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "garbage"]) {
      const agent = await startAgent(server, token, { waitReady: false });
      const exit = await agent.proc.exited;
      expect(exit.code).toBe(1);
      expect(agent.proc.output()).toMatch(/agent token is invalid, expired or revoked/);
    }
  });

  it("exits with code 2 and one clear line when the server or token is missing", async () => {
    const noToken = await startAgent(server, "", { waitReady: false, env: { WARREN_TOKEN: undefined } });
    expect((await noToken.proc.exited).code).toBe(2);
    expect(noToken.proc.stderr.join("")).toMatch(/^warren-agent: no agent token: set WARREN_TOKEN/);
    const noServer = await startAgent({ agentUrl: "" }, "x", { waitReady: false, env: { WARREN_SERVER: undefined } });
    expect((await noServer.proc.exited).code).toBe(2);
    expect(noServer.proc.stderr.join("")).toMatch(/^warren-agent: no server address/);
  });

  it("answers 503 naming the workspace when no agent is connected", async () => {
    await createWorkspace(server, "offline", [app.port]);
    const res = await get("offline");
    expect(res.status).toBe(503);
    expect(res.body.toString()).toBe('workspace "offline" is not connected\n');
  });

  it("recovers after the agent is killed and restarted", async () => {
    const ws = await createWorkspace(server, "flaky", [app.port]);
    const first = await startAgent(server, ws.agentToken);
    expect((await get("flaky")).status).toBe(200);
    first.proc.kill("SIGKILL");
    await first.proc.exited;
    await eventually(async () => (await get("flaky")).status === 503, 5000, "503 after the agent died");
    const second = await startAgent(server, ws.agentToken);
    await eventually(async () => (await get("flaky")).status === 200, 5000, "traffic to recover");
    await second.stop();
  });

  it("reconnects by itself after its connection to the server is cut", async () => {
    const ws = await createWorkspace(server, "reconnect", [app.port]);
    // A TCP relay between agent and server stands in for the network; cutting its
    // connections is a network failure the agent must ride out.
    const relayed = new Set<net.Socket>();
    const relay = net.createServer((inbound) => {
      const outbound = net.connect(server.agentPort, "127.0.0.1");
      relayed.add(inbound);
      inbound.on("close", () => relayed.delete(inbound));
      inbound.pipe(outbound).pipe(inbound);
      inbound.on("error", () => outbound.destroy());
      outbound.on("error", () => inbound.destroy());
    });
    const relayPort = await listen(relay);
    const agent = await startAgent({ agentUrl: `http://127.0.0.1:${relayPort}` }, ws.agentToken);
    expect((await get("reconnect")).status).toBe(200);
    const t0 = Date.now();
    for (const s of relayed) s.destroy();
    await eventually(() => agent.proc.lines.filter((l) => l["event"] === "ready").length === 2, 10_000, "the agent to reconnect");
    await eventually(async () => (await get("reconnect")).status === 200, 5000, "traffic to recover");
    // No request hangs on the dead connection's streams until keepalive notices (30 s).
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(agent.proc.lines.some((l) => l.msg === "disconnected; reconnecting")).toBe(true);
    await agent.stop();
    relay.close();
  });

  it("answers 503 after a short wait when every stream is busy", async () => {
    const ws = await createWorkspace(server, "busy", [app.port]);
    const agent = await startAgent(server, ws.agentToken, { env: { WARREN_POOL_MIN_IDLE: "1", WARREN_POOL_MAX_STREAMS: "1" } });
    const holding = get("busy", "/hold");
    await eventually(() => held.length > 0, 5000, "the held request to reach the app");
    const started = Date.now();
    const res = await get("busy");
    expect(res.status).toBe(503);
    expect(res.body.toString()).toMatch(/workspace "busy" has no free tunnel stream/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(600);
    held.shift()!();
    expect((await holding).body.toString()).toBe("released");
    await agent.stop();
  });

  it("grows its pool past the idle minimum under a burst: 40 connections held open at once all reach the app", async () => {
    const ws = await createWorkspace(server, "burst", [app.port]);
    const agent = await startAgent(server, ws.agentToken, { env: { WARREN_POOL_MIN_IDLE: "1", WARREN_POOL_BURST: "8" } });
    const streams = async (state: "idle" | "busy") => {
      const m = (await httpRequest({ port: server.observabilityPort, host: "127.0.0.1", path: "/metrics" })).body.toString();
      return Number(new RegExp(`^warren_tunnel_streams\\{state="${state}"\\} (\\d+)`, "m").exec(m)?.[1] ?? NaN);
    };
    await eventually(async () => (await streams("idle")) === 1, 5000, "the agent's one idle stream (the minimum) to be parked");
    const before = held.length;
    // One connection each (no keep-alive agent): each needs a tunnel stream of its own.
    const requests = Array.from({ length: 40 }, () =>
      httpRequest({ port: server.httpPort, host: workspaceHost("burst", app.port), path: "/hold", headers: { "x-warren-token": server.adminToken }, agent: new http.Agent() }),
    );
    await eventually(() => held.length - before === 40, 10_000, "all 40 requests to be at the app at once");
    // Forty streams busy at once, from a pool that kept one idle: the agent opened the rest on request.
    expect(await streams("busy")).toBeGreaterThanOrEqual(40);
    for (const release of held.splice(before)) release();
    const results = await Promise.all(requests);
    expect(results.map((r) => r.status)).toEqual(Array(40).fill(200));
    await agent.stop();
  });

  it("refuses an agent token past its expiry, and the agent exits saying so", async () => {
    const ws = await callApi<{ agentToken: string }>(server, "WorkspaceService/CreateWorkspace", { name: "shortlived", ports: [{ port: app.port }], agentTokenTtlSeconds: 1 });
    expect(ws.status).toBe(200);
    await new Promise((r) => setTimeout(r, 1300));
    const agent = await startAgent(server, ws.body.agentToken, { waitReady: false });
    expect((await agent.proc.exited).code).toBe(1);
    expect(agent.proc.output()).toMatch(/agent token is invalid, expired or revoked/);
    // A fresh token (rotated) works again.
    const rotated = await callApi<{ agentToken: string }>(server, "WorkspaceService/RotateAgentToken", { name: "shortlived" });
    const again = await startAgent(server, rotated.body.agentToken);
    expect((await get("shortlived")).status).toBe(200);
    await again.stop();
  });

  it("reads its token from WARREN_TOKEN_FILE, so it stays out of the process list and environment", async () => {
    const ws = await createWorkspace(server, "tokenfile", [app.port]);
    const file = join(tempDir("warren-token-"), "token");
    writeFileSync(file, `${ws.agentToken}\n`, { mode: 0o600 });
    const agent = await startAgent(server, "", { env: { WARREN_TOKEN: undefined, WARREN_TOKEN_FILE: file } });
    expect((await get("tokenfile")).body.toString()).toBe("ok");
    await agent.stop();
    const missing = await startAgent(server, "", { waitReady: false, env: { WARREN_TOKEN: undefined, WARREN_TOKEN_FILE: `${file}.missing` } });
    expect((await missing.proc.exited).code).toBe(2);
    expect(missing.proc.stderr.join("")).toMatch(/WARREN_TOKEN_FILE/);
  });

  it("deleting a workspace disconnects its agent, which exits, and its token is refused", async () => {
    const ws = await createWorkspace(server, "doomed", [app.port]);
    const agent = await startAgent(server, ws.agentToken);
    const del = await callApi(server, "WorkspaceService/DeleteWorkspace", { name: "doomed" });
    expect(del.status).toBe(200);
    const exit = await agent.proc.exited;
    expect(exit.code).toBe(1);
    expect(agent.proc.lines.some((l) => l["reason"] === 'workspace "doomed" was deleted')).toBe(true);
    const again = await startAgent(server, ws.agentToken, { waitReady: false });
    expect((await again.proc.exited).code).toBe(1);
    expect((await get("doomed")).status).toBe(404);
  });

  it("on SIGTERM lets an open request finish, then exits 0", async () => {
    const ws = await createWorkspace(server, "graceful", [app.port]);
    const agent = await startAgent(server, ws.agentToken);
    const slow = get("graceful", "/slow");
    await new Promise((r) => setTimeout(r, 300));
    agent.proc.kill("SIGTERM");
    const res = await slow;
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("slow done");
    expect((await agent.proc.exited).code).toBe(0);
    // New connections are no longer taken.
    expect((await get("graceful")).status).toBe(503);
  });

  it("on SIGTERM cuts a connection that outlasts WARREN_SHUTDOWN_TIMEOUT, then exits 0", async () => {
    const ws = await createWorkspace(server, "cutoff", [app.port]);
    const agent = await startAgent(server, ws.agentToken, { env: { WARREN_SHUTDOWN_TIMEOUT: "1s" } });
    const before = held.length;
    const stuck = get("cutoff", "/hold").then(
      (r) => `status ${r.status}`,
      (e: Error) => `error ${e.message}`,
    );
    await eventually(() => held.length > before, 5000, "the held request to reach the app");
    const signalled = Date.now();
    agent.proc.kill("SIGTERM");
    expect((await agent.proc.exited).code).toBe(0);
    expect(Date.now() - signalled).toBeLessThan(10_000);
    // The client is not left hanging: its request ends with an error status or a cut connection.
    expect(await stuck).not.toBe("status 200");
    held.splice(before).forEach((release) => release());
  });
});
