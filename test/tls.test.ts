import { copyFileSync } from "node:fs";
import http2 from "node:http2";
import { join } from "node:path";
import https from "node:https";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startApp, type App } from "./harness/apps.js";
import { CLUSTER_SECRET, startRedis, type RedisHandle } from "./harness/cluster.js";
import { clientOptions, ensureTestUsers, IS_ROOT, passwordOptions, run, SSH_EMPTY_PASSWORD_USER, startSshd, type Sshd } from "./harness/sshd.js";
import { createTestCa, type TestCa } from "./harness/test-ca.js";
import { callApi, createWorkspace, eventually, httpRequest, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

const NAMES = ["warren.localhost", "*.warren.localhost", "127.0.0.1"];

function httpsGet(port: number, host: string, ca: Buffer, headers: Record<string, string>, path = "/"): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: "127.0.0.1", port, servername: host.split(":")[0], path, headers: { host, ...headers }, ca, agent: false }, (res) => {
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
    server = await startServer({ WARREN_TLS_CERT: certFile, WARREN_TLS_KEY: keyFile, WARREN_OBSERVABILITY_TLS: "true" }, [], ca.ca);
    await createWorkspace(server, "secure", [app.port]);
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    await app?.close();
  });

  // TLS is for HTTP and the agents; SSH keeps its own transport security and works as before.
  it.skipIf(!IS_ROOT)("leaves SSH unaffected: a login through the TLS-carried agent runs a command in the workspace", async () => {
    ensureTestUsers();
    let sshd: Sshd | undefined;
    let sshAgent: AgentHandle | undefined;
    try {
      sshd = await startSshd();
      const ws = await createWorkspace(server, "tlsssh", [app.port], { sshPort: sshd.port, sshUser: SSH_EMPTY_PASSWORD_USER });
      sshAgent = await startAgent({ agentUrl: `https://127.0.0.1:${server.agentPort}` }, ws.agentToken, { env: { WARREN_CA_FILE: ca.caFile } });
      const r = await run("sshpass", ["-p", server.adminToken, "ssh", ...clientOptions(), ...passwordOptions(), "-p", String(server.sshPort), "tlsssh@127.0.0.1", "echo", "over-ssh"]);
      expect(r.stdout, r.stderr).toBe("over-ssh\n");
      expect(r.code).toBe(0);
    } finally {
      await sshAgent?.stop();
      await sshd?.stop();
    }
  });

  it("serves /healthz, /readyz and /metrics over TLS with WARREN_OBSERVABILITY_TLS, and nothing in plain text", async () => {
    expect(await httpsGet(server.observabilityPort, "warren.localhost", ca.ca, {}, "/healthz")).toEqual({ status: 200, body: "ok\n" });
    expect(await httpsGet(server.observabilityPort, "warren.localhost", ca.ca, {}, "/readyz")).toEqual({ status: 200, body: "ready\n" });
    expect((await httpsGet(server.observabilityPort, "warren.localhost", ca.ca, {}, "/metrics")).body).toMatch(/^warren_agents_connected /m);
    const plain = await fetch(`http://127.0.0.1:${server.observabilityPort}/healthz`).then(
      (r) => `status ${r.status}`,
      (e: Error) => `error ${e.message}`,
    );
    expect(plain).not.toBe("status 200");
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
    await eventually(async () => (await peerSerial(server.observabilityPort, ca.ca)) !== before, 10_000, "the observability listener to serve it too");
    // The agent keeps working across the change.
    const res = await httpsGet(server.httpPort, workspaceHost("tlsagent", app.port), ca.ca, { "x-warren-token": server.adminToken });
    expect(res.status).toBe(200);
  });
});

describe("TLS on the private API of a cluster (WARREN_PRIVATE_TLS)", () => {
  let ca: TestCa;
  let redis: RedisHandle;
  let app: App;
  const servers: Array<ServerHandle & { privatePort: number }> = [];
  let agent: AgentHandle;

  beforeAll(async () => {
    ca = createTestCa();
    const cert = ca.issue("warren", NAMES);
    redis = await startRedis();
    app = await startApp((_req, res) => res.end("through the private API over TLS"));
    for (const id of ["tls-1", "tls-2"]) {
      const server = await startServer(
        {
          WARREN_TLS_CERT: cert.certFile,
          WARREN_TLS_KEY: cert.keyFile,
          WARREN_REDIS_URL: redis.url,
          WARREN_CLUSTER_SECRET: CLUSTER_SECRET,
          WARREN_SERVER_ID: id,
          WARREN_PRIVATE_ADDR: "127.0.0.1:0",
          WARREN_PRIVATE_TLS: "true",
          WARREN_PRIVATE_CA_FILE: ca.caFile,
          WARREN_SSH_ADDR: "off",
        },
        [],
        ca.ca,
      );
      const ready = await server.proc.waitFor((l) => l.msg === "warren server ready");
      servers.push({ ...server, privatePort: Number(String(ready["private"]).split(":").pop()) });
    }
    const ws = await createWorkspace(servers[0]!, "privtls", [app.port]);
    agent = await startAgent({ agentUrl: `https://127.0.0.1:${servers[0]!.agentPort}` }, ws.agentToken, { env: { WARREN_CA_FILE: ca.caFile } });
  });

  afterAll(async () => {
    await agent?.stop();
    await Promise.all(servers.map((s) => s.stop()));
    await app?.close();
    await redis?.stop();
  });

  it("forwards between servers over TLS, and the private listener speaks nothing else", async () => {
    // The agent is on tls-1; a request to tls-2 is forwarded to tls-1.
    await eventually(async () => (await httpsGet(servers[1]!.httpPort, workspaceHost("privtls", app.port), ca.ca, { "x-warren-token": servers[1]!.adminToken })).status === 200, 5000, "a forwarded request");
    const res = await httpsGet(servers[1]!.httpPort, workspaceHost("privtls", app.port), ca.ca, { "x-warren-token": servers[1]!.adminToken });
    expect(res).toEqual({ status: 200, body: "through the private API over TLS" });
    const metrics = (await httpRequest({ port: servers[1]!.observabilityPort, host: "127.0.0.1", path: "/metrics" })).body.toString();
    expect(metrics).toMatch(/^warren_forwards_total\{outcome="ok"\} [1-9]/m);
    // The private port hands out the server certificate, verified for the root domain...
    const protocol = await new Promise<string | false | null>((resolve, reject) => {
      const socket = tls.connect({ host: "127.0.0.1", port: servers[0]!.privatePort, servername: "warren.localhost", ca: ca.ca, ALPNProtocols: ["h2"] }, () => {
        resolve(socket.alpnProtocol);
        socket.end();
      });
      socket.on("error", reject);
    });
    expect(protocol).toBe("h2");
    // ...and a peer speaking plain HTTP/2 gets nowhere.
    const plain = await new Promise<string>((resolve) => {
      const session = http2.connect(`http://127.0.0.1:${servers[0]!.privatePort}`);
      session.on("error", (err) => resolve(`error: ${err.message}`));
      session.on("close", () => resolve("closed"));
      const req = session.request({ ":method": "POST", ":path": "/warren.v1.PrivateService/Dial" });
      req.on("error", () => {});
      req.on("response", () => resolve("answered"));
      setTimeout(() => {
        session.destroy();
        resolve("no answer");
      }, 2000);
    });
    expect(plain).not.toBe("answered");
  });
});
