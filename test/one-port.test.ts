import { execFile } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startApp, type App } from "./harness/apps.js";
import { clientOptions, ensureTestUsers, passwordOptions, run, SSH_EMPTY_PASSWORD_USER, startSshd, type Sshd } from "./harness/sshd.js";
import { createTestCa, type TestCa } from "./harness/test-ca.js";
import { createWorkspace, httpRequest, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

/** The first message of the test app's WebSocket echo, through `url` with the admin token. */
async function webSocketHello(url: string, host: string, token: string, ca?: Buffer): Promise<unknown> {
  const ws = new WebSocket(url, { headers: { host, "x-warren-token": token }, ...(ca ? { ca, servername: host } : {}) });
  try {
    const first = await new Promise<string>((resolve, reject) => {
      ws.once("message", (d: Buffer) => resolve(d.toString()));
      ws.once("error", reject);
    });
    const echoed = new Promise<string>((resolve) => ws.once("message", (d: Buffer) => resolve(d.toString())));
    ws.send("ping through one port");
    expect(await echoed).toBe("ping through one port");
    return JSON.parse(first);
  } finally {
    ws.close();
  }
}

/** curl's view of a request: HTTP version, status and body (never synchronous: the test app runs in this process). */
function curl(args: string[]): Promise<{ version: string; status: string; body: string }> {
  return new Promise((resolve, reject) => {
    execFile("curl", ["-sS", "-w", "\n%{http_version} %{http_code}", ...args], { encoding: "utf8" }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`curl failed: ${stderr}`));
        return;
      }
      const lines = stdout.split("\n");
      const [version, status] = lines.pop()!.split(" ");
      resolve({ version: version!, status: status!, body: lines.join("\n") });
    });
  });
}

/**
 * One URL, one port: with the agent listener off, the agent connects to the public listener
 * (HTTPS with ALPN h2, or plain HTTP with the HTTP/2 preface) and carries HTTP, WebSocket and SSH.
 */
describe("agents on the public listener (WARREN_AGENT_ADDR=off)", () => {
  let ca: TestCa;
  let app: App;
  let sshd: Sshd;
  let tlsServer: ServerHandle;
  let plainServer: ServerHandle;
  const agents: AgentHandle[] = [];

  beforeAll(async () => {
    ca = createTestCa();
    const cert = ca.issue("warren", ["warren.localhost", "*.warren.localhost", "127.0.0.1"]);
    ensureTestUsers();
    app = await startApp((req, res) => res.end(`proto=${req.headers["x-forwarded-proto"]} path=${req.url}`), { webSocketEcho: true });
    sshd = await startSshd();
    tlsServer = await startServer({ WARREN_TLS_CERT: cert.certFile, WARREN_TLS_KEY: cert.keyFile, WARREN_AGENT_ADDR: "off" }, [], ca.ca);
    plainServer = await startServer({ WARREN_AGENT_ADDR: "off" });
  });

  afterAll(async () => {
    for (const agent of agents) await agent.stop();
    await tlsServer?.stop();
    await plainServer?.stop();
    await sshd?.stop();
    await app?.close();
  });

  it("has no agent listener when it is off, and says where agents connect", () => {
    for (const server of [tlsServer, plainServer]) {
      const ready = server.proc.lines.find((l) => l.msg === "warren server ready")!;
      expect(ready["agent"]).toBeUndefined();
      expect(server.agentPort).toBe(0);
    }
  });

  it("over HTTPS: an agent given only the server's https URL serves HTTP, WebSocket and SSH", async () => {
    const ws = await createWorkspace(tlsServer, "onetls", [app.port], { sshPort: sshd.port, sshUser: SSH_EMPTY_PASSWORD_USER });
    const agent = await startAgent({ agentUrl: `https://127.0.0.1:${tlsServer.httpPort}` }, ws.agentToken, { env: { WARREN_CA_FILE: ca.caFile } });
    agents.push(agent);
    const host = workspaceHost("onetls", app.port);

    const res = await httpRequest({ port: tlsServer.httpPort, host, path: "/page", headers: { "x-warren-token": tlsServer.adminToken }, ca: ca.ca });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("proto=https path=/page");

    expect(await webSocketHello(`wss://127.0.0.1:${tlsServer.httpPort}/`, host, tlsServer.adminToken, ca.ca)).toEqual({ hello: host });

    const ssh = await run("sshpass", ["-p", tlsServer.adminToken, "ssh", ...clientOptions(), ...passwordOptions(), "-p", String(tlsServer.sshPort), "onetls@127.0.0.1", "echo", "over-one-port"]);
    expect(ssh.stdout, ssh.stderr).toBe("over-one-port\n");
    expect(ssh.code).toBe(0);

    // Browsers and curl on the same port choose HTTP/2 or HTTP/1.1 by ALPN.
    const base = ["--cacert", ca.caFile, "--resolve", `${host}:${tlsServer.httpPort}:127.0.0.1`, "-H", `x-warren-token: ${tlsServer.adminToken}`];
    expect(await curl([...base, "--http2", `https://${host}:${tlsServer.httpPort}/h2`])).toEqual({ version: "2", status: "200", body: "proto=https path=/h2" });
    expect(await curl([...base, "--http1.1", `https://${host}:${tlsServer.httpPort}/h1`])).toEqual({ version: "1.1", status: "200", body: "proto=https path=/h1" });
  });

  it("without TLS: an agent given the http URL connects by h2c (prior knowledge), and HTTP/1.1 clients are served as before", async () => {
    const ws = await createWorkspace(plainServer, "oneplain", [app.port]);
    const agent = await startAgent({ agentUrl: `http://127.0.0.1:${plainServer.httpPort}` }, ws.agentToken);
    agents.push(agent);
    const host = workspaceHost("oneplain", app.port);

    const res = await httpRequest({ port: plainServer.httpPort, host, path: "/plain", headers: { "x-warren-token": plainServer.adminToken } });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("proto=http path=/plain");
    expect(await webSocketHello(`ws://127.0.0.1:${plainServer.httpPort}/`, host, plainServer.adminToken)).toEqual({ hello: host });

    const prior = await curl(["--http2-prior-knowledge", "-H", `host: ${host}`, "-H", `x-warren-token: ${plainServer.adminToken}`, `http://127.0.0.1:${plainServer.httpPort}/h2c`]);
    expect(prior).toEqual({ version: "2", status: "200", body: "proto=http path=/h2c" });
  });

  it("refuses a bad agent token on the public listener as the agent listener would", async () => {
    const agent = await startAgent({ agentUrl: `https://127.0.0.1:${tlsServer.httpPort}` }, "wat_0123456789abcdef0123456789abcdef", {
      env: { WARREN_CA_FILE: ca.caFile },
      waitReady: false,
    });
    agents.push(agent);
    const exit = await agent.proc.exited;
    expect(exit.code).not.toBe(0);
    expect(agent.proc.output()).toContain("agent token is invalid, expired or revoked");
  });

  it("a server draining with agents on its public listener asks them to move and stops without waiting out the shutdown timeout", async () => {
    const draining = await startServer({ WARREN_AGENT_ADDR: "off", WARREN_SHUTDOWN_TIMEOUT: "20s" });
    const ws = await createWorkspace(draining, "onedrain", [app.port]);
    const agent = await startAgent({ agentUrl: `http://127.0.0.1:${draining.httpPort}` }, ws.agentToken);
    agents.push(agent);
    // A browser's HTTP/2 connection (prior knowledge) is open too, idle after its request.
    const host = workspaceHost("onedrain", app.port);
    expect((await curl(["--http2-prior-knowledge", "-H", `host: ${host}`, "-H", `x-warren-token: ${draining.adminToken}`, `http://127.0.0.1:${draining.httpPort}/before`])).status).toBe("200");
    draining.proc.kill("SIGTERM");
    expect(await draining.proc.exited).toEqual({ code: 0, signal: null });
    expect(draining.proc.lines.some((l) => l.msg === "shutdown timeout: closing what is still open")).toBe(false);
    // The agent was told to move: it connects again (to nothing here) rather than exiting.
    await agent.proc.waitFor((l) => l.msg === "disconnected; reconnecting", 10_000, "the agent to reconnect");
    expect(agent.proc.child.exitCode).toBeNull();
  });

  it("a workspace app's own gRPC-looking paths stay the app's: only the root domain's agent paths reach the agent endpoint", async () => {
    const ws = await createWorkspace(plainServer, "grpcish", [app.port]);
    const agent = await startAgent({ agentUrl: `http://127.0.0.1:${plainServer.httpPort}` }, ws.agentToken);
    agents.push(agent);
    const host = workspaceHost("grpcish", app.port);
    const res = await curl([
      "--http2-prior-knowledge",
      "-H",
      `host: ${host}`,
      "-H",
      `x-warren-token: ${plainServer.adminToken}`,
      "-H",
      "content-type: application/grpc",
      "--data-binary",
      "x",
      `http://127.0.0.1:${plainServer.httpPort}/warren.v1.AgentService/Control`,
    ]);
    expect(res).toEqual({ version: "2", status: "200", body: "proto=http path=/warren.v1.AgentService/Control" });
  });
});
