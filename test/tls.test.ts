import { copyFileSync } from "node:fs";
import { join } from "node:path";
import https from "node:https";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startApp, type App } from "./harness/apps.js";
import { createTestCa, type TestCa } from "./harness/test-ca.js";
import { callApi, createWorkspace, eventually, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

const NAMES = ["warren.localhost", "*.warren.localhost", "127.0.0.1"];

function httpsGet(port: number, host: string, ca: Buffer, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: "127.0.0.1", port, servername: host.split(":")[0], path: "/", headers: { host, ...headers }, ca, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
  });
}

function peerSerial(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername: "warren.localhost", ca }, () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.end();
    });
    socket.on("error", reject);
  });
}

describe("TLS on every listener", () => {
  let ca: TestCa;
  let server: ServerHandle;
  let agent: AgentHandle;
  let app: App;
  let certFile: string;
  let keyFile: string;

  beforeAll(async () => {
    ca = createTestCa();
    const first = ca.issue("warren", NAMES);
    // The server reads these paths; the test swaps their content later.
    certFile = join(ca.dir, "live.pem");
    keyFile = join(ca.dir, "live.key");
    copyFileSync(first.certFile, certFile);
    copyFileSync(first.keyFile, keyFile);
    app = await startApp((req, res) => res.end(`proto=${req.headers["x-forwarded-proto"]}`), { webSocketEcho: true });
    server = await startServer({ WARREN_TLS_CERT: certFile, WARREN_TLS_KEY: keyFile }, [], ca.ca);
    await createWorkspace(server, "secure", [app.port]);
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    await app?.close();
  });

  it("serves the API over HTTPS with https workspace URLs", async () => {
    const res = await callApi<{ workspace: { urls: string[] } }>(server, "WorkspaceService/GetWorkspace", { name: "secure" });
    expect(res.status).toBe(200);
    expect(res.body.workspace.urls).toEqual([`https://${app.port}-secure.warren.localhost:${server.httpPort}/`]);
  });

  it("an agent verifying the server with a CA file connects over TLS and carries HTTPS traffic", async () => {
    const token = (await callApi<{ agentToken: string }>(server, "WorkspaceService/CreateWorkspace", { name: "tlsagent", ports: [{ port: app.port }] })).body.agentToken;
    agent = await startAgent({ agentUrl: `https://127.0.0.1:${server.agentPort}` }, token, { env: { WARREN_CA_FILE: ca.caFile } });
    const res = await httpsGet(server.httpPort, workspaceHost("tlsagent", app.port), ca.ca, { "x-warren-token": server.adminToken });
    expect(res).toEqual({ status: 200, body: "proto=https" });
  });

  it("carries WebSocket over TLS", async () => {
    const ws = new WebSocket(`wss://127.0.0.1:${server.httpPort}/`, {
      headers: { host: workspaceHost("tlsagent", app.port), "x-warren-token": server.adminToken },
      ca: ca.ca,
      // Verify against the workspace name, as a browser would.
      ...({ servername: workspaceHost("tlsagent", app.port) } as object),
    });
    const first = await new Promise<string>((resolve, reject) => {
      ws.once("message", (d: Buffer) => resolve(d.toString()));
      ws.once("error", reject);
    });
    ws.close();
    expect(JSON.parse(first)).toEqual({ hello: workspaceHost("tlsagent", app.port) });
  });

  it("an agent that cannot verify the server does not connect and says why", async () => {
    const token = (await callApi<{ agentToken: string }>(server, "WorkspaceService/CreateWorkspace", { name: "noca", ports: [] })).body.agentToken;
    const untrusting = await startAgent({ agentUrl: `https://127.0.0.1:${server.agentPort}` }, token, { waitReady: false });
    const line = await untrusting.proc.waitFor((l) => l.msg === "disconnected; reconnecting");
    expect(String(line["reason"])).toMatch(/certificate/i);
    await untrusting.stop();
  });

  it("serves a certificate replaced on disk to new connections without a restart", async () => {
    const before = await peerSerial(server.httpPort, ca.ca);
    const next = ca.issue("warren", NAMES);
    copyFileSync(next.keyFile, keyFile);
    copyFileSync(next.certFile, certFile);
    await eventually(async () => (await peerSerial(server.httpPort, ca.ca)) !== before, 10_000, "the new certificate to be served");
    await eventually(async () => (await peerSerial(server.agentPort, ca.ca)) !== before, 10_000, "the agent listener to serve it too");
    // The agent keeps working across the change.
    const res = await httpsGet(server.httpPort, workspaceHost("tlsagent", app.port), ca.ca, { "x-warren-token": server.adminToken });
    expect(res.status).toBe(200);
  });
});
