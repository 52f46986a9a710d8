import { execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { AGENT_BUNDLE, Proc, REPO_ROOT } from "./harness/processes.js";
import { clientOptions, ensureTestUsers, passwordOptions, run, SSH_EMPTY_PASSWORD_USER, startSshd, type Sshd } from "./harness/sshd.js";
import { createTestCa } from "./harness/test-ca.js";
import { createWorkspace, eventually, httpRequest, startServer, workspaceHost, type ServerHandle } from "./harness/warren.js";
import { tempDir } from "./harness/temp-dirs.js";

const CLI = `${REPO_ROOT}dist/warren.cjs`;

/**
 * The agent and the CLI in a network namespace whose only way out is a real HTTP proxy
 * (Debian's tinyproxy, with a user and password, and a filter). The server listens on the
 * host's loopback, which the namespace cannot reach directly: everything goes through CONNECT.
 */
describe("agent and CLI through an HTTP CONNECT proxy (tinyproxy)", () => {
  const id = randomBytes(3).toString("hex");
  const ns = `warren-proxy-${id}`;
  const hostIf = `wrph${id}`;
  const nsIf = `wrpn${id}`;
  let hostAddr = "";
  let proxyPort = 0;
  let dir = "";
  let server: ServerHandle;
  const APP_PORT = 8000;
  const procs: Proc[] = [];
  const PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

  const sh = (args: string[]) => execFileSync(args[0]!, args.slice(1), { stdio: ["ignore", "pipe", "pipe"] }).toString();

  function cleanUp(): void {
    spawnSync("ip", ["link", "del", hostIf], { stdio: "ignore" });
    spawnSync("ip", ["netns", "del", ns], { stdio: "ignore" });
  }

  const proxyUrl = (credentials = "warren:s3cret") => `http://${credentials ? `${credentials}@` : ""}${hostAddr}:${proxyPort}`;

  /** The CLI run inside the namespace, with a fresh HOME. */
  function cliInNs(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const home = mkdtempSync(join(dir, "home-"));
    const vars = Object.entries({ PATH, HOME: home, ...env }).map(([k, v]) => `${k}=${v}`);
    return new Promise((resolve) => {
      const child = spawn("ip", ["netns", "exec", ns, "env", "-i", ...vars, process.execPath, CLI, ...args]);
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
      child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
      child.on("close", (code) => resolve({ code, stdout, stderr }));
    });
  }

  function agentInNs(token: string, env: Record<string, string>, agentUrl = server.agentUrl): Proc {
    const vars = Object.entries({ PATH, WARREN_SERVER: agentUrl, WARREN_TOKEN: token, ...env }).map(([k, v]) => `${k}=${v}`);
    const proc = new Proc("ip", ["netns", "exec", ns, "env", "-i", ...vars, process.execPath, AGENT_BUNDLE], { PATH });
    procs.push(proc);
    return proc;
  }

  beforeAll(async () => {
    const added = spawnSync("ip", ["netns", "add", ns], { encoding: "utf8" });
    if (added.error || added.status !== 0) {
      throw new Error(`cannot create a network namespace (ip netns add ${ns}): ${added.error?.message ?? added.stderr.trim()}. This test needs root and iproute2.`);
    }
    process.once("exit", cleanUp);
    let subnet = "";
    for (let tries = 0; tries < 20 && !subnet; tries++) {
      const candidate = `10.214.${randomInt(0, 256)}.${randomInt(0, 64) * 4}`;
      if (sh(["ip", "-o", "addr", "show", "to", `${candidate}/30`]).trim() === "") subnet = candidate;
    }
    const base = subnet.split(".").map(Number);
    hostAddr = `${base[0]}.${base[1]}.${base[2]}.${base[3]! + 1}`;
    const nsAddr = `${base[0]}.${base[1]}.${base[2]}.${base[3]! + 2}`;
    sh(["ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", ns]);
    sh(["ip", "addr", "add", `${hostAddr}/30`, "dev", hostIf]);
    sh(["ip", "link", "set", hostIf, "up"]);
    sh(["ip", "-n", ns, "addr", "add", `${nsAddr}/30`, "dev", nsIf]);
    sh(["ip", "-n", ns, "link", "set", nsIf, "up"]);
    sh(["ip", "-n", ns, "link", "set", "lo", "up"]);

    dir = tempDir("warren-proxy-");
    // The proxy: on the host side of the veth, for the namespace only, with a user and password,
    // refusing one host by its filter. No ConnectPort line: CONNECT to any port.
    proxyPort = 20000 + randomInt(0, 20000);
    writeFileSync(join(dir, "filter"), "^blocked\\.example$\n");
    writeFileSync(
      join(dir, "tinyproxy.conf"),
      [
        `Port ${proxyPort}`,
        `Listen ${hostAddr}`,
        "Timeout 600",
        "MaxClients 50",
        `Allow ${nsAddr}`,
        "BasicAuth warren s3cret",
        `Filter "${join(dir, "filter")}"`,
        "FilterURLs Off",
        "FilterExtended On",
        "LogLevel Info",
        "",
      ].join("\n"),
    );
    const tinyproxy = new Proc("tinyproxy", ["-d", "-c", join(dir, "tinyproxy.conf")], { PATH }, dir);
    procs.push(tinyproxy);
    await eventually(() => spawnSync("ip", ["netns", "exec", ns, "sh", "-c", `exec 3<>/dev/tcp/${hostAddr}/${proxyPort}`], { stdio: "ignore", shell: false }).status === 0 || sh(["ss", "-Hltn", `sport = :${proxyPort}`]).includes(String(proxyPort)), 10_000, "tinyproxy to listen");

    // The app runs inside the namespace, on its loopback, as a workspace's app would.
    writeFileSync(join(dir, "via"), "hello through the proxy\n");
    const appProc = new Proc("ip", ["netns", "exec", ns, "python3", "-m", "http.server", String(APP_PORT), "--bind", "127.0.0.1", "--directory", dir], { PATH }, dir);
    procs.push(appProc);
    // On the host's loopback: not reachable from the namespace except through the proxy.
    server = await startServer();
  });

  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    await server?.stop();
    cleanUp();
    process.off("exit", cleanUp);
  });

  it("the direct route is blocked: without the proxy the agent cannot reach the server", async () => {
    const ws = await createWorkspace(server, "proxy-direct", [APP_PORT]);
    const agent = agentInNs(ws.agentToken, {});
    const line = await agent.waitFor((l) => l.msg === "disconnected; reconnecting", 15_000, "a failed connection");
    expect(String(line["reason"])).toContain("connection refused");
    await agent.stop();
  });

  it("the agent connects through HTTPS_PROXY/HTTP_PROXY with the proxy's credentials and serves its app", async () => {
    const ws = await createWorkspace(server, "proxied", [APP_PORT]);
    const agent = agentInNs(ws.agentToken, { HTTP_PROXY: proxyUrl(), HTTPS_PROXY: proxyUrl() });
    const started = await agent.waitFor((l) => String(l.msg).includes("through the proxy"), 15_000, "proxy line");
    // Never the password in a log line.
    expect(started.msg).toBe(`connecting to ${new URL(server.agentUrl).origin} through the proxy http://${hostAddr}:${proxyPort}`);
    expect(JSON.stringify(agent.lines)).not.toContain("s3cret");
    await agent.waitFor((l) => l["event"] === "ready", 20_000, "agent ready through the proxy");
    const get = () => httpRequest({ port: server.httpPort, host: workspaceHost("proxied", APP_PORT), path: "/via", headers: { "x-warren-token": server.adminToken } });
    await eventually(async () => (await get()).status === 200, 15_000, "the app to answer through the tunnel");
    expect((await get()).body.toString()).toBe("hello through the proxy\n");
    await agent.stop();
  });

  it("one URL through the proxy: WARREN_SERVER=https://<host> (port 443, agent listener off) carries HTTP, WebSocket and SSH", async () => {
    // The server's only agent port is its HTTPS port, 443, on a loopback address of the host:
    // inside the namespace that address is the namespace's own loopback, where nothing listens.
    const address = `127.${randomInt(1, 255)}.${randomInt(1, 255)}.${randomInt(2, 255)}`;
    const ca = createTestCa();
    const cert = ca.issue("warren", ["warren.localhost", "*.warren.localhost", address]);
    const tlsServer = await startServer({ WARREN_HTTP_ADDR: `${address}:443`, WARREN_AGENT_ADDR: "off", WARREN_TLS_CERT: cert.certFile, WARREN_TLS_KEY: cert.keyFile }, [], ca.ca);
    ensureTestUsers();
    let sshd: Sshd | undefined;
    try {
      const WS_PORT = 8002;
      const SSHD_PORT = 8022;
      // A WebSocket echo app inside the namespace, on its loopback.
      writeFileSync(
        join(dir, "ws-app.mjs"),
        [
          `import http from "node:http";`,
          `import { WebSocketServer } from "${REPO_ROOT}node_modules/ws/wrapper.mjs";`,
          `const server = http.createServer((req, res) => res.end("https through the proxy " + req.url));`,
          `new WebSocketServer({ server }).on("connection", (ws, req) => {`,
          `  ws.on("message", (data) => ws.send(String(data)));`,
          `  ws.send(JSON.stringify({ hello: req.headers["x-forwarded-host"] }));`,
          `});`,
          `server.listen(${WS_PORT}, "127.0.0.1");`,
        ].join("\n"),
      );
      procs.push(new Proc("ip", ["netns", "exec", ns, process.execPath, join(dir, "ws-app.mjs")], { PATH }, dir));
      sshd = await startSshd({ netns: ns, port: SSHD_PORT });
      const ws = await createWorkspace(tlsServer, "oneurl", [WS_PORT], { sshPort: SSHD_PORT, sshUser: SSH_EMPTY_PASSWORD_USER });

      const direct = agentInNs(ws.agentToken, { WARREN_CA_FILE: ca.caFile }, `https://${address}`);
      const refused = await direct.waitFor((l) => l.msg === "disconnected; reconnecting", 15_000, "a failed direct connection");
      expect(String(refused["reason"])).toContain("connection refused");
      await direct.stop();

      const agent = agentInNs(ws.agentToken, { WARREN_CA_FILE: ca.caFile, HTTPS_PROXY: proxyUrl() }, `https://${address}`);
      const started = await agent.waitFor((l) => String(l.msg).includes("through the proxy"), 15_000, "proxy line");
      expect(started.msg).toBe(`connecting to https://${address} through the proxy http://${hostAddr}:${proxyPort}`);
      await agent.waitFor((l) => l["event"] === "ready", 20_000, "agent ready through the proxy");

      const host = workspaceHost("oneurl", WS_PORT);
      const get = () => httpRequest({ address, port: 443, host, path: "/via", headers: { "x-warren-token": tlsServer.adminToken }, ca: ca.ca });
      await eventually(async () => (await get()).status === 200, 15_000, "the app to answer through the tunnel");
      expect((await get()).body.toString()).toBe("https through the proxy /via");

      const socket = new WebSocket(`wss://${address}/`, { headers: { host, "x-warren-token": tlsServer.adminToken }, ca: ca.ca, ...({ servername: host } as object) });
      const messages: string[] = [];
      await new Promise<void>((resolve, reject) => {
        socket.on("message", (d: Buffer) => {
          messages.push(d.toString());
          if (messages.length === 1) socket.send("echo through the proxy");
          else resolve();
        });
        socket.once("error", reject);
      });
      socket.close();
      expect(messages).toEqual([JSON.stringify({ hello: host }), "echo through the proxy"]);

      const ssh = await run("sshpass", ["-p", tlsServer.adminToken, "ssh", ...clientOptions(), ...passwordOptions(), "-p", String(tlsServer.sshPort), "oneurl@127.0.0.1", "echo", "ssh-through-the-proxy"]);
      expect(ssh.stdout, ssh.stderr).toBe("ssh-through-the-proxy\n");
      await agent.stop();
    } finally {
      await sshd?.stop();
      await tlsServer.stop();
    }
  });

  it("NO_PROXY names hosts reached directly", async () => {
    const ws = await createWorkspace(server, "no-proxy", [APP_PORT]);
    const agent = agentInNs(ws.agentToken, { HTTP_PROXY: proxyUrl(), NO_PROXY: "localhost,127.0.0.1" });
    const line = await agent.waitFor((l) => l.msg === "disconnected; reconnecting", 15_000, "a failed direct connection");
    expect(String(line["reason"])).toContain("connection refused");
    expect(agent.lines.some((l) => String(l.msg).includes("through the proxy"))).toBe(false);
    await agent.stop();
  });

  it("the agent says in one line when the proxy refuses its credentials", async () => {
    const ws = await createWorkspace(server, "proxy-badauth", [APP_PORT]);
    const agent = agentInNs(ws.agentToken, { HTTP_PROXY: proxyUrl("warren:wrong") });
    const line = await agent.waitFor((l) => l.msg === "disconnected; reconnecting", 15_000, "a refused connection");
    // tinyproxy answers 401 where the RFC says 407: either is a refusal of the credentials.
    expect(line["reason"]).toMatch(
      new RegExp(`^the proxy http://${hostAddr.replace(/\./g, "\\.")}:${proxyPort} refused CONNECT ${new URL(server.agentUrl).host.replace(/\./g, "\\.")} \\(40[17] [^)]+\\): it did not accept the user and password in the proxy URL$`),
    );
    await agent.stop();
  });

  it("the CLI logs in and lists workspaces through the proxy", async () => {
    const run = await cliInNs(["login", "--server", `http://127.0.0.1:${server.httpPort}`, "--token", server.adminToken], { HTTP_PROXY: proxyUrl() });
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`Logged in to http://127.0.0.1:${server.httpPort}`);
    const direct = await cliInNs(["login", "--server", `http://127.0.0.1:${server.httpPort}`, "--token", server.adminToken], {});
    expect(direct.code).toBe(1);
    expect(direct.stderr).toMatch(/^warren: cannot reach http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED\n$/);
  });

  it("the CLI says in one line when the proxy refuses: bad credentials, none, or a host its rules forbid", async () => {
    const login = (env: Record<string, string>, server_ = `http://127.0.0.1:${server.httpPort}`) => cliInNs(["login", "--server", server_, "--token", server.adminToken], env);
    const target = `127.0.0.1:${server.httpPort}`;
    const where = `http://${hostAddr}:${proxyPort}`;
    const badAuth = await login({ HTTP_PROXY: proxyUrl("warren:wrong") });
    expect(badAuth.code).toBe(1);
    // tinyproxy answers 401 where the RFC says 407: either is a refusal of the credentials.
    expect(badAuth.stderr.replace(/\(40[17] [^)]+\)/, "(401)")).toBe(`warren: the proxy ${where} refused CONNECT ${target} (401): it did not accept the user and password in the proxy URL\n`);
    const noAuth = await login({ HTTP_PROXY: proxyUrl("") });
    expect(noAuth.stderr.replace(/\(40[17] [^)]+\)/, "(401)")).toBe(`warren: the proxy ${where} refused CONNECT ${target} (401): it wants a user and password (http://user:password@host:port in HTTPS_PROXY)\n`);
    const filtered = await login({ HTTP_PROXY: proxyUrl() }, "http://blocked.example:8080");
    expect(filtered.code).toBe(1);
    expect(filtered.stderr).toMatch(new RegExp(`^warren: the proxy ${where.replace(/\./g, "\\.")} refused CONNECT blocked\\.example:8080 \\(403 [^)]*\\): its rules do not allow blocked\\.example:8080\\n$`));
    const unsupported = await login({ HTTPS_PROXY: "socks5://127.0.0.1:1080" }, "https://ws.example.com");
    expect(unsupported.code).toBe(1);
    expect(unsupported.stderr).toBe("warren: the proxy socks5://127.0.0.1:1080 (HTTPS_PROXY) is not supported: only http:// proxies (HTTP CONNECT) are\n");
  });
});
