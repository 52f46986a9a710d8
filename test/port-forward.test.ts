import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { freePort, listen } from "./harness/apps.js";
import { cliHome, runCli, spawnCli } from "./harness/cli.js";
import { startRedis, type RedisHandle } from "./harness/cluster.js";
import { callApi, createWorkspace, eventually, ROOT_DOMAIN, startAgent, startServer, type AgentHandle, type ServerHandle } from "./harness/warren.js";

const MIB = 1024 * 1024;
/**
 * Each connection sends this much and receives as much back: 10 MiB per connection, 500 MiB for
 * the 50. This once hung the agent's connection (both HTTP/2 peers' writes blocked, neither
 * reading: shared/http2-sockets.ts, AlwaysReadingSocket) and ended cut-off downloads cleanly
 * (shared/tunnel-socket.ts, a reset read as an end).
 */
const HALF = 5 * MIB;

/**
 * An app in the workspace (a process of its own) that reads everything a connection sends,
 * then answers with the SHA-256 of what it got, the SHA-256 of its reply, and HALF bytes of reply.
 */
const CHECKSUM_APP = `
const net = require("net"), crypto = require("crypto");
const server = net.createServer({ allowHalfOpen: true }, (socket) => {
  const hash = crypto.createHash("sha256");
  socket.on("data", (c) => hash.update(c));
  socket.on("end", () => {
    const reply = crypto.randomBytes(${HALF});
    socket.write(hash.digest("hex") + crypto.createHash("sha256").update(reply).digest("hex"));
    socket.end(reply);
  });
  socket.on("error", () => {});
});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
`;

async function checksumApp(): Promise<{ port: number; close(): Promise<void> }> {
  const child = spawn(process.execPath, ["-e", CHECKSUM_APP], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once("exit", (code) => reject(new Error(`checksum app exited with ${code}`)));
  });
  return {
    port,
    close: async () => {
      child.kill();
    },
  };
}

/** Sends HALF bytes through a forwarded port, half-closes, and checks both checksums. */
function exchange(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const payload = randomBytes(HALF);
    const sent = createHash("sha256").update(payload).digest("hex");
    const socket = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", reject);
    socket.on("end", () => {
      const all = Buffer.concat(chunks);
      const got = all.subarray(0, 64).toString();
      const replyHash = all.subarray(64, 128).toString();
      const reply = all.subarray(128);
      try {
        expect(got).toBe(sent);
        expect(reply.length).toBe(HALF);
        expect(createHash("sha256").update(reply).digest("hex")).toBe(replyHash);
        resolve();
      } catch (err) {
        reject(err as Error);
      }
      socket.end();
    });
    socket.end(payload);
  });
}

/** Starts `warren port-forward` and resolves with the local ports it printed. */
async function portForward(home: string, server: ServerHandle, token: string, name: string, specs: string[]) {
  const child = spawnCli(home, ["port-forward", name, ...specs.flatMap((s) => ["--tcp", s]), "--server", `http://127.0.0.1:${server.httpPort}`, "--token", token]);
  const deadline = Date.now() + 15_000;
  for (;;) {
    const lines = child.output().split("\n").filter((l) => l.startsWith("Forwarding "));
    if (lines.length === specs.length) return { child, ports: lines.map((l) => Number(/:(\d+) -> /.exec(l)![1])) };
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`port-forward did not start:\n${child.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A raw port-forward WebSocket, as the CLI opens it: resolves with the HTTP status and body of a refusal. */
function rawForward(server: ServerHandle, token: string | undefined, workspace: string, port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.httpPort}/-/port-forward?workspace=${workspace}&port=${port}`, {
      headers: { host: ROOT_DOMAIN, ...(token ? { authorization: `Bearer ${token}` } : {}) },
    });
    ws.once("open", () => {
      ws.terminate();
      resolve({ status: 101, body: "" });
    });
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.once("error", reject);
  });
}

/** Item 3 of issue 17: `warren port-forward` through the public HTTP listener. */
describe("warren port-forward", () => {
  let server: ServerHandle;
  let redis: RedisHandle;
  let app: { port: number; close(): Promise<void> };
  let agent: AgentHandle;
  let home: string;
  let alice: string;
  let bob: string;
  const name = "forward";

  beforeAll(async () => {
    server = await startServer();
    redis = await startRedis();
    app = await checksumApp();
    for (const user of ["alice", "bob"]) await callApi(server, "UserService/CreateUser", { name: user });
    alice = (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "alice" })).body.token;
    bob = (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "bob" })).body.token;
    const ws = await createWorkspace(server, name, [redis.port, app.port], { owner: "alice" });
    agent = await startAgent(server, ws.agentToken, { env: { WARREN_PORT_DISCOVERY_INTERVAL: "off" } });
    home = cliHome();
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    await redis?.stop();
    await app?.close();
  });

  it("redis-cli reaches the redis-server inside the workspace through port-forward", async () => {
    const { child, ports } = await portForward(home, server, alice, name, [`0:${redis.port}`]);
    try {
      const cli = (...args: string[]) => spawnSync("redis-cli", ["-p", String(ports[0]), ...args], { encoding: "utf8", timeout: 10_000 });
      expect(cli("SET", "greeting", "hello through warren").stdout.trim()).toBe("OK");
      expect(cli("GET", "greeting").stdout.trim()).toBe("hello through warren");
      // The value really is in the workspace's Redis.
      expect(redis.cli("GET", "greeting")).toBe("hello through warren");
    } finally {
      child.kill("SIGINT");
    }
  });

  it("carries 50 concurrent connections moving 10 MiB each (5 MiB each way), with half-close, checksums intact", async () => {
    const { child, ports } = await portForward(home, server, alice, name, [`127.0.0.1:0:${app.port}`]);
    try {
      await Promise.all(Array.from({ length: 50 }, () => exchange(ports[0]!)));
    } finally {
      child.kill("SIGINT");
    }
  }, 180_000);

  it("another user's port-forward is refused exactly like a workspace that does not exist", async () => {
    const theirs = await rawForward(server, bob, name, redis.port);
    const missing = await rawForward(server, bob, "no-such-workspace", redis.port);
    expect(theirs.status).toBe(404);
    expect(theirs.body).toBe(`workspace "${name}" not found\n`);
    expect(missing).toEqual({ status: 404, body: `workspace "no-such-workspace" not found\n` });
    const cliTheirs = await runCli(home, ["port-forward", name, "--tcp", "0:6379", "--server", `http://127.0.0.1:${server.httpPort}`, "--token", bob]);
    const cliMissing = await runCli(home, ["port-forward", "no-such-workspace", "--tcp", "0:6379", "--server", `http://127.0.0.1:${server.httpPort}`, "--token", bob]);
    expect(cliTheirs.code).toBe(1);
    expect(cliTheirs.stderr).toBe(`warren: workspace "${name}" not found\n`);
    expect(cliMissing.stderr).toBe(`warren: workspace "no-such-workspace" not found\n`);
  });

  it("each refusal says what is wrong: no token, a port that is not exposed, nothing listening, a bad --tcp", async () => {
    expect(await rawForward(server, undefined, name, redis.port)).toMatchObject({ status: 401 });
    const closedPort = await freePort();
    const notExposed = await rawForward(server, alice, name, closedPort);
    expect(notExposed.status).toBe(403);
    expect(notExposed.body).toContain(`port ${closedPort} is not exposed by workspace "${name}"`);
    const cli = await runCli(home, ["port-forward", name, "--tcp", `0:${closedPort}`, "--server", `http://127.0.0.1:${server.httpPort}`, "--token", alice]);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toBe(`warren: port ${closedPort} is not exposed by workspace "${name}" (expose it with \`warren workspace expose ${name} ${closedPort}\`)\n`);
    const bad = await runCli(home, ["port-forward", name, "--tcp", "5432", "--server", `http://127.0.0.1:${server.httpPort}`, "--token", alice]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`--tcp: "5432" is not [LOCAL_ADDR:]LOCAL_PORT:REMOTE_PORT`);

    // Exposed, but nothing listens there: the connection is closed and the reason printed once.
    await callApi(server, "WorkspaceService/ExposePort", { name, port: closedPort }, alice);
    const { child, ports } = await portForward(home, server, alice, name, [`0:${closedPort}`]);
    try {
      const socket = net.connect(ports[0]!, "127.0.0.1");
      await new Promise<void>((resolve) => socket.on("close", () => resolve()).on("error", () => {}));
      await eventually(() => child.output().includes(`nothing is listening on port ${closedPort} in workspace "${name}"`), 10_000, "the refusal printed");
    } finally {
      child.kill("SIGINT");
      await callApi(server, "WorkspaceService/UnexposePort", { name, port: closedPort }, alice);
    }
  });

  it("regression: a server that speaks first (greeting in the same read as the WebSocket's 101) loses no bytes", async () => {
    const greeter = net.createServer((s) => s.end("220 hello from the workspace\r\n"));
    const greeterPort = await listen(greeter);
    try {
      await callApi(server, "WorkspaceService/ExposePort", { name, port: greeterPort }, alice);
      const { child, ports } = await portForward(home, server, alice, name, [`0:${greeterPort}`]);
      try {
        for (let i = 0; i < 5; i++) {
          const got = await new Promise<string>((resolve, reject) => {
            let text = "";
            const socket = net.connect(ports[0]!, "127.0.0.1");
            socket.setEncoding("utf8").on("data", (c: string) => (text += c));
            socket.on("end", () => resolve(text));
            socket.on("error", reject);
          });
          expect(got).toBe("220 hello from the workspace\r\n");
        }
      } finally {
        child.kill("SIGINT");
      }
    } finally {
      await callApi(server, "WorkspaceService/UnexposePort", { name, port: greeterPort }, alice);
      greeter.close();
    }
  });

  it("a forwarded connection is closed when the access token that opened it is revoked", async () => {
    const { body } = await callApi<{ token: string; id: string }>(server, "UserService/CreateAccessToken", { user: "alice" });
    const echo = net.createServer((s) => s.pipe(s));
    const echoPort = await listen(echo);
    try {
      await callApi(server, "WorkspaceService/ExposePort", { name, port: echoPort }, alice);
      const { child, ports } = await portForward(home, server, body.token, name, [`0:${echoPort}`]);
      try {
        const socket = net.connect(ports[0]!, "127.0.0.1");
        socket.write("ping");
        await new Promise<void>((resolve) => socket.once("data", () => resolve()));
        const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()).on("error", () => {}));
        await callApi(server, "UserService/RevokeAccessToken", { id: body.id });
        await closed;
      } finally {
        child.kill("SIGINT");
      }
    } finally {
      await callApi(server, "WorkspaceService/UnexposePort", { name, port: echoPort }, alice);
      echo.close();
    }
  });

  it("a port exposed at runtime forwards at once, and unexposing it closes the forwarded connection", async () => {
    const echo = net.createServer((s) => s.pipe(s));
    const echoPort = await listen(echo);
    try {
      await callApi(server, "WorkspaceService/ExposePort", { name, port: echoPort }, alice);
      const { child, ports } = await portForward(home, server, alice, name, [`0:${echoPort}`]);
      try {
        const socket = net.connect(ports[0]!, "127.0.0.1");
        socket.write("ping");
        await new Promise<void>((resolve) => socket.once("data", (d) => (d.toString() === "ping" ? resolve() : undefined)));
        const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()).on("error", () => {}));
        await callApi(server, "WorkspaceService/UnexposePort", { name, port: echoPort }, alice);
        await closed;
      } finally {
        child.kill("SIGINT");
      }
    } finally {
      echo.close();
    }
  });
});
